"""Gossip batching: many envelopes per gossip message.

One py-libp2p gossip message costs every node ~7-9 ms of CPU whatever it
carries (docs/performance.md), so envelopes headed for the same topic wait
up to ``flush_ms`` (or until ``max_bytes``) and leave together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from protocol.messages import EnvelopeBatch

from .tasks import TaskStatus

Publish = Callable[[str, bytes], Awaitable[None]]


class GossipBatcher:
    def __init__(self, publish: Publish, *, flush_ms: float, max_bytes: int) -> None:
        self.publish = publish
        self.flush_s = flush_ms / 1000
        self.max_bytes = max_bytes
        self._pending: dict[str, list[bytes]] = {}
        self._sizes: dict[str, int] = {}
        self._wake = trio.Event()
        self.messages = 0
        self.envelopes = 0

    def add(self, topic: str, envelope: bytes) -> None:
        self._pending.setdefault(topic, []).append(envelope)
        self._sizes[topic] = self._sizes.get(topic, 0) + len(envelope)
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            # Wait for more envelopes to join, unless a batch is already full.
            if max(self._sizes.values(), default=0) < self.max_bytes:
                await trio.sleep(self.flush_s)
            self._wake = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending, self._sizes = self._pending, {}, {}
        for topic, envs in pending.items():
            chunk: list[bytes] = []
            size = 0
            for env in envs:
                if chunk and size + len(env) > self.max_bytes:
                    await self._send(topic, chunk)
                    chunk, size = [], 0
                chunk.append(env)
                size += len(env)
            if chunk:
                await self._send(topic, chunk)

    async def _send(self, topic: str, envs: list[bytes]) -> None:
        self.messages += 1
        self.envelopes += len(envs)
        await self.publish(topic, EnvelopeBatch(tuple(envs)).encode())
