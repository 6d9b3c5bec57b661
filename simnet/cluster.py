"""Run many nodes in one trio run: real engines, stores and crypto; a virtual network.

``Cluster`` provisions an authority, agency and node keys and a signed
directory, then starts and stops nodes on a :class:`VirtualNetwork`. Stopping
a node cancels it at its next checkpoint: what it committed stays, what it had
not committed is gone, as after a crash (the process-level kill -9 tests live
in tests/node/test_processes.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from identity.directory import DirectoryDelta, apply_link, sign_delta, sign_snapshot
from identity.keys import AgencyKeys, AuthorityPublic, NodeKey, SigningKey
from identity.provision import DeterministicRng, ProvisionedNode, build_directory
from identity.trust import Trust
from node.assemble import DirectoryGate, assemble
from node.committer import run_in_thread, run_inline
from node.core import NodeCore
from node.engine import Engine
from node.log import Log, NullLog
from node.metrics import Metrics
from protocol.agency import AgencyCode
from protocol.config import NodeConfig, RetryPolicy
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, Envelope
from store.store import Store

from .ports import free_port
from .virtual import VirtualNetwork

EPOCH_MS = 1_795_000_000_000  # virtual time 0 is this wall-clock instant (2026-11)
DAY_MS = 86_400_000


@dataclass
class SimNode:
    name: str
    prov: ProvisionedNode
    home: Path
    config: NodeConfig
    engine: Engine | None = None
    scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)
    starts: int = 0

    @property
    def peer_id(self) -> str:
        return self.prov.peer_id

    @property
    def running(self) -> bool:
        return self.engine is not None

    def e(self) -> Engine:
        assert self.engine is not None, f"node {self.name} is not running"
        return self.engine


class Cluster:
    def __init__(
        self,
        root: Path,
        nodes: dict[str, Sequence[str]],
        *,
        network: VirtualNetwork | None,
        seed: int = 0,
        net: str = "simnet",
        names: dict[AgencyCode, str] | None = None,
        config: Callable[[NodeConfig], NodeConfig] | None = None,
        log: Callable[[str], Log] | None = None,
        valid_days: int = 365,
        late: Sequence[str] = (),
    ) -> None:
        """``late`` names nodes that are provisioned but join later (see :meth:`join`)."""
        self.root = root
        self.network = network
        self.net = net
        rng = DeterministicRng(f"cluster-{seed}")
        self.rng = rng
        self.authority = SigningKey.generate(rng)
        self.authority_public = AuthorityPublic(self.authority.public, net)
        self.nodes: dict[str, SimNode] = {}
        self.keys: dict[AgencyCode, AgencyKeys] = {}
        provisioned = []
        for name, codes in nodes.items():
            agencies = [AgencyKeys.generate(AgencyCode.parse(c), rng) for c in codes]
            addrs = () if network is not None else (f"/ip4/127.0.0.1/tcp/{free_port()}",)
            prov = ProvisionedNode(NodeKey(rng(32)), agencies, addrs)
            provisioned.append(prov)
            for a in agencies:
                self.keys[a.code] = a
            cfg = NodeConfig(
                network=net,
                codes=tuple(a.code for a in agencies),
                listen=addrs or ("/ip4/127.0.0.1/tcp/0",),
                retry=RetryPolicy(initial_s=1.0, cap_s=60.0, jitter=0.2, receipt_timeout_s=120.0, give_up_days=30),
                sync_interval_s=10.0,
                gossip_flush_ms=10.0,
            )
            if config is not None:
                cfg = config(cfg)
            self.nodes[name] = SimNode(name, prov, root / name, cfg)
        self.names = names or {}
        self.valid_days = valid_days
        self.late = set(late)
        self.directory = build_directory(
            net=net,
            nodes=[p for name, p in zip(nodes, provisioned, strict=True) if name not in self.late],
            names=self.names,
            serial=1,
            at=EPOCH_MS - DAY_MS,
            until=EPOCH_MS + valid_days * DAY_MS,
        )
        signed_at = EPOCH_MS - DAY_MS if network is not None else int(time.time() * 1000) - DAY_MS
        if network is None:
            self.directory = dataclasses.replace(self.directory, issued_at=signed_at, valid_until=signed_at + valid_days * DAY_MS)
        self.chain: list[Envelope] = [sign_snapshot(self.directory, self.authority, at=signed_at)]
        self.links: list[Envelope] = []  # later serials, given to nodes that start after them
        self._log = log or (lambda name: NullLog())
        self._nursery: trio.Nursery | None = None
        self._sides: dict[str, int] | None = None  # real hosts only: a partition, peer id -> group

    def clock(self) -> int:
        if self.network is None:
            return int(time.time() * 1000)
        return EPOCH_MS + int(trio.current_time() * 1000)

    def _overlay(self, node: SimNode, core: NodeCore) -> Any:
        if self.network is not None:
            return self.network.overlay(node.peer_id)
        from node.p2p import P2POverlay

        gate = DirectoryGate(core)

        def is_member(peer: str) -> bool:
            # A partition: refused at the gate like an outsider, so no connection crosses it.
            return not self._apart(node.peer_id, peer) and gate.is_member(peer)

        def targets() -> dict[str, Sequence[str]]:
            return {p: addrs for p, addrs in gate.targets().items() if not self._apart(node.peer_id, p)}

        return P2POverlay(
            key=node.prov.key,
            listen=node.config.listen,
            is_member=is_member,
            targets=targets,
            log=core.log,
            metrics=core.metrics,
        )

    def _apart(self, a: str, b: str) -> bool:
        return self._sides is not None and self._sides.get(a, -1) != self._sides.get(b, -1)

    async def partition(self, *groups: set[str]) -> None:
        """Split the network: on the virtual wire, or for real hosts at the connection level (the membership gate)."""
        if self.network is not None:
            await self.network.partition(*groups)
            return
        self._sides = {p: i for i, g in enumerate(groups) for p in g}
        self._refresh()

    async def heal(self) -> None:
        if self.network is not None:
            await self.network.heal()
            return
        self._sides = None
        self._refresh()

    def _refresh(self) -> None:
        for node in self.nodes.values():  # closes what now crosses the cut; redials at once on heal
            if node.engine is not None:
                node.engine.overlay.refresh()

    def node(self, name: str) -> SimNode:
        return self.nodes[name]

    def by_code(self, code: str | AgencyCode) -> SimNode:
        c = AgencyCode.parse(code) if isinstance(code, str) else code
        return next(n for n in self.nodes.values() if c in n.config.codes)

    async def start(self, nursery: trio.Nursery, name: str) -> SimNode:
        node = self.nodes[name]
        await nursery.start(self._run, node)
        return node

    async def start_all(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        for name in self.nodes:
            await self.start(nursery, name)

    async def stop(self, name: str) -> None:
        node = self.nodes[name]
        if node.scope is not None:
            node.scope.cancel()
            await node.stopped.wait()

    # mypy reads trio-typing's stale trio stubs (a py-libp2p dependency), which lack trio.TaskStatus
    async def _run(self, node: SimNode, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[name-defined]
        node.home.mkdir(parents=True, exist_ok=True)
        node.stopped = trio.Event()
        node.starts += 1
        store = Store(node.home / "store", rng=DeterministicRng(f"{node.name}-{node.starts}"))
        stored = [Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES) for raw in store.directory_links()]
        by_serial = {link.header.serial: link for link in [*self.links, *stored]}  # type: ignore[union-attr]
        links = [by_serial[s] for s in sorted(by_serial)]
        directory = self.directory
        for link in links:
            if link.header.serial > directory.serial:  # type: ignore[union-attr]
                directory = apply_link(directory, link, self.authority_public)
        core = NodeCore(
            config=node.config,
            store=store,
            trust=Trust(directory, self.authority_public),
            chain=self.chain + links,
            hosted={a.code: a for a in node.prov.agencies},
            peer_id=node.peer_id,
            clock=self.clock,
            rng=DeterministicRng(f"{node.name}-engine-{node.starts}"),
            offload=run_inline if self.network is not None else run_in_thread,
            log=self._log(node.name),
            metrics=Metrics(),
        )
        overlay = self._overlay(node, core)
        try:
            with trio.CancelScope() as scope:
                node.scope = scope
                async with trio.open_nursery() as n:
                    await n.start(overlay.run)
                    engine = assemble(core, overlay)
                    node.engine = engine
                    await n.start(engine.run)
                    task_status.started()
        finally:
            node.engine = None
            node.scope = None
            store.close()
            node.stopped.set()

    @property
    def current(self) -> Any:
        """The newest directory: the snapshot with every later link applied."""
        d = self.directory
        for link in self.links:
            d = apply_link(d, link, self.authority_public)
        return d

    async def change_directory(self, delta: DirectoryDelta) -> Envelope:
        """The authority signs ``delta`` as the next serial; a running node publishes it to the network."""
        current = self.current
        link = sign_delta(
            delta,
            net=self.net,
            base=current.serial,
            serial=current.serial + 1,
            until=self.clock() + self.valid_days * DAY_MS,
            key=self.authority,
            at=self.clock(),
        )
        self.links.append(link)
        publisher = next((n for n in self.nodes.values() if n.running), None)
        if publisher is not None:
            await publisher.e().membership.publish_directory([link])
        return link


async def wait_until(predicate: Callable[[], bool], *, timeout: float, step: float = 0.05) -> None:
    """Poll ``predicate`` in (virtual or real) time; raise TimeoutError naming it if it stays false."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(step)
        return
    raise TimeoutError(f"condition still false after {timeout} s: {getattr(predicate, '__name__', predicate)}")
