"""simnet's ``processes`` mode: one `truc run` per agency, real time, driven through IPC.

The same workload and verdict as the in-process modes, gathered the way an
integrator sees a node (submit, inbox.list, status.send, document.track).
Faults: ``kill`` is a real SIGKILL and restart. Delay, loss and partitions
would need network namespaces with netem around each process; this mode does
not create them, and says so in its timeline instead of pretending. Status
flows run as in the other modes; take-back requests are left to them.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol.agency import AgencyCode
from protocol.document import BusinessType
from protocol.errors import NodeNotRunningError, TrucError
from protocol.ids import Digest
from protocol.status import HistoryItem, Role, StatusCode

from .faults import parse_faults
from .invariants import Observed, verdict
from .processes import FAST_SYNC, ProcessNetwork
from .sim import Outcome, SimConfig, Thread, summarize
from .workload import DocPlan, plan_statuses

POLL_S = 1.0
SUPPORTED = ("kill",)


class ProcessSimulation:
    def __init__(self, cfg: SimConfig, root: Path, echo: Callable[[str], None] = print) -> None:
        self.cfg = cfg = dataclasses.replace(
            cfg, status_delay_s=cfg.status_delay_s or cfg.duration_s / 30, settle_s=min(cfg.settle_s, 600.0)
        )
        self.echo = echo
        self.rng = random.Random(cfg.seed)
        self.codes = [a.code for a in cfg.agencies]
        names = {a.code: a.name for a in cfg.agencies}
        self.faults = parse_faults(cfg.faults, duration_s=cfg.duration_s, agencies=self.codes, rng=self.rng)
        from .workload import plan_documents

        self.plans = plan_documents(self.codes, count=cfg.docs, duration_s=cfg.duration_s, rng=self.rng, max_size=cfg.max_size)
        self.name_of = {c: c.short().lower() for c in self.codes}
        self.net = ProcessNetwork(
            root, {self.name_of[c]: [str(c)] for c in self.codes}, network="simnet", names=names, tune=FAST_SYNC
        )
        self.lock = threading.Lock()
        self.sent: dict[int, Digest] = {}
        self.doc_plan: dict[Digest, DocPlan] = {}
        self.threads: dict[tuple[Digest, AgencyCode], Thread] = {}
        self.cursor: dict[AgencyCode, int] = {}
        self.timeline: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.crashes: list[tuple[str, set[Digest]]] = []
        self.postponed = 0
        self.stop = threading.Event()
        self._receipted_cache: set[tuple[Digest, AgencyCode]] = set()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str, **fields: Any) -> None:
        with self.lock:
            self.timeline.append({"t": round(self.now(), 2), "event": what, **fields})
        self.echo(f"  [{self.now():7.1f} s] {what} {' '.join(f'{k}={v}' for k, v in fields.items())}".rstrip())

    def call(self, agency: AgencyCode, method: str, /, **params: Any) -> Any:
        return self.net[self.name_of[agency]].call(method, **params)

    # --- run -------------------------------------------------------------------------------

    def run(self) -> Outcome:
        wall = time.perf_counter()
        self.echo(
            f"simnet (processes): {len(self.codes)} `truc run` processes, "
            f"{len(self.plans)} documents over {self.cfg.duration_s:g} s, "
            f"faults: {', '.join(f.label() + f'@{f.start_s:.0f}s' for f in self.faults) or 'none'}"
        )
        self.net.start_all()
        self.t0 = time.monotonic()
        try:
            workers = [
                threading.Thread(target=t, daemon=True) for t in (self._submitter, self._agents, self._faults, self._sampler)
            ]
            for w in workers:
                w.start()
            time.sleep(self.cfg.duration_s)
            self.mark("workload.done")
            workers[0].join()
            for node in self.net.nodes.values():
                if not node.running:
                    node.start()
            settled = self._settle()
            self.mark("settled" if settled else "settle.timeout")
            self.stop.set()
            outcome = self._check()
            outcome.checks["the network settled: every flow finished"] = {"ok": settled, "settle_limit_s": self.cfg.settle_s}
            outcome.ok = outcome.ok and settled
        finally:
            self.stop.set()
            self.net.stop_all()
        outcome.stats["wall_s"] = round(time.perf_counter() - wall, 1)
        outcome.stats["simulated_s"] = outcome.stats["wall_s"]
        return outcome

    def _submitter(self) -> None:
        for plan in self.plans:
            delay = self.t0 + plan.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._submit(plan)

    def _submit(self, plan: DocPlan) -> None:
        data = random.Random(f"{self.cfg.seed}-doc-{plan.index}").randbytes(plan.size)
        while not self.stop.is_set():
            try:
                doc = self.call(
                    plan.sender,
                    "submit",
                    **{
                        "from": str(plan.sender),
                        "to": [str(r) for r in plan.recipients],
                        "subject": f"Văn bản mô phỏng số {plan.index}",
                        "files": [{"name": "van-ban.bin", "data": data}],
                        "idempotency_key": f"sim-{plan.index}",
                    },
                )["id"]
                with self.lock:
                    d = Digest.parse(doc)
                    self.sent[plan.index] = d
                    self.doc_plan[d] = plan
                return
            except (NodeNotRunningError, TrucError):
                with self.lock:
                    self.postponed += 1
                time.sleep(POLL_S)  # its node is down: try again with the same idempotency key

    def _agents(self) -> None:
        while not self.stop.is_set():
            time.sleep(POLL_S)
            now = self.now()
            for code in self.codes:
                try:
                    items = self.call(code, "inbox.list", code=str(code), after=self.cursor.get(code, 0), limit=1000)
                except (NodeNotRunningError, TrucError):
                    continue
                for item in items["items"]:
                    self.cursor[code] = max(self.cursor.get(code, 0), item["seq"])
                    doc = Digest.parse(item["id"])
                    key = (doc, code)
                    if key not in self.threads:
                        plan = plan_statuses(
                            random.Random(f"{self.cfg.seed}-{doc.hex()}-{code}"), mean_delay_s=self.cfg.status_delay_s
                        )
                        self.threads[key] = Thread(doc, code, plan, now + plan.delays[0])
            for t in list(self.threads.values()):
                if not t.done and t.next_at <= now:
                    self._step(t, now)

    def _step(self, t: Thread, now: float) -> None:
        try:
            me = next(
                r for r in self.call(t.recipient, "document.track", id=str(t.doc))["recipients"] if r["code"] == str(t.recipient)
            )
        except (NodeNotRunningError, TrucError, StopIteration):
            return
        phase, waiting = me["phase"], me["waiting_for"]
        if waiting == "takeback":
            code = t.plan.takeback_answer
        elif waiting == "change":
            code = 15
        else:
            code = {"arrived": 2 if t.plan.reject else 3, "accepted": 4, "assigned": 5}.get(phase, 0)
            if phase == "processing":
                code = 5 if t.steps_done < t.plan.processing_steps else 6
        if not code:
            t.done = True
            return
        try:
            self.call(t.recipient, "status.send", id=str(t.doc), code=f"{code:02d}", note=f"bước {t.steps_done + 1}")
            if code == 5:
                t.steps_done += 1
        except (NodeNotRunningError, TrucError):
            pass
        t.next_at = now + t.plan.delays[min(len(t.plan.delays) - 1, t.steps_done + 1)]

    def _faults(self) -> None:
        for f in self.faults:
            delay = self.t0 + f.start_s - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            if f.kind not in SUPPORTED:
                self.mark(f"{f.kind}.skipped", reason="processes mode injects only kill; use --mode virtual for network faults")
                continue
            code = AgencyCode.parse(f.arg)
            node = self.net[self.name_of[code]]
            try:
                before = {Digest.parse(i["id"]) for i in self.call(code, "inbox.list", code=str(code), limit=10_000)["items"]}
            except (NodeNotRunningError, TrucError):
                continue
            node.kill()
            self.crashes.append((self.name_of[code], before))
            self.mark("kill", node=code.short(), signal="SIGKILL", inbox=len(before))
            if self.stop.wait(f.length_s):
                return
            node.start()
            self.mark("restart", node=code.short())

    def _sampler(self) -> None:
        while not self.stop.wait(5.0):
            pending = 0
            for code in self.codes:
                try:
                    pending += self.call(code, "node.info")["pending_deliveries"]
                except (NodeNotRunningError, TrucError):
                    pass
            with self.lock:
                receipted = sum(
                    1 for d in self.sent.values() for r in self.doc_plan[d].recipients if (d, r) in self._receipted_cache
                )
            self.samples.append({"t": round(self.now(), 1), "pending": pending, "receipted": receipted})

    def _tracks(self) -> dict[Digest, dict[str, Any]]:
        out = {}
        for doc, plan in list(self.doc_plan.items()):
            try:
                out[doc] = self.call(plan.sender, "document.track", id=str(doc))
            except (NodeNotRunningError, TrucError):
                pass
        return out

    def _settle(self) -> bool:
        deadline = time.monotonic() + self.cfg.settle_s
        while time.monotonic() < deadline:
            tracks = self._tracks()
            for doc, t in tracks.items():
                for r in t["recipients"]:
                    if r["state"] == "delivered":
                        self._receipted_cache.add((doc, AgencyCode.parse(r["code"])))
            done = len(self.sent) == len(self.plans) and all(
                (d, r) in self._receipted_cache for d in self.sent.values() for r in self.doc_plan[d].recipients
            )
            if done and all(t.done for t in self.threads.values()):
                return True
            time.sleep(2.0)
        return False

    def _check(self) -> Outcome:
        inbox: dict[AgencyCode, Counter[Digest]] = {}
        for code in self.codes:
            items = self.call(code, "inbox.list", code=str(code), limit=10_000)["items"]
            inbox[code] = Counter(Digest.parse(i["id"]) for i in items)
        expected = [(d, r) for d in self.sent.values() for r in self.doc_plan[d].recipients]
        tracks = self._tracks()
        receipted = {
            (d, AgencyCode.parse(r["code"])) for d, t in tracks.items() for r in t["recipients"] if r["state"] == "delivered"
        }
        threads = {}
        latencies = []
        statuses: Counter[str] = Counter()
        for doc, r in expected:
            sender_view = next(x for x in tracks[doc]["recipients"] if x["code"] == str(r))
            recipient_view = next(x for x in self.call(r, "document.track", id=str(doc))["recipients"] if x["code"] == str(r))
            sender = str(self.doc_plan[doc].sender)
            threads[(doc, r)] = (_items(sender_view, sender), _items(recipient_view, sender), BusinessType.NEW)
            if sender_view["delivered_at"]:
                latencies.append(float(sender_view["delivered_at"] - tracks[doc]["created_at"]))
            for s in recipient_view["statuses"]:
                statuses[s["code"]] += 1
        crashes = []
        for name, before in self.crashes:
            code = next(c for c, n in self.name_of.items() if n == name)
            after = {Digest.parse(i["id"]) for i in self.call(code, "inbox.list", code=str(code), limit=10_000)["items"]}
            crashes.append((name, before, after))
        obs = Observed(inbox=inbox, receipted=receipted, threads=threads, crashes=crashes, forge_exercised=False)
        checks = verdict(expected, set(), obs)
        stats = summarize(self, len(self.codes), expected, latencies, statuses)
        return Outcome(all(c["ok"] for c in checks.values()), checks, stats, self.timeline, self.samples, latencies)


def _items(view: dict[str, Any], sender: str) -> list[HistoryItem]:
    return [
        HistoryItem(
            s["seq"],
            s["at"],
            bytes.fromhex(s["id"]),
            StatusCode.parse(s["code"]),
            Role.SENDER if s["author"] == sender else Role.RECIPIENT,
        )
        for s in view["statuses"]
    ]
