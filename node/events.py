"""Events pushed to IPC subscribers (integrators) and used by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

SUBSCRIBER_BUFFER = 1024


@dataclass(frozen=True)
class Event:
    kind: str  # document.received, status.received, receipt.received, delivery.failed, peer.up, peer.down, ...
    at: int
    fields: dict[str, Any] = field(default_factory=dict)


class EventHub:
    """Fan-out to bounded subscriber channels; a full subscriber loses events, counted, never blocking the node."""

    def __init__(self) -> None:
        self._subs: list[trio.MemorySendChannel[Event]] = []
        self.dropped = 0
        self.recent: list[Event] = []

    def subscribe(self, buffer: int = SUBSCRIBER_BUFFER) -> trio.MemoryReceiveChannel[Event]:
        send, recv = trio.open_memory_channel[Event](buffer)
        self._subs.append(send)
        return recv

    def publish(self, event: Event) -> None:
        self.recent.append(event)
        del self.recent[:-200]
        alive = []
        for s in self._subs:
            try:
                s.send_nowait(event)
                alive.append(s)
            except trio.WouldBlock:
                self.dropped += 1
                alive.append(s)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        self._subs = alive
