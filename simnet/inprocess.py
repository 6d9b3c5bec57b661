"""The in-process driver: every node runs in this process (virtual and libp2p modes).

It calls each node's engine as an integrator's call would reach it, and it
is simnet's only way into a running node: the flow, the agent and the fault
handlers see what this module returns (driver.py), never an engine. The nodes
themselves are built by ``Cluster`` (cluster.py).

* ``virtual``: a simulated wire (virtual.py) under trio's MockClock, with
  trio's scheduler made deterministic and seeded for the run (and put back
  after it), so a run repeats from its seed.
* ``libp2p``: real py-libp2p hosts on 127.0.0.1; link delay through a shim
  in the library's TCP reads (shim.py), patched only during the run.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio
import trio.testing

from identity.directory import DirectoryDelta, NodeRecord
from identity.keys import AgencyKeys, SigningKey
from identity.provision import DeterministicRng, agency_record
from identity.sealing import FileSource, seal_document
from node.committer import run_inline
from node.engine import Engine
from node.overlay import PUSH, OverlayError, shard_topic
from node.upload import Spool
from protocol import ipc
from protocol import messages as m
from protocol.agency import AgencyCode
from protocol.config import NodeConfig
from protocol.document import BusinessType, DocumentMeta
from protocol.edxml import ZipMode
from protocol.envelope import Envelope
from protocol.ids import Digest
from protocol.status import HistoryItem, StatusCode, ThreadState

from .cluster import Cluster
from .config import Mode, SimConfig
from .driver import Delivery, Forgeries, InboxItem, NodeDown, Pace, Wire, node_name
from .shim import LinkDelay
from .virtual import VirtualNetwork

T = TypeVar("T")


@contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """trio's test mode, seeded, for one run; the previous mode and RNG state are put back after it.

    trio shuffles its run queue to shake out ordering bugs. Its test mode
    (privates of the pinned trio version) orders tasks by creation and draws
    the shuffle from a module-level RNG, so seeding that RNG makes a virtual
    run repeat from its seed. Both are process-wide: left changed, every
    later trio run in the process would be deterministic too.
    """
    run: Any = importlib.import_module("trio._core._run")
    if not hasattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING") or not isinstance(getattr(run, "_r", None), random.Random):
        raise RuntimeError(
            f"trio {importlib.metadata.version('trio')} moved the scheduler privates a repeatable virtual run needs"
        )
    flag, state = run._ALLOW_DETERMINISTIC_SCHEDULING, run._r.getstate()
    run._ALLOW_DETERMINISTIC_SCHEDULING = True
    run._r.seed(seed)
    try:
        yield
    finally:
        run._ALLOW_DETERMINISTIC_SCHEDULING = flag
        run._r.setstate(state)


class InProcessDriver:
    """Nodes in this process: their engines are called directly."""

    def __init__(self, cfg: SimConfig, root: Path, names: dict[AgencyCode, str], late: Sequence[AgencyCode]) -> None:
        """``late`` agencies are provisioned now and join during the run (the join fault)."""
        self.mode = cfg.mode
        self.pace = Pace(poll_s=2.0, settle_poll_s=5.0)
        self.wire: Wire | None = self
        self.clock: trio.abc.Clock | None = trio.testing.MockClock(autojump_threshold=0) if cfg.mode is Mode.VIRTUAL else None
        self.seed = cfg.seed
        self.codes = [a.code for a in cfg.agencies]
        self.names = names
        self.relay_shards = cfg.relay_shards
        self.max_size = cfg.max_size
        network = VirtualNetwork(seed=cfg.seed, latency_ms=cfg.latency_ms) if cfg.mode is Mode.VIRTUAL else None
        shards = sorted({c.shard for c in self.codes})
        self.cluster = Cluster(
            root,
            {node_name(c): [str(c)] for c in [*self.codes, *late]},
            network=network,
            seed=cfg.seed,
            net="simnet",
            names=names,
            config=lambda nc: self._tune(nc, shards),
            late=[node_name(c) for c in late],
        )
        self.root = root
        self._spools: dict[AgencyCode, Spool] = {}
        self.delay = LinkDelay()
        self._nursery: trio.Nursery | None = None
        self._sides: tuple[set[str], set[str]] = (set(), set())  # peer ids on each side of the last partition
        self._new_keys: dict[AgencyCode, AgencyKeys] = {}  # revoked, not yet installed

    def _tune(self, nc: NodeConfig, shards: list[str]) -> NodeConfig:
        if self.relay_shards < 0:
            relay = None
        else:
            own = nc.codes[0].shard
            pool = [s for s in shards if s != own]
            rnd = random.Random(f"{self.seed}-{own}")
            relay = tuple(sorted(rnd.sample(pool, min(len(pool), self.relay_shards))))
        return dataclasses.replace(
            nc,
            relay_shards=relay,
            sync_interval_s=30.0,
            gossip_flush_ms=10.0,
            max_document_mb=max(1.0, self.max_size / (1 << 20) + 1),
        )

    @contextmanager
    def session(self) -> Iterator[None]:
        with ExitStack() as stack:
            if self.mode is Mode.VIRTUAL:
                stack.enter_context(deterministic_scheduling(self.seed))
            stack.enter_context(self.delay)
            yield

    def describe(self) -> str:
        return f"{len(self.codes)} agencies"

    def stats(self) -> dict[str, Any]:
        net = self.cluster.network
        return {"network": dataclasses.asdict(net.stats)} if net is not None else {}

    # --- nodes ----------------------------------------------------------------------------

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "the driver is not started"
        return self._nursery

    def engine_of(self, code: AgencyCode) -> Engine:
        engine = self.cluster.nodes[node_name(code)].engine
        if engine is None:
            raise NodeDown(code)
        return engine

    async def _on_node(self, code: AgencyCode, call: Callable[[Engine], Awaitable[T]]) -> T:
        """Run ``call(engine)`` on the node hosting ``code``; raises NodeDown if it is down or stops meanwhile.

        An integrator's call to a node that crashes does not hang: the socket
        closes. Here the node's cancellation must end the call the same way.
        Errors the node raises reach the caller as they are.
        """
        node = self.cluster.nodes[node_name(code)]
        engine = node.engine
        if engine is None:
            raise NodeDown(code)
        stopped = node.stopped
        call_scope = trio.CancelScope()
        watch_scope = trio.CancelScope()

        async def watch() -> None:
            with watch_scope:
                await stopped.wait()
                call_scope.cancel()

        self.nursery.start_soon(watch)
        try:
            with call_scope:
                return await call(engine)
            raise NodeDown(code)  # only reached when the node stopped during the call
        finally:
            watch_scope.cancel()

    async def start(self, nursery: trio.Nursery) -> int:
        self._nursery = nursery
        for name in self.cluster.nodes:
            if name not in self.cluster.late:
                await self.cluster.start(nursery, name)
        return len(self.cluster.nodes) - len(self.cluster.late)

    async def restore(self) -> None:
        await self.cluster.heal()
        net = self.cluster.network
        if net is not None:
            net.everywhere.delay_ms, net.everywhere.loss = 0.0, 0.0
        for name, node in self.cluster.nodes.items():
            if node.engine is None and name not in self.cluster.late:
                await self.cluster.start(self.nursery, name)

    async def kill(self, code: AgencyCode) -> dict[str, str]:
        await self.cluster.stop(node_name(code))  # cancelled at its next checkpoint: what was not committed is gone
        return {}

    async def restart(self, code: AgencyCode) -> None:
        await self.cluster.start(self.nursery, node_name(code))

    # --- what an agency's document system does --------------------------------------------

    async def submit(
        self, sender: AgencyCode, recipients: Sequence[AgencyCode], meta: DocumentMeta, files: Sequence[FileSource], key: str
    ) -> Digest:
        return await self._on_node(sender, lambda e: e.submit(sender, list(recipients), meta, list(files), idempotency_key=key))

    def _spool(self, code: AgencyCode) -> Spool:
        """The spool an integrator's uploads go to on ``code``'s node (no threads in virtual time)."""
        spool = self._spools.get(code)
        if spool is None:
            offload = run_inline if self.mode is Mode.VIRTUAL else None
            spool = self._spools[code] = Spool(self.root / "spool" / node_name(code), 1 << 40, offload=offload)
            spool.prepare()
        return spool

    async def submit_edxml(self, agency: AgencyCode, package: bytes) -> Digest:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(package), ipc.CHUNK_BYTES):
                yield package[i : i + ipc.CHUNK_BYTES]

        spool = self._spool(agency)
        imported = await self._on_node(agency, lambda e: e.edxml.submit(chunks(), spool, _anyone))
        return imported.doc

    async def export_edxml(self, doc: Digest, code: AgencyCode) -> bytes:
        return b"".join(self.engine_of(code).edxml.export(doc, code, ZipMode.AS_RECEIVED)[1])

    async def inbox(self, code: AgencyCode, *, after: int = 0) -> list[InboxItem]:
        e = self.engine_of(code)
        items = []
        for seq, entry in e.store.inbox(code, after=after, limit=1 << 30):
            rec = e.store.doc(entry.id)
            items.append(InboxItem(seq, Digest(entry.id), BusinessType(rec.business) if rec is not None else BusinessType.NEW))
        return items

    async def thread_state(self, doc: Digest, recipient: AgencyCode) -> ThreadState:
        return self.engine_of(recipient).thread_state(doc, recipient)[0]

    async def send_status(
        self, doc: Digest, author: AgencyCode, code: StatusCode, *, note: str, to: AgencyCode | None = None
    ) -> None:
        await self._on_node(author, lambda e: e.send_status(doc, author, code, note=note, to=to))

    async def deliveries(self, sender: AgencyCode, doc: Digest, recipients: Sequence[AgencyCode]) -> dict[AgencyCode, Delivery]:
        e = self.engine_of(sender)
        out = {}
        for r in recipients:
            rec = e.delivery_record(sender, doc, r)
            if rec is not None:
                out[r] = Delivery(rec.state, rec.delivered_at or None)
        return out

    async def created_at(self, sender: AgencyCode, doc: Digest) -> int | None:
        h = self.engine_of(sender).doc_header(doc)
        return h.at if h is not None else None

    async def history(self, doc: Digest, *, at: AgencyCode, thread: AgencyCode) -> list[HistoryItem]:
        return self.engine_of(at).thread_state(doc, thread)[1]

    async def pending(self) -> int:
        return sum(sum(1 for _ in n.engine.store.pending()) for n in self.cluster.nodes.values() if n.engine is not None)

    # --- the wire (driver.Wire) -------------------------------------------------------------

    async def partition(self, a: set[AgencyCode], b: set[AgencyCode]) -> None:
        peers = {c: n.peer_id for n in self.cluster.nodes.values() for c in n.config.codes}
        self._sides = {peers[c] for c in a if c in peers}, {peers[c] for c in b if c in peers}
        await self.cluster.partition(*self._sides)

    async def heal(self) -> None:
        await self.cluster.heal()

    def crossing(self) -> int:
        a, b = self._sides
        return sum(
            len(n.engine.overlay.connected_peers() & b)
            for n in self.cluster.nodes.values()
            if n.engine is not None and n.peer_id in a
        )

    def set_delay(self, ms: float) -> None:
        net = self.cluster.network
        if net is None:
            self.delay.set(ms)  # real hosts: the shim in py-libp2p's TCP reads
        else:
            net.everywhere.delay_ms = ms

    def set_loss(self, fraction: float) -> None:
        net = self.cluster.network
        if net is None:
            raise RuntimeError("loss is modelled on the virtual wire only (TCP turns loss into delay)")
        net.everywhere.loss = fraction

    async def revoke(self, code: AgencyCode) -> None:
        old = self.cluster.keys[code]
        fresh = AgencyKeys(code, SigningKey.generate(DeterministicRng(f"rekey-{self.seed}-{code}")), old.encryption)
        node = self.cluster.nodes[node_name(code)]
        record = agency_record(fresh, self.names.get(code, str(code)), node.peer_id)
        await self.cluster.change_directory(
            DirectoryDelta(put_agencies=(record,), revoke=((old.signing.kid, self.cluster.clock()),))
        )
        self._new_keys[code] = fresh

    async def install_key(self, code: AgencyCode) -> tuple[int, int]:
        fresh = self._new_keys.pop(code)
        node = self.cluster.nodes[node_name(code)]
        # The operator installs the new key file (and the node picks it up).
        self.cluster.keys[code] = fresh
        node.prov.agencies = [fresh if a.code == code else a for a in node.prov.agencies]
        reissued = 0
        if node.engine is not None:
            node.engine.hosted[code] = fresh
            reissued = await node.engine.membership.reissue_stale()  # what the node does at start with new key files
        return int(self.cluster.current.serial), reissued

    async def join(self, code: AgencyCode) -> int:
        name = node_name(code)
        node = self.cluster.nodes[name]
        record = agency_record(node.prov.agencies[0], self.names[code], node.peer_id)
        await self.cluster.change_directory(
            DirectoryDelta(put_agencies=(record,), put_nodes=(NodeRecord(node.peer_id, node.prov.addrs),))
        )
        self.cluster.late.discard(name)
        await self.cluster.start(self.nursery, name)
        return int(self.cluster.current.serial)

    async def forge(self) -> tuple[AgencyCode, list[Digest]]:
        """A member node turns rogue: forged signatures and strangers, by gossip and by push."""
        running = [n for n in self.cluster.nodes.values() if n.engine is not None]
        rogue, victim = running[0], running[-1]
        e = rogue.e()
        own = rogue.config.codes[0]
        target = next(c for c in self.codes if c.shard != own.shard)
        good, _ = seal_document(
            DocumentMeta(subject="giả mạo"), [], net=self.cluster.net, sender=e.hosted[own],
            recipients=[e.trust.recipient(target)], at=self.cluster.clock(), rng=e.rng,
        )  # fmt: skip
        forged = Envelope(good.header, good.header_bytes, bytes(64), good.inline)
        stranger_keys = AgencyKeys.generate(AgencyCode.parse("Z99"), DeterministicRng("stranger"))
        stranger, _ = seal_document(
            DocumentMeta(subject="người lạ"), [], net=self.cluster.net, sender=stranger_keys,
            recipients=[e.trust.recipient(target)], at=self.cluster.clock(), rng=e.rng,
        )  # fmt: skip
        batch = m.EnvelopeBatch(tuple(env.encode() for env in (forged, stranger))).encode()
        await e.overlay.publish(shard_topic(self.cluster.net, target.shard), batch)  # validators must stop it
        try:
            await e.overlay.request(victim.peer_id, PUSH, batch, timeout=30, max_response_bytes=1 << 20)
        except OverlayError:
            pass  # the victim was unreachable: the gossip copy still tests the validators; the verdict counts refusals
        return own, [forged.id, stranger.id]

    def forgeries(self, forged: set[Digest]) -> Forgeries:
        running = [n for n in self.cluster.nodes.values() if n.engine is not None]
        return Forgeries(
            stored=[f"{d.short()}@{n.name}" for n in running for d in forged if n.e().store.known(d)],
            rejections=int(
                sum(n.e().metrics.total("envelopes_rejected") + n.e().metrics.total("gossip_rejected") for n in running)
            ),
        )


def _anyone(code: AgencyCode) -> None:
    """The simulated agencies' systems may act for their own agencies (no IPC access rules in process)."""
