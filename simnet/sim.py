"""`truc simnet run`: a network of agencies under a workload and faults, with a verdict.

Modes (the node logic is the same in each; docs/simnet.md says which scenario uses which):

* ``virtual`` (default): real engines, stores and crypto, one trio run, a
  simulated wire (simnet/virtual.py) in virtual time. Deterministic from the
  seed; 95 nodes in about a minute, 1,000 in about 9 (docs/simnet.md). Faults: all.
* ``libp2p``: real py-libp2p hosts on 127.0.0.1 in one process, real time.
  Tens of nodes. Faults: kill, partition (connections across the cut closed
  and refused at the membership gate), delay (a shim in py-libp2p's TCP reads,
  simnet/shim.py), rekey, join, forge (loss: skipped, TCP turns it into delay).
* ``processes``: one `truc run` per node, real time, driven through IPC.
  Faults: kill (SIGKILL) and restart. Delay, loss and partitions would need
  network namespaces with netem, which this mode does not set up (the run says so).

Invariants checked at the end, printed as a verdict and written to the report:
every document delivered exactly once to every recipient's inbox; every 01
receipt back at its sender; statuses in legal order and the same at both ends;
no envelope that failed validation stored (so none forwarded) anywhere;
nothing lost at crashed nodes.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.testing

from identity.directory import DirectoryDelta, NodeRecord
from identity.keys import AgencyKeys, SigningKey
from identity.provision import DeterministicRng, agency_record
from identity.sealing import FileSource, seal_document
from node.engine import Engine
from node.overlay import PUSH, shard_topic
from protocol import messages as m
from protocol.agency import AgencyCode, AgencyListing
from protocol.config import NodeConfig
from protocol.document import DocumentMeta
from protocol.envelope import Envelope
from protocol.errors import IllegalTransitionError, TrucError
from protocol.ids import Digest
from protocol.status import Pending, Phase, StatusCode
from store.records import DeliveryState

from .cluster import Cluster
from .faults import Fault, parse_faults, partition_groups
from .invariants import Observed, verdict
from .shim import LinkDelay
from .virtual import VirtualNetwork
from .workload import DocPlan, StatusPlan, plan_documents, plan_statuses


class NodeDown(Exception):
    """The node hosting this agency is down."""


SAMPLE_S = 5.0
PROGRESS_WALL_S = 30.0  # a progress line at most this often (wall clock)
POLL_S = 2.0


@dataclass
class SimConfig:
    agencies: list[AgencyListing]
    docs: int = 300
    duration_s: float = 600.0
    faults: str = "default"
    seed: int = 1
    mode: str = "virtual"
    report: Path | None = None
    max_size: int = 8 << 20
    relay_shards: int = 3  # shards each node relays besides its own; -1 = every shard
    status_delay_s: float = 0.0  # mean time between a recipient's statuses; 0 = duration / 30
    latency_ms: tuple[float, float] = (5.0, 40.0)
    settle_s: float = 1800.0
    peaks: bool = True  # morning peaks; False: a steady rate (benchmarks)


@dataclass
class Thread:
    doc: Digest
    recipient: AgencyCode
    plan: StatusPlan
    next_at: float
    steps_done: int = 0
    done: bool = False


@dataclass
class Outcome:
    ok: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


class Simulation:
    """The virtual and in-process libp2p modes (one trio run)."""

    def __init__(self, cfg: SimConfig, root: Path, echo: Callable[[str], None] = print) -> None:
        self.cfg = cfg = dataclasses.replace(cfg, status_delay_s=cfg.status_delay_s or cfg.duration_s / 30)
        self.root = root
        self.echo = echo
        self.rng = random.Random(cfg.seed)
        self.codes = [a.code for a in cfg.agencies]
        self.names = {a.code: a.name for a in cfg.agencies}
        self.faults = parse_faults(cfg.faults, duration_s=cfg.duration_s, agencies=self.codes, rng=self.rng)
        joins = [AgencyCode.parse(f.arg) for f in self.faults if f.kind == "join"]
        for code in joins:
            self.names.setdefault(code, f"Cơ quan mới {code.short()}")
        self.node_of = {c: c.short().lower() for c in [*self.codes, *joins]}
        network = VirtualNetwork(seed=cfg.seed, latency_ms=cfg.latency_ms) if cfg.mode == "virtual" else None
        shards = sorted({c.shard for c in self.codes})
        self.cluster = Cluster(
            root,
            {self.node_of[c]: [str(c)] for c in [*self.codes, *joins]},
            network=network,
            seed=cfg.seed,
            net="simnet",
            names=self.names,
            config=lambda nc: self._tune(nc, shards),
            late=[self.node_of[c] for c in joins],
        )
        self.plans = plan_documents(
            self.codes, count=cfg.docs, duration_s=cfg.duration_s, rng=self.rng, max_size=cfg.max_size, peaks=cfg.peaks
        )
        self.sent: dict[int, Digest] = {}
        self.sent_at: dict[Digest, float] = {}
        self.doc_plan: dict[Digest, DocPlan] = {}
        self.threads: dict[tuple[Digest, AgencyCode], Thread] = {}
        self.inbox_cursor: dict[AgencyCode, int] = {}
        self.takebacks: dict[Digest, tuple[AgencyCode, float]] = {}
        self.timeline: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self._wall0 = self._last_progress = time.perf_counter()
        self.crashes: list[tuple[str, float, set[Digest]]] = []  # node, time, inbox at the crash
        self.forged: set[Digest] = set()
        self.rekeyed: dict[AgencyCode, tuple[bytes, float]] = {}  # code -> (old kid, time)
        self.receipted: set[tuple[Digest, AgencyCode]] = set()
        self.joined: list[AgencyCode] = []
        self.postponed = 0
        self.delay = LinkDelay()  # libp2p mode: patches py-libp2p's TCP reads from the first delay fault to the run's end

    # --- set-up -------------------------------------------------------------------------

    def _tune(self, nc: NodeConfig, shards: list[str]) -> NodeConfig:
        if self.cfg.relay_shards < 0:
            relay = None
        else:
            own = nc.codes[0].shard
            pool = [s for s in shards if s != own]
            rnd = random.Random(f"{self.cfg.seed}-{own}")
            relay = tuple(sorted(rnd.sample(pool, min(len(pool), self.cfg.relay_shards))))
        return dataclasses.replace(
            nc,
            relay_shards=relay,
            sync_interval_s=30.0,
            gossip_flush_ms=10.0,
            max_document_mb=max(1.0, self.cfg.max_size / (1 << 20) + 1),
        )

    def now(self) -> float:
        """Seconds since the run started (virtual or real)."""
        return trio.current_time() - self.t0

    def mark(self, what: str, **fields: Any) -> None:
        self.timeline.append({"t": round(self.now(), 3), "event": what, **fields})
        self.echo(f"  [{self.now():7.1f} s] {what} {' '.join(f'{k}={v}' for k, v in fields.items())}".rstrip())

    def engine_of(self, code: AgencyCode) -> Engine | None:
        node = self.cluster.nodes[self.node_of[code]]
        return node.engine

    async def on_node(self, code: AgencyCode, call: Callable[[Engine], Any]) -> Any:
        """Run ``call(engine)`` on the node hosting ``code``; raises NodeDown if it is down or stops meanwhile.

        An integrator's call to a node that crashes does not hang: the socket
        closes. Here the node's cancellation must end the call the same way.
        Errors the node raises reach the caller as they are.
        """
        node = self.cluster.nodes[self.node_of[code]]
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

    # --- the run ------------------------------------------------------------------------

    async def run(self) -> Outcome:
        self.t0 = trio.current_time()
        wall = time.perf_counter()
        self.echo(
            f"simnet ({self.cfg.mode}): {len(self.codes)} agencies, {len(self.plans)} documents over {self.cfg.duration_s:g} s, "
            f"faults: {', '.join(f.label() + f'@{f.start_s:.0f}s' for f in self.faults) or 'none'}, seed {self.cfg.seed}"
        )
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for name in self.cluster.nodes:
                if name not in self.cluster.late:
                    await self.cluster.start(nursery, name)
            self.mark("nodes.started", nodes=len(self.cluster.nodes) - len(self.cluster.late))
            self._wall0 = wall
            nursery.start_soon(self._submitter)
            nursery.start_soon(self._agents)
            nursery.start_soon(self._sampler)
            nursery.start_soon(self._faults)
            await trio.sleep(self.cfg.duration_s)
            self.mark("workload.done")
            await self._restore(nursery)
            settled = await self._settle()
            self.mark("settled" if settled else "settle.timeout")
            outcome = self._check()
            open_threads = [f"{t.doc.short()}->{t.recipient.short()}" for t in self.threads.values() if not t.done]
            outcome.checks["the network settled: every flow finished"] = {
                "ok": settled,
                "settle_limit_s": self.cfg.settle_s,
                "unfinished_status_flows": open_threads[:20],
                "takebacks_not_sent": len(self.takebacks),
            }
            outcome.ok = outcome.ok and settled
            nursery.cancel_scope.cancel()
        outcome.stats["wall_s"] = round(time.perf_counter() - wall, 1)
        outcome.stats["simulated_s"] = round(self.now(), 1)
        return outcome

    async def _submitter(self) -> None:
        for plan in self.plans:
            await trio.sleep_until(self.t0 + plan.at_s)
            await self._submit(plan)

    async def _submit(self, plan: DocPlan) -> None:
        data = random.Random(f"{self.cfg.seed}-doc-{plan.index}").randbytes(plan.size)
        meta = DocumentMeta(subject=f"Văn bản mô phỏng số {plan.index}", number=str(plan.index), doc_type="Công văn")
        files = [FileSource("van-ban.bin", "application/octet-stream", data=data)]
        while True:
            try:
                # The same idempotency key on every try, as an integrator retrying after a crash would.
                doc = await self.on_node(
                    plan.sender,
                    lambda e: e.submit(plan.sender, list(plan.recipients), meta, files, idempotency_key=f"sim-{plan.index}"),
                )
            except (NodeDown, TrucError):
                doc = None
            if doc is not None:
                self.sent[plan.index] = doc
                self.sent_at[doc] = self.now()
                self.doc_plan[doc] = plan
                if plan.takeback:
                    self.takebacks[doc] = (plan.recipients[0], self.now() + self.rng.expovariate(1 / self.cfg.status_delay_s))
                return
            self.postponed += 1
            await trio.sleep(POLL_S)  # the sender's node is down: its operator's system retries

    async def _agents(self) -> None:
        """Each agency's document system: pick up new documents, process them, answer take-backs."""
        while True:
            await trio.sleep(POLL_S)
            now = self.now()
            for code in [*self.codes, *self.joined]:
                e = self.engine_of(code)
                if e is None:
                    continue
                after = self.inbox_cursor.get(code, 0)
                for seq, entry in e.store.inbox(code, after=after, limit=10_000):
                    self.inbox_cursor[code] = seq
                    doc = Digest(entry.id)
                    if (doc, code) not in self.threads:
                        plan = plan_statuses(
                            random.Random(f"{self.cfg.seed}-{doc.hex()}-{code}"), mean_delay_s=self.cfg.status_delay_s
                        )
                        self.threads[(doc, code)] = Thread(doc, code, plan, now + plan.delays[0])
            for thread in self.threads.values():
                if not thread.done and thread.next_at <= now:
                    await self._step(thread, now)
            for doc, (recipient, when) in list(self.takebacks.items()):
                if when <= now:
                    await self._takeback(doc, recipient)

    async def _step(self, t: Thread, now: float) -> None:
        e = self.engine_of(t.recipient)
        if e is None:
            return
        state, _, _ = e.thread_state(t.doc, t.recipient)
        if state.pending is Pending.TAKEBACK:
            code = t.plan.takeback_answer
        elif state.pending is Pending.CHANGE:
            code = StatusCode.AGREED
        elif state.phase is Phase.ARRIVED:
            code = StatusCode.REJECTED if t.plan.reject else StatusCode.ACCEPTED
        elif state.phase is Phase.ACCEPTED:
            code = StatusCode.ASSIGNED
        elif state.phase is Phase.ASSIGNED:
            code = StatusCode.PROCESSING
        elif state.phase is Phase.PROCESSING:
            code = StatusCode.PROCESSING if t.steps_done < t.plan.processing_steps else StatusCode.FINISHED
        else:
            t.done = True
            return
        try:
            await self.on_node(t.recipient, lambda e: e.send_status(t.doc, t.recipient, code, note=f"bước {t.steps_done + 1}"))
            if code is StatusCode.PROCESSING:
                t.steps_done += 1
        except IllegalTransitionError:
            pass  # a take-back arrived meanwhile: the next step answers it
        except (TrucError, NodeDown):
            pass  # e.g. its node crashed, or its key was just revoked: try again later
        t.next_at = now + t.plan.delays[min(len(t.plan.delays) - 1, t.steps_done + 1)]

    async def _takeback(self, doc: Digest, recipient: AgencyCode) -> None:
        plan = self.doc_plan[doc]
        e = self.engine_of(plan.sender)
        if e is None:
            return
        rec = e.delivery_record(plan.sender, doc, recipient)
        if rec is None or rec.state is not DeliveryState.DELIVERED:
            self.takebacks[doc] = (recipient, self.now() + POLL_S)
            return
        try:
            await self.on_node(
                plan.sender,
                lambda e: e.send_status(doc, plan.sender, StatusCode.TAKEBACK_REQUESTED, to=recipient, note="Xin thu hồi"),
            )
        except NodeDown:
            return  # asked again on the next round
        except TrucError:
            del self.takebacks[doc]
            return  # e.g. rejected already: a take-back is not always possible
        del self.takebacks[doc]
        thread = self.threads.get((doc, recipient))
        if thread is not None:  # the recipient's system must answer, even if it had finished
            thread.done = False
            thread.next_at = self.now() + thread.plan.delays[-1]

    async def _sampler(self) -> None:
        while True:
            pending = 0
            for node in self.cluster.nodes.values():
                if node.engine is not None:
                    pending += sum(1 for _ in node.engine.store.pending())
            delivered = sum(1 for doc in self.sent.values() for r in self._recipients(doc) if self._receipted(doc, r))
            self.samples.append({"t": round(self.now(), 2), "pending": pending, "receipted": delivered})
            wall = time.perf_counter()
            if wall - self._last_progress >= PROGRESS_WALL_S:  # large runs are slow: say where they are
                self._last_progress = wall
                expected = sum(len(self._recipients(d)) for d in self.sent.values())
                self.echo(  # console only, not the timeline: wall time is not reproducible
                    f"  [{self.now():7.1f} s] progress sent={len(self.sent)} receipted={delivered}/{expected} "
                    f"pending={pending} wall_s={wall - self._wall0:.0f}"
                )
            await trio.sleep(SAMPLE_S)

    def _recipients(self, doc: Digest) -> tuple[AgencyCode, ...]:
        return self.doc_plan[doc].recipients

    def _receipted(self, doc: Digest, recipient: AgencyCode) -> bool:
        """Whether the sender has the recipient's 01 (once true, always true: read while the sender runs)."""
        if (doc, recipient) in self.receipted:
            return True
        e = self.engine_of(self.doc_plan[doc].sender)
        if e is None:
            return False
        rec = e.delivery_record(self.doc_plan[doc].sender, doc, recipient)
        if rec is not None and rec.state is DeliveryState.DELIVERED:
            self.receipted.add((doc, recipient))
            return True
        return False

    # --- faults ----------------------------------------------------------------------------

    async def _faults(self) -> None:
        async with trio.open_nursery() as nursery:
            for f in self.faults:
                nursery.start_soon(self._fault, f)

    async def _fault(self, f: Fault) -> None:
        await trio.sleep_until(self.t0 + f.start_s)
        net = self.cluster.network
        if f.kind == "kill":
            name = self.node_of[AgencyCode.parse(f.arg)]
            node = self.cluster.nodes[name]
            if node.engine is None:
                return
            inbox = {Digest(e.id) for c in node.config.codes for _, e in node.engine.store.inbox(c, limit=1 << 30)}
            await self.cluster.stop(name)  # cancelled at its next checkpoint: what was not committed is gone
            self.crashes.append((name, self.now(), inbox))
            self.mark("kill", node=f.arg, inbox=len(inbox))
            await trio.sleep(f.length_s)
            await self.cluster.start(self.nursery, name)
            self.mark("restart", node=f.arg)
        elif f.kind == "partition":
            a, b = partition_groups(f.arg, self.codes, self.rng)
            peers = {c: self.cluster.nodes[self.node_of[c]].peer_id for c in [*self.codes, *self.joined]}
            groups = {peers[c] for c in a if c in peers}, {peers[c] for c in b if c in peers} | {peers[c] for c in self.joined}
            await self.cluster.partition(*groups)
            self.mark("partition", groups=f"{len(a)}|{len(b)}")
            first = min(2.0, f.length_s / 4)
            await trio.sleep(first)
            self.mark("partition.held", crossing_connections=self._crossing(*groups))
            await trio.sleep(f.length_s - first)
            await self.cluster.heal()
            self.mark("heal")
        elif f.kind == "delay" and net is None:  # real hosts: the shim in py-libp2p's TCP reads
            self.delay.set(float(f.arg))
            self.mark(f.kind, value=f.arg)
            try:
                await trio.sleep(f.length_s)
            finally:
                self.delay.set(0.0)
            self.mark(f"{f.kind}.end")
        elif f.kind in ("delay", "loss"):
            if net is None:
                self.mark(
                    f"{f.kind}.skipped", reason="TCP retransmits: loss on a real connection is delay; virtual mode models loss"
                )
                return
            if f.kind == "delay":
                net.everywhere.delay_ms = float(f.arg)
            else:
                net.everywhere.loss = float(f.arg)
            self.mark(f.kind, value=f.arg)
            await trio.sleep(f.length_s)
            net.everywhere.delay_ms, net.everywhere.loss = 0.0, 0.0
            self.mark(f"{f.kind}.end")
        elif f.kind == "rekey":
            await self._rekey(AgencyCode.parse(f.arg))
        elif f.kind == "join":
            await self._join(AgencyCode.parse(f.arg))
        elif f.kind == "forge":
            await self._forge()

    async def _rekey(self, code: AgencyCode) -> None:
        old = self.cluster.keys[code]
        fresh = AgencyKeys(code, SigningKey.generate(DeterministicRng(f"rekey-{self.cfg.seed}-{code}")), old.encryption)
        node = self.cluster.nodes[self.node_of[code]]
        record = agency_record(fresh, self.names.get(code, str(code)), node.peer_id)
        await self.cluster.change_directory(
            DirectoryDelta(put_agencies=(record,), revoke=((old.signing.kid, self.cluster.clock()),))
        )
        self.rekeyed[code] = (old.signing.kid, self.now())
        # The operator installs the new key file (and the node picks it up).
        self.cluster.keys[code] = fresh
        node.prov.agencies = [fresh if a.code == code else a for a in node.prov.agencies]
        reissued = 0
        if node.engine is not None:
            node.engine.hosted[code] = fresh
            reissued = await node.engine.reissue_stale()  # what the node does at start with new key files
        self.mark("rekey", agency=code.short(), serial=self.cluster.current.serial, reissued=reissued)

    async def _join(self, code: AgencyCode) -> None:
        name = self.node_of[code]
        node = self.cluster.nodes[name]
        keys = node.prov.agencies[0]
        record = agency_record(keys, self.names[code], node.peer_id)
        await self.cluster.change_directory(
            DirectoryDelta(put_agencies=(record,), put_nodes=(NodeRecord(node.peer_id, node.prov.addrs),))
        )
        self.cluster.late.discard(name)
        await self.cluster.start(self.nursery, name)
        self.joined.append(code)
        self.mark("join", agency=code.short(), serial=self.cluster.current.serial)
        # It takes part at once: G22 welcomes it, and it answers.
        g22 = AgencyCode.parse("G22")
        for sender, to in ((g22, code), (code, g22)):
            plan = DocPlan(
                len(self.plans) + len(self.joined) * 2 + (sender == code), self.now(), sender, (to,), 20_000, False, False
            )
            self.nursery.start_soon(self._submit, plan)

    async def _forge(self) -> None:
        """A member node turns rogue: forged signatures and strangers, by gossip and by push."""
        running = [n for n in self.cluster.nodes.values() if n.engine is not None]
        rogue, victim = running[0], running[-1]
        e = rogue.e()
        target = next(c for c in self.codes if c.shard != rogue.config.codes[0].shard)
        envs: list[bytes] = []
        good, _ = seal_document(
            DocumentMeta(subject="giả mạo"), [], net=self.cluster.net, sender=e.hosted[rogue.config.codes[0]],
            recipients=[e.trust.recipient(target)], at=self.cluster.clock(), rng=e.rng,
        )  # fmt: skip
        forged = Envelope(good.header, good.header_bytes, bytes(64), good.inline)
        stranger_keys = AgencyKeys.generate(AgencyCode.parse("Z99"), DeterministicRng("stranger"))
        stranger, _ = seal_document(
            DocumentMeta(subject="người lạ"), [], net=self.cluster.net, sender=stranger_keys,
            recipients=[e.trust.recipient(target)], at=self.cluster.clock(), rng=e.rng,
        )  # fmt: skip
        for env in (forged, stranger):
            self.forged.add(env.id)
            envs.append(env.encode())
        batch = m.EnvelopeBatch(tuple(envs)).encode()
        await e.overlay.publish(shard_topic(self.cluster.net, target.shard), batch)  # validators must stop it
        try:
            await e.overlay.request(victim.peer_id, PUSH, batch, timeout=30, max_response_bytes=1 << 20)
        except Exception:
            pass
        self.mark("forge", rogue=rogue.config.codes[0].short(), envelopes=len(envs))

    def _crossing(self, a: set[str], b: set[str]) -> int:
        """Connections between the two sides, as the nodes themselves see them (0 while a partition holds)."""
        count = 0
        for node in self.cluster.nodes.values():
            if node.engine is not None and node.peer_id in a:
                count += len(node.engine.overlay.connected_peers() & b)
        return count

    async def _restore(self, nursery: trio.Nursery) -> None:
        await self.cluster.heal()
        net = self.cluster.network
        if net is not None:
            net.everywhere.delay_ms, net.everywhere.loss = 0.0, 0.0
        for name, node in self.cluster.nodes.items():
            if node.engine is None and name not in self.cluster.late:
                await self.cluster.start(nursery, name)

    async def _settle(self) -> bool:
        """Wait until every expected delivery is receipted and every thread has finished."""
        deadline = self.now() + self.cfg.settle_s
        while self.now() < deadline:
            if (
                len(self.sent) == len(self.plans) + 2 * len(self.joined)
                and all(
                    self._receipted(doc, r) or self._excused(doc, r) for doc in self.sent.values() for r in self._recipients(doc)
                )
                and all(t.done for t in self.threads.values())
                and not self.takebacks
            ):
                return True
            await trio.sleep(SAMPLE_S)
        return False

    def _excused(self, doc: Digest, recipient: AgencyCode) -> bool:
        """A delivery the network must refuse, by design.

        Its sender's key was revoked after the document was signed and before
        the recipient stored it: peers refuse it, and the sender's node marks
        it failed for the integrator to send again (statuses, receipts
        included, are re-signed instead, so they are never excused).
        """
        plan = self.doc_plan[doc]
        if plan.sender not in self.rekeyed or self.sent_at[doc] >= self.rekeyed[plan.sender][1]:
            return False
        e = self.engine_of(plan.sender)
        rec = e.delivery_record(plan.sender, doc, recipient) if e is not None else None
        return rec is not None and rec.state is DeliveryState.FAILED

    # --- the verdict --------------------------------------------------------------------------

    def _check(self) -> Outcome:
        inbox: dict[AgencyCode, Counter[Digest]] = {}
        for code in [*self.codes, *self.joined]:
            e = self.engine_of(code)
            assert e is not None, f"{code} is not running at the end"
            inbox[code] = Counter(Digest(entry.id) for _, entry in e.store.inbox(code, limit=1 << 30))
        expected = [(doc, r) for doc in self.sent.values() for r in self._recipients(doc)]
        excused = {p for p in expected if self._excused(*p)}
        counted = [p for p in expected if p not in excused]
        threads = {}
        for doc, r in counted:
            se, re_ = self.engine_of(self.doc_plan[doc].sender), self.engine_of(r)
            assert se is not None and re_ is not None
            threads[(doc, r)] = (se.thread_state(doc, r)[1], re_.thread_state(doc, r)[1], _business(se, doc))
        running = [n for n in self.cluster.nodes.values() if n.engine is not None]
        crashes = []
        for name, _at, before in self.crashes:
            node = self.cluster.nodes[name]
            assert node.engine is not None
            after = {Digest(e.id) for c in node.config.codes for _, e in node.engine.store.inbox(c, limit=1 << 30)}
            crashes.append((name, before, after))
        obs = Observed(
            inbox=inbox,
            receipted={p for p in counted if self._receipted(*p)},
            threads=threads,
            forged=self.forged,
            forged_stored=[f"{d.short()}@{n.name}" for n in running for d in self.forged if n.e().store.known(d)],
            rejections=int(
                sum(n.e().metrics.total("envelopes_rejected") + n.e().metrics.total("gossip_rejected") for n in running)
            ),
            crashes=crashes,
        )
        checks = verdict(expected, excused, obs)
        latencies = []
        for doc, r in counted:
            e = self.engine_of(self.doc_plan[doc].sender)
            rec = e.delivery_record(self.doc_plan[doc].sender, doc, r) if e else None
            h = e.doc_header(doc) if e else None
            if rec is not None and rec.delivered_at and h is not None:
                latencies.append(float(rec.delivered_at - h.at))
        statuses: Counter[str] = Counter()
        for doc, r in counted:
            e = self.engine_of(r)
            if e is not None:
                for _, _, h in e.store.history(doc, r):
                    statuses[f"{h.code:02d}"] += 1
        stats = summarize(self, len(self.codes) + len(self.joined), counted, latencies, statuses)
        if self.cluster.network is not None:
            stats["network"] = dataclasses.asdict(self.cluster.network.stats)
        return Outcome(all(c["ok"] for c in checks.values()), checks, stats, self.timeline, self.samples, latencies)


def summarize(
    sim: Any, agencies: int, counted: list[tuple[Digest, AgencyCode]], latencies: list[float], statuses: Counter[str]
) -> dict[str, Any]:
    """The run's statistics, the same in every mode (``sim`` is a Simulation or a ProcessSimulation)."""
    return {
        "agencies": agencies,
        "documents": len(sim.sent),
        "deliveries": len(counted),
        "broadcasts": sum(1 for p in sim.plans if p.broadcast),
        "bytes_sent": sum(sim.doc_plan[d].size for d in sim.sent.values()),
        "statuses": dict(sorted(statuses.items())),
        "submits_postponed_while_sender_down": sim.postponed,
        "latency_ms": {q: _pct(latencies, p) for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
    }


def _business(e: Engine, doc: Digest) -> Any:
    from protocol.document import BusinessType

    rec = e.store.doc(doc)
    return BusinessType(rec.business) if rec is not None else BusinessType.NEW


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def run_simulation(cfg: SimConfig, root: Path, echo: Callable[[str], None] = print) -> Outcome:
    if cfg.mode == "processes":
        from .procsim import ProcessSimulation

        psim = ProcessSimulation(cfg, root, echo)
        outcome = psim.run()
        outcome.stats.update(mode=cfg.mode, seed=cfg.seed, faults=[dataclasses.asdict(f) for f in psim.faults])
        return outcome
    sim = Simulation(cfg, root, echo)
    if cfg.mode == "virtual":
        with deterministic_scheduling(cfg.seed):
            outcome: Outcome = trio.run(sim.run, clock=trio.testing.MockClock(autojump_threshold=0))
    else:
        with sim.delay:
            outcome = trio.run(sim.run)
    outcome.stats["mode"] = cfg.mode
    outcome.stats["seed"] = cfg.seed
    outcome.stats["faults"] = [dataclasses.asdict(f) for f in sim.faults]
    return outcome


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


def verdict_lines(outcome: Outcome) -> list[str]:
    lines = []
    for name, c in outcome.checks.items():
        if c.get("exercised") is False:
            lines.append(f"  SKIP  {name}  (not exercised in this mode)")
            continue
        detail = {k: v for k, v in c.items() if k not in ("ok", "exercised") and v not in ([], 0)}
        lines.append(f"  {'PASS' if c['ok'] else 'FAIL'}  {name}  {json.dumps(detail, ensure_ascii=False)}")
    lines.append(f"VERDICT: {'PASS' if outcome.ok else 'FAIL'}")
    return lines
