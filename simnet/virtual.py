"""A simulated network that implements ``node.overlay.Overlay`` in virtual time.

Every node's engine, store and crypto are real; only the wire is simulated:
latency (per link, from a seeded RNG), loss, partitions, nodes going down.
Run it under ``trio.testing.MockClock(autojump_threshold=0)`` and hundreds of
nodes fit on one machine, deterministically from the seed.

Gossip is modelled as a flood to every reachable subscriber (each receiver
runs the topic validator first, as gossipsub does before forwarding); the
real forwarding rules of gossipsub are tested against py-libp2p itself
(tests/node/test_p2p.py).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import outcome
import trio

from node.overlay import OverlayError, PeerHandler, RequestHandler, TopicHandler, TopicValidator


@dataclass
class LinkFaults:
    delay_ms: float = 0.0  # added to the base latency
    loss: float = 0.0  # probability a message or request is lost


@dataclass
class Stats:
    gossip_messages: int = 0
    gossip_deliveries: int = 0
    gossip_rejected: int = 0
    requests: int = 0
    request_bytes: int = 0
    lost: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)


class VirtualNetwork:
    def __init__(self, *, seed: int = 0, latency_ms: tuple[float, float] = (2.0, 20.0), loss: float = 0.0) -> None:
        self.random = random.Random(seed)
        self.latency_ms = latency_ms
        self.loss = loss
        self.nodes: dict[str, VirtualOverlay] = {}
        self.down: set[str] = set()
        self.groups: list[set[str]] | None = None
        self.everywhere = LinkFaults()  # applied to every link (delay and loss windows)
        self._base: dict[frozenset[str], float] = {}
        self.links: dict[str, set[str]] = {}  # who is connected to whom, both directions
        self.stats = Stats()

    def overlay(self, peer_id: str) -> VirtualOverlay:
        ov = VirtualOverlay(self, peer_id)
        self.nodes[peer_id] = ov
        return ov

    # --- topology and faults --------------------------------------------------------

    def reachable(self, a: str, b: str) -> bool:
        return b in self.links.get(a, ())

    def _up(self, p: str) -> bool:
        ov = self.nodes.get(p)
        return ov is not None and ov.running and p not in self.down

    def _same_side(self, a: str, b: str) -> bool:
        return self.groups is None or any(a in g and b in g for g in self.groups)

    def latency_s(self, a: str, b: str) -> float:
        key = frozenset((a, b))
        if key not in self._base:
            self._base[key] = self.random.uniform(*self.latency_ms)
        return (self._base[key] + self.everywhere.delay_ms) / 1000

    def lost(self, a: str, b: str) -> bool:
        p = max(self.loss, self.everywhere.loss)
        if p and self.random.random() < p:
            self.stats.lost += 1
            return True
        return False

    # Links are kept incrementally: a node starting, stopping or going down
    # changes only its own links (O(N)); only partition and heal recompute
    # the whole graph. A full recomputation per event made starting N nodes
    # O(N^3), which is what kept 1,000 nodes from ever starting.

    def _link(self, a: str, b: str) -> None:
        self.links.setdefault(a, set()).add(b)
        self.links.setdefault(b, set()).add(a)
        self.nodes[a].notify(True, b)
        self.nodes[b].notify(True, a)

    def _unlink(self, a: str, b: str) -> None:
        self.links[a].discard(b)
        self.links[b].discard(a)
        self.nodes[a].notify(False, b)
        self.nodes[b].notify(False, a)

    def _attach(self, p: str) -> None:
        if not self._up(p):
            return
        for q in self.nodes:
            if q != p and q not in self.links.get(p, ()) and self._up(q) and self._same_side(p, q):
                self._link(p, q)

    def _detach(self, p: str) -> None:
        for q in sorted(self.links.get(p, set())):
            self._unlink(q, p)

    def _regroup(self) -> None:
        up = [p for p in self.nodes if self._up(p)]
        for p in up:
            for q in sorted(self.links.get(p, set())):
                if not self._same_side(p, q):
                    self._unlink(p, q)
        for p in up:
            self._attach(p)

    async def partition(self, *groups: set[str]) -> None:
        self.groups = [set(g) for g in groups]
        self._regroup()
        await trio.lowlevel.checkpoint()

    async def heal(self) -> None:
        self.groups = None
        self._regroup()
        await trio.lowlevel.checkpoint()

    async def set_down(self, peer: str, down: bool) -> None:
        if down:
            self.down.add(peer)
            self._detach(peer)
        else:
            self.down.discard(peer)
            self._attach(peer)
        await trio.lowlevel.checkpoint()

    async def node_started(self, peer: str) -> None:
        self._attach(peer)
        await trio.lowlevel.checkpoint()

    async def node_stopped(self, peer: str) -> None:
        self.nodes[peer].running = False
        self._detach(peer)
        await trio.lowlevel.checkpoint()


class VirtualOverlay:
    """One node's view of the virtual network."""

    def __init__(self, net: VirtualNetwork, peer_id: str) -> None:
        self.net = net
        self._peer_id = peer_id
        self.topics: dict[str, tuple[TopicValidator, TopicHandler]] = {}
        self.handlers: dict[str, RequestHandler] = {}
        self.on_connected: PeerHandler | None = None
        self.on_disconnected: PeerHandler | None = None
        self.nursery: trio.Nursery | None = None
        self.running = False

    @property
    def peer_id(self) -> str:
        return self._peer_id

    # mypy reads trio-typing's stale trio stubs (a py-libp2p dependency), which lack trio.TaskStatus
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[name-defined]
        """Attach this node to the network for as long as the task runs."""
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.running = True
                await self.net.node_started(self._peer_id)
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    # before the nursery closes: nobody may start tasks in it any more
                    self.running = False
                    self.nursery = None
        finally:
            self.running = False
            self.nursery = None
            self.topics.clear()
            self.handlers.clear()
            with trio.CancelScope(shield=True):
                await self.net.node_stopped(self._peer_id)

    def notify(self, up: bool, peer: str) -> None:
        handler = self.on_connected if up else self.on_disconnected
        if handler is not None and self.nursery is not None:
            self.nursery.start_soon(handler, peer)

    def connected_peers(self) -> set[str]:
        return set(self.net.links.get(self._peer_id, ())) if self.running else set()

    async def publish(self, topic: str, data: bytes) -> None:
        net = self.net
        net.stats.gossip_messages += 1
        net.stats.per_topic[topic] = net.stats.per_topic.get(topic, 0) + 1
        for peer in sorted(self.connected_peers()):
            other = net.nodes[peer]
            if topic in other.topics and not net.lost(self._peer_id, peer) and other.nursery is not None:
                other.nursery.start_soon(other._receive, topic, self._peer_id, data, net.latency_s(self._peer_id, peer))
        await trio.lowlevel.checkpoint()

    async def _receive(self, topic: str, sender: str, data: bytes, delay: float) -> None:
        await trio.sleep(delay)
        if topic not in self.topics or not self.net.reachable(sender, self._peer_id):
            return
        validator, handler = self.topics[topic]
        if not validator(topic, sender, data):
            self.net.stats.gossip_rejected += 1
            return
        self.net.stats.gossip_deliveries += 1
        await handler(topic, sender, data)

    async def subscribe(self, topic: str, validator: TopicValidator, handler: TopicHandler) -> None:
        self.topics[topic] = (validator, handler)
        await trio.lowlevel.checkpoint()

    def set_request_handler(
        self, protocol: str, handler: RequestHandler, *, max_request_bytes: int, max_response_bytes: int
    ) -> None:
        self.handlers[protocol] = handler

    async def request(self, peer: str, protocol: str, data: bytes, *, timeout: float, max_response_bytes: int) -> bytes:
        net = self.net
        net.stats.requests += 1
        net.stats.request_bytes += len(data)
        response: bytes | None = None
        with trio.move_on_after(timeout):
            response = await self._exchange(peer, protocol, data, timeout=timeout, max_response_bytes=max_response_bytes)
        if response is None:  # _exchange answers or raises: None is the timeout
            raise OverlayError(peer, f"no answer within {timeout} s")
        return response

    async def _exchange(self, peer: str, protocol: str, data: bytes, *, timeout: float, max_response_bytes: int) -> bytes:
        net = self.net
        if not net.reachable(self._peer_id, peer):
            raise OverlayError(peer, "not connected")
        delay = net.latency_s(self._peer_id, peer)
        if net.lost(self._peer_id, peer):
            await trio.sleep(timeout)
        await trio.sleep(delay)
        other = net.nodes[peer]
        handler = other.handlers.get(protocol)
        if handler is None or other.nursery is None or not net.reachable(self._peer_id, peer):
            raise OverlayError(peer, f"protocol {protocol} not supported or peer gone")
        response = await _call_in(other.nursery, handler, self._peer_id, data)
        if response is None:
            raise OverlayError(peer, "peer stopped while answering")
        await trio.sleep(delay)
        if not net.reachable(self._peer_id, peer):
            raise OverlayError(peer, "connection lost")
        if len(response) > max_response_bytes:
            raise OverlayError(peer, "response too large")
        return response

    def refresh(self) -> None:
        pass  # membership is not simulated: every node of the cluster is in the directory

    def on_peer(self, connected: PeerHandler, disconnected: PeerHandler) -> None:
        self.on_connected = connected
        self.on_disconnected = disconnected
        for peer in sorted(self.connected_peers()):
            self.notify(True, peer)


async def _call_in(nursery: trio.Nursery, fn: Callable[..., Awaitable[bytes]], *args: Any) -> bytes | None:
    """Run ``fn`` as a task of the callee's nursery, so stopping the callee cancels it.

    Returns None if the callee stopped first; an exception in the handler is
    re-raised here, in the caller, where a test sees it.
    """
    send, recv = trio.open_memory_channel[outcome.Outcome[bytes]](1)

    async def task() -> None:
        async with send:
            await send.send(await outcome.acapture(fn, *args))

    nursery.start_soon(task)
    async with recv:
        try:
            result = await recv.receive()
        except trio.EndOfChannel:
            return None
    return result.unwrap()
