"""`truc simnet run`: a network of agencies under a workload and faults, with a verdict.

One flow for every mode. Modes differ only in their driver (driver.py), the
way the flow reaches the nodes; docs/simnet.md says which scenario uses which:

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

The flow: the workload's documents are submitted at their times (a sender
whose node is down retries with the same idempotency key); the agencies'
document systems (agent.py) look at their inboxes and threads and send
statuses; the faults are injected at their times (injection.py); a sampler
records the outboxes' depth. After the workload everything is healed and
restarted, the run waits for the network to settle, and then checks, printed
as a verdict and written to the report: every document delivered exactly
once to every recipient's inbox; every 01 receipt back at its sender;
statuses in legal order and the same at both ends; no envelope that failed
validation stored (so none forwarded) anywhere; nothing lost at crashed nodes.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from identity.sealing import FileSource
from protocol.agency import AgencyCode
from protocol.document import BusinessType, DocumentMeta
from protocol.errors import TrucError
from protocol.ids import Digest
from protocol.status import HistoryItem, StatusCode
from store.records import DeliveryState

from .agent import Agent, Thread
from .config import Mode, Outcome, SimConfig
from .driver import Driver, Forgeries, NodeDown
from .edxml_load import EdxmlTraffic
from .faults import Fault, FaultKind, parse_faults
from .injection import Crash, inject, supports
from .inprocess import InProcessDriver
from .invariants import Observed, Pair, verdict
from .ipcdriver import IpcDriver
from .workload import DocPlan, plan_documents

__all__ = ["Mode", "Outcome", "SimConfig", "Simulation", "run_simulation", "verdict_lines"]

SAMPLE_S = 5.0
PROGRESS_WALL_S = 30.0  # a progress line at most this often (wall clock)
WELCOME_BYTES = 20_000  # the documents a joining agency and the hub exchange


def make_driver(cfg: SimConfig, root: Path, late: list[AgencyCode]) -> Driver:
    """The driver of ``cfg.mode``, its nodes provisioned under ``root`` (not started)."""
    names = {a.code: a.name for a in cfg.agencies}
    if cfg.mode is Mode.PROCESSES:
        return IpcDriver(root, [a.code for a in cfg.agencies], names)
    for code in late:
        names.setdefault(code, f"Cơ quan mới {code.short()}")
    return InProcessDriver(cfg, root, names, late)


class Simulation:
    """One run: the workload, the agencies' systems, the faults, the sampler and the verdict."""

    def __init__(self, cfg: SimConfig, root: Path, echo: Callable[[str], None] = print) -> None:
        self.cfg = cfg = dataclasses.replace(cfg, status_delay_s=cfg.status_delay_s or cfg.duration_s / 30)
        self.echo = echo
        self.rng = random.Random(cfg.seed)
        self.codes = [a.code for a in cfg.agencies]
        self.faults = parse_faults(cfg.faults, duration_s=cfg.duration_s, agencies=self.codes, rng=self.rng)
        joining = [AgencyCode.parse(f.arg) for f in self.faults if f.kind is FaultKind.JOIN]
        self.driver = make_driver(cfg, root, joining if supports(cfg.mode, FaultKind.JOIN) else [])
        cap = self.driver.pace.settle_cap_s
        self.settle_s = cfg.settle_s if cap is None else min(cfg.settle_s, cap)
        workload = plan_documents(
            self.codes, count=cfg.docs, duration_s=cfg.duration_s, rng=self.rng, max_size=cfg.max_size, peaks=cfg.peaks
        )
        self.plans = workload.plans
        self.hub = workload.hub
        self.edxml = EdxmlTraffic(self.plans, seed=cfg.seed, names={str(a.code): a.name for a in cfg.agencies})
        self.extra: list[DocPlan] = []  # documents the faults add: a joining agency's exchange with the hub
        self.agent = Agent(seed=cfg.seed, mean_delay_s=cfg.status_delay_s, rng=self.rng)
        self.sent: dict[int, Digest] = {}
        self.sent_at: dict[Digest, float] = {}
        self.doc_plan: dict[Digest, DocPlan] = {}
        self.receipted: set[Pair] = set()  # the sender holds the recipient's 01 (once true, always true)
        self.timeline: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.crashes: list[Crash] = []
        self.forged: set[Digest] = set()
        self.rekeyed: dict[AgencyCode, float] = {}  # agency -> when its key was revoked
        self.joined: list[AgencyCode] = []
        self.postponed = 0
        self.t0 = 0.0
        self._wall0 = self._last_progress = time.perf_counter()
        self._nursery: trio.Nursery | None = None

    # --- the run's clock and timeline -------------------------------------------------------

    def now(self) -> float:
        """Seconds since the network was up (virtual or real)."""
        return trio.current_time() - self.t0

    def mark(self, what: str, **fields: Any) -> None:
        self.timeline.append({"t": round(self.now(), 3), "event": what, **fields})
        self.echo(f"  [{self.now():7.1f} s] {what} {' '.join(f'{k}={v}' for k, v in fields.items())}".rstrip())

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "the run has not started"
        return self._nursery

    def agencies(self) -> list[AgencyCode]:
        return [*self.codes, *self.joined]

    # --- the run ------------------------------------------------------------------------------

    def execute(self) -> Outcome:
        """Run in a trio run of its own, inside the driver's session (which undoes what the mode changes)."""
        with self.driver.session():
            outcome: Outcome = trio.run(self.run, clock=self.driver.clock)
        outcome.stats.update(mode=self.cfg.mode, seed=self.cfg.seed, faults=[dataclasses.asdict(f) for f in self.faults])
        return outcome

    async def run(self) -> Outcome:
        wall = time.perf_counter()
        self.echo(
            f"simnet ({self.cfg.mode}): {self.driver.describe()}, {len(self.plans)} documents over {self.cfg.duration_s:g} s, "
            f"faults: {', '.join(f.label() + f'@{f.start_s:.0f}s' for f in self.faults) or 'none'}, seed {self.cfg.seed}"
        )
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            started = await self.driver.start(nursery)
            self.t0 = trio.current_time()  # the workload's and the faults' times count from here
            self.mark("nodes.started", nodes=started)
            self._wall0 = wall
            nursery.start_soon(self._submitter)
            nursery.start_soon(self._agents)
            nursery.start_soon(self._sampler)
            for f in self.faults:
                nursery.start_soon(self._inject, f)
            await trio.sleep(self.cfg.duration_s)
            self.mark("workload.done")
            await self.driver.restore()
            settled = await self._settle()
            self.mark("settled" if settled else "settle.timeout")
            outcome = await self._check()
            outcome.checks["the network settled: every flow finished"] = {
                "ok": settled,
                "settle_limit_s": self.settle_s,
                "unfinished_status_flows": self.agent.unfinished()[:20],
                "takebacks_not_sent": len(self.agent.takebacks),
            }
            outcome.ok = outcome.ok and settled
            nursery.cancel_scope.cancel()
        outcome.stats["wall_s"] = round(time.perf_counter() - wall, 1)
        outcome.stats["simulated_s"] = round(self.now(), 1)
        return outcome

    async def _inject(self, f: Fault) -> None:
        await inject(self, f)  # the registry sees this run as an injection.Run

    async def _submitter(self) -> None:
        for plan in self.plans:
            await trio.sleep_until(self.t0 + plan.at_s)
            await self._submit(plan)

    async def _submit(self, plan: DocPlan) -> None:
        data = random.Random(f"{self.cfg.seed}-doc-{plan.index}").randbytes(plan.size)
        meta = DocumentMeta(subject=f"Văn bản mô phỏng số {plan.index}", number=str(plan.index), doc_type="Công văn")
        files = [FileSource("van-ban.bin", "application/octet-stream", data=data)]
        package = self.edxml.package(plan, data)  # this agency's software speaks edXML
        while True:
            try:
                if package is not None:  # sent again after a failure, it is the same document (its DocumentId)
                    doc = await self.driver.submit_edxml(plan.sender, package)
                else:  # the same idempotency key on every try, as an integrator retrying after a crash would
                    doc = await self.driver.submit(plan.sender, plan.recipients, meta, files, f"sim-{plan.index}")
            except (NodeDown, TrucError):
                self.postponed += 1
                await trio.sleep(self.driver.pace.poll_s)  # the sender's node is down: its operator's system retries
                continue
            self.sent[plan.index] = doc
            if package is not None:
                self.edxml.submitted(doc, plan, package)
            self.sent_at[doc] = self.now()
            self.doc_plan[doc] = plan
            self.agent.submitted(doc, plan, self.now())
            return

    def welcome(self, code: AgencyCode) -> None:
        """A joining agency takes part at once: the workload's hub welcomes it, and it answers."""
        exchange = ((self.hub, code), (code, self.hub))
        for i, (sender, to) in enumerate(exchange):
            # Unique past the workload's indexes (the index seeds the bytes and the idempotency
            # key), and the same numbers as before issue 12, so virtual runs repeat to the byte.
            index = len(self.plans) + len(exchange) * len(self.joined) + i
            plan = DocPlan(index, self.now(), sender, (to,), WELCOME_BYTES, False, False)
            self.extra.append(plan)
            self.nursery.start_soon(self._submit, plan)

    async def _agents(self) -> None:
        """Each agency's document system: pick up new documents, process them, answer take-backs."""
        while True:
            await trio.sleep(self.driver.pace.poll_s)
            now = self.now()
            for code in self.agencies():
                try:
                    items = await self.driver.inbox(code, after=self.agent.cursor(code))
                except (NodeDown, TrucError):
                    continue
                for item in items:
                    self.agent.arrived(code, item.seq, item.doc, now)
            for thread in self.agent.due(now):
                await self._step(thread, now)
            for doc, recipient in self.agent.takebacks_due(now):
                await self._takeback(doc, recipient)

    async def _step(self, t: Thread, now: float) -> None:
        try:
            state = await self.driver.thread_state(t.doc, t.recipient)
        except (NodeDown, TrucError):
            return  # looked at again on the next round
        code = self.agent.next_status(t, state)
        if code is None:
            return
        try:
            await self._send_status(t.doc, t.recipient, self.doc_plan[t.doc].sender, code, note=self.agent.note(t))
            sent = True
        except (TrucError, NodeDown):
            sent = False  # refused (a take-back arrived meanwhile), or its node crashed, or its key was just revoked
        self.agent.stepped(t, code, sent=sent, now=now)

    async def _takeback(self, doc: Digest, recipient: AgencyCode) -> None:
        sender = self.doc_plan[doc].sender
        try:
            delivery = (await self.driver.deliveries(sender, doc, [recipient])).get(recipient)
        except (NodeDown, TrucError):
            return  # asked again on the next round
        if delivery is None or delivery.state is not DeliveryState.DELIVERED:
            self.agent.takeback_later(doc, self.now() + self.driver.pace.poll_s)
            return
        try:
            await self._send_status(doc, sender, recipient, StatusCode.TAKEBACK_REQUESTED, note="Xin thu hồi")
        except NodeDown:
            return  # asked again on the next round
        except TrucError:
            self.agent.takeback_dropped(doc)
            return
        self.agent.takeback_sent(doc, recipient, self.now())

    async def _sampler(self) -> None:
        while True:
            pending = await self.driver.pending()
            delivered = 0
            for doc in list(self.sent.values()):
                delivered += await self._receipts(doc)
            self.samples.append({"t": round(self.now(), 2), "pending": pending, "receipted": delivered})
            wall = time.perf_counter()
            if wall - self._last_progress >= PROGRESS_WALL_S:  # large runs are slow: say where they are
                self._last_progress = wall
                expected = sum(len(self.doc_plan[d].recipients) for d in self.sent.values())
                self.echo(  # console only, not the timeline: wall time is not reproducible
                    f"  [{self.now():7.1f} s] progress sent={len(self.sent)} receipted={delivered}/{expected} "
                    f"pending={pending} wall_s={wall - self._wall0:.0f}"
                )
            await trio.sleep(SAMPLE_S)

    async def _receipts(self, doc: Digest) -> int:
        """How many of ``doc``'s recipients' 01 are back at its sender (asking the sender about the others)."""
        plan = self.doc_plan[doc]
        missing = [r for r in plan.recipients if (doc, r) not in self.receipted]
        if missing:
            try:
                found = await self.driver.deliveries(plan.sender, doc, missing)
            except (NodeDown, TrucError):
                found = {}  # read again once the sender is back
            self.receipted.update((doc, r) for r, d in found.items() if d.state is DeliveryState.DELIVERED)
        return sum(1 for r in plan.recipients if (doc, r) in self.receipted)

    async def _excused(self, doc: Digest, recipient: AgencyCode) -> bool:
        """A delivery the network must refuse, by design.

        Its sender's key was revoked after the document was signed and before
        the recipient stored it: peers refuse it, and the sender's node marks
        it failed for the integrator to send again (statuses, receipts
        included, are re-signed instead, so they are never excused).
        """
        sender = self.doc_plan[doc].sender
        if sender not in self.rekeyed or self.sent_at[doc] >= self.rekeyed[sender]:
            return False
        try:
            delivery = (await self.driver.deliveries(sender, doc, [recipient])).get(recipient)
        except (NodeDown, TrucError):
            return False
        return delivery is not None and delivery.state is DeliveryState.FAILED

    async def _settled(self) -> bool:
        if len(self.sent) != len(self.plans) + len(self.extra):
            return False
        for doc in list(self.sent.values()):
            await self._receipts(doc)
            for r in self.doc_plan[doc].recipients:
                if (doc, r) not in self.receipted and not await self._excused(doc, r):
                    return False
        return self.agent.finished()

    async def _settle(self) -> bool:
        """Wait until every expected delivery is receipted and every status flow has finished."""
        deadline = self.now() + self.settle_s
        while self.now() < deadline:
            if await self._settled():
                return True
            await trio.sleep(self.driver.pace.settle_poll_s)
        return False

    async def _send_status(self, doc: Digest, author: AgencyCode, to: AgencyCode, code: StatusCode, *, note: str) -> None:
        """A status from ``author``'s software: a status package if the document came as edXML, else status.send."""
        package = self.edxml.status(doc, author, to, code, note=note, now_s=self.now())
        if package is not None:
            await self.driver.submit_edxml(author, package)
        else:
            await self.driver.send_status(doc, author, code, note=note, to=to if code is StatusCode.TAKEBACK_REQUESTED else None)

    # --- the verdict --------------------------------------------------------------------------

    async def _check(self) -> Outcome:
        """Gather the observations (every node runs again by now: NodeDown here is a failed run) and judge them."""
        inbox: dict[AgencyCode, Counter[Digest]] = {}
        business: dict[Digest, BusinessType] = {}  # as the recipients' nodes recorded it
        for code in self.agencies():
            items = await self.driver.inbox(code)
            inbox[code] = Counter(item.doc for item in items)
            business.update((item.doc, item.business) for item in items)
        expected = [(doc, r) for doc in self.sent.values() for r in self.doc_plan[doc].recipients]
        excused = {p for p in expected if await self._excused(*p)}
        counted = [p for p in expected if p not in excused]
        threads: dict[Pair, tuple[list[HistoryItem], list[HistoryItem], BusinessType]] = {}
        statuses: Counter[str] = Counter()
        latencies = []
        for doc, r in counted:
            sender = self.doc_plan[doc].sender
            at_sender = await self.driver.history(doc, at=sender, thread=r)
            at_recipient = await self.driver.history(doc, at=r, thread=r)
            # A document no recipient holds fails the first check; its threads replay as a new document.
            threads[(doc, r)] = (at_sender, at_recipient, business.get(doc, BusinessType.NEW))
            statuses.update(f"{item.code:02d}" for item in at_recipient)
            delivery = (await self.driver.deliveries(sender, doc, [r])).get(r)
            created = await self.driver.created_at(sender, doc)
            if delivery is not None and delivery.delivered_at and created is not None:
                latencies.append(float(delivery.delivered_at - created))
        for doc in list(self.sent.values()):
            await self._receipts(doc)
        held = [(d, r) for d, r in counted if inbox.get(r, Counter())[d] > 0]
        edxml = await self.edxml.compare(self.driver, held)
        crashes = [(c.node, c.inbox, {item.doc for item in await self.driver.inbox(c.code)}) for c in self.crashes]
        wire = self.driver.wire
        forgeries = wire.forgeries(self.forged) if wire is not None else Forgeries([], 0)
        obs = Observed(
            inbox=inbox,
            receipted={p for p in counted if p in self.receipted},
            threads=threads,
            forged=self.forged,
            forged_stored=forgeries.stored,
            rejections=forgeries.rejections,
            crashes=crashes,
            forge_exercised=supports(self.cfg.mode, FaultKind.FORGE),
            edxml=edxml,
        )
        checks = verdict(expected, excused, obs)
        stats = self._summarize(counted, latencies, statuses) | self.driver.stats()
        return Outcome(all(c["ok"] for c in checks.values()), checks, stats, self.timeline, self.samples, latencies)

    def _summarize(self, counted: list[Pair], latencies: list[float], statuses: Counter[str]) -> dict[str, Any]:
        return {
            "agencies": len(self.agencies()),
            "documents": len(self.sent),
            "deliveries": len(counted),
            "broadcasts": sum(1 for p in self.plans if p.broadcast),
            "edxml_documents": len(self.edxml.sent),
            "bytes_sent": sum(self.doc_plan[d].size for d in self.sent.values()),
            "statuses": dict(sorted(statuses.items())),
            "submits_postponed_while_sender_down": self.postponed,
            "latency_ms": {q: _pct(latencies, p) for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        }


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def run_simulation(cfg: SimConfig, root: Path, echo: Callable[[str], None] = print) -> Outcome:
    return Simulation(cfg, root, echo).execute()


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
