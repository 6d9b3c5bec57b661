"""The seam between the node's logic and the network.

:class:`Engine` (node/engine.py) talks to the network only through an
:class:`Overlay`: publish to a topic, receive topic messages and requests
through handlers, send a request to a peer, and hear about peers coming and
going. ``node/p2p.py`` implements it with py-libp2p; ``simnet/virtual.py``
implements it with a simulated network in virtual time. Errors from either
reach the engine as :class:`OverlayError`, never as a library's own
exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

# Topic message handler: (topic, forwarding peer, data). The validator runs
# first and decides whether the message is forwarded; the handler runs only
# for valid messages that are not our own.
TopicValidator = Callable[[str, str, bytes], bool]
TopicHandler = Callable[[str, str, bytes], Awaitable[None]]
# Request handler: (peer, request bytes) -> response bytes.
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
PeerHandler = Callable[[str], Awaitable[None]]

PUSH = "/truc/push/1"
BLOCKS = "/truc/blocks/1"
SYNC = "/truc/sync/1"


def shard_topic(net: str, shard: str) -> str:
    return f"truc/{net}/shard/{shard}/1"


def directory_topic(net: str) -> str:
    return f"truc/{net}/directory/1"


class OverlayError(Exception):
    """A peer could not be reached or did not answer (timeout, reset, refused)."""

    def __init__(self, peer: str, why: str) -> None:
        self.peer = peer
        self.why = why
        super().__init__(f"{peer[:16]}…: {why}")


class Overlay(Protocol):
    @property
    def peer_id(self) -> str: ...

    def connected_peers(self) -> set[str]: ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Best effort: may be dropped silently under load, like gossipsub."""

    async def subscribe(self, topic: str, validator: TopicValidator, handler: TopicHandler) -> None: ...

    def set_request_handler(
        self, protocol: str, handler: RequestHandler, *, max_request_bytes: int, max_response_bytes: int
    ) -> None: ...

    async def request(self, peer: str, protocol: str, data: bytes, *, timeout: float, max_response_bytes: int) -> bytes:
        """Send one request; raises OverlayError when the peer cannot be reached or does not answer in time."""
        ...

    def on_peer(self, connected: PeerHandler, disconnected: PeerHandler) -> None: ...

    def refresh(self) -> None:
        """The directory changed: re-check who may stay connected and whom to dial."""
