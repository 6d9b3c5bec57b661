"""Node throughput, latency, catch-up and memory: 3 real `truc run` processes on loopback.

    python -m bench.node [--docs 6000] [--statuses 3000] [--catchup 10000] [--gossip-docs 400] [--rate 20]

G22 sends 16 KiB documents to H29; a third node (H17) relays. Measured in one run:

* sustained documents/s with receipts (submit -> signed 01 back at G22), and
  envelopes/s per node (each document is two envelopes: it and its receipt);
* the same with every envelope in its own gossip message (``direct_push =
  false``, batches of one): the ratio is what batching and direct pushes buy;
* submit-to-receipt latency p50/p99 at a fixed moderate rate;
* CPU per processing status (03) H29 sends over IPC about those documents:
  a status travels as a receipt does (sealed and signed at H29, pushed to
  G22 and opened there, synced by the relay), so it prices a 01 envelope
  from above (the IPC call is added);
* time for H29 to receive and receipt N documents sent while it was down;
* RSS of each node at idle and at peak under load;
* baselines: raw PyNaCl Ed25519 verify/s and raw plyvel synced-batch writes/s.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from bench.common import rate, report
from protocol.agency import parse_agency_list
from simnet.processes import FAST_SYNC, ProcessNetwork, wait_for

DOC_BYTES = 16 << 10
SYNC_ROUND_S = 5.5  # one catch-up round with FAST_SYNC (every 5 s), and a margin
T = TypeVar("T")
G22, H29, H17 = "000.00.00.G22", "000.00.00.H29", "000.00.00.H17"
NAMES = {
    r.code: r.name
    for r in parse_agency_list((Path(__file__).resolve().parent.parent / "simnet/data/agencies-level1.csv").read_text("utf-8"))
}


class Net(ProcessNetwork):
    """G22 sends, H29 receives, H17 relays."""

    def __init__(self, root: Path, *, tune: dict[str, str]) -> None:
        super().__init__(root, {G22: [G22], H29: [H29], H17: [H17]}, network="bench", names=NAMES, tune=tune)

    def call(self, code: str, method: str, **params: Any) -> Any:
        return self[code].call(method, **params)

    def client(self, code: str) -> Any:
        return self[code].client()

    def rss_mib(self, code: str) -> float:
        return self[code].rss_mib()

    @property
    def homes(self) -> list[str]:
        return list(self.nodes)


def wait(pred: Any, timeout: float, what: str) -> float:
    """Poll node state once a second: the views it reads scan the store, and polling must not load the nodes."""
    return wait_for(pred, timeout, what, interval=1.0)


class Receipts:
    """Collect receipt events from G22 in a thread: doc id -> node time (ms)."""

    def __init__(self, net: Net) -> None:
        self.at: dict[str, int] = {}
        self.dropped = 0
        self.client = net.client(G22)
        self.client.connect()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        time.sleep(0.3)

    def _run(self) -> None:
        try:
            for ev in self.client.events():
                if ev["event"] == "receipt.received":
                    self.at[ev["data"]["doc"]] = ev["data"]["at"]
        except Exception:
            pass

    def fill(self, net: Net, docs: dict[str, float]) -> None:
        """Events are best effort: read the receipt time of any document whose event was dropped."""
        for doc in docs:
            if doc not in self.at:
                r = net.call(G22, "document.track", id=doc)["recipients"][0]
                self.at[doc] = r["delivered_at"]
                self.dropped += 1

    def close(self) -> None:
        self.client.close()


def over_connections(net: Net, code: str, threads: int, items: Iterable[T], call: Callable[[Any, T], None]) -> None:
    """``call(client, item)`` for every item, from ``threads`` IPC connections to ``code`` at once; returns when done."""
    todo = iter(items)
    lock = threading.Lock()

    def worker() -> None:
        with net.client(code) as c:
            while True:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                call(c, item)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def submit_many(net: Net, n: int, *, to: str = H29, threads: int = 4, per_second: float | None = None) -> dict[str, float]:
    """Submit ``n`` documents; returns doc id -> wall time (s) when the submit was sent."""
    sent: dict[str, float] = {}
    lock = threading.Lock()
    start = time.time()

    def submit(c: Any, i: int) -> None:
        if per_second:
            delay = start + i / per_second - time.time()
            if delay > 0:
                time.sleep(delay)
        t = time.time()
        doc = c.call(
            "submit",
            **{
                "from": G22,
                "to": [to],
                "subject": f"bench {i}",
                "files": [{"name": "b.bin", "data": os.urandom(DOC_BYTES)}],
            },
        )["id"]
        with lock:
            sent[doc] = t

    over_connections(net, G22, 1 if per_second else threads, range(n), submit)
    return sent


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def cpu_s(net: Net) -> dict[str, float]:
    """CPU seconds (user + system) each node process has used so far."""
    return {c: net[c].cpu_seconds() for c in net.homes}


def throughput(net: Net, n: int, threads: int = 4) -> tuple[dict[str, float], list[str]]:
    """The rates, and the ids of the documents sent."""
    receipts = Receipts(net)
    cpu_before = cpu_s(net)
    peak = {c: net.rss_mib(c) for c in net.homes}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for c in net.homes:
                peak[c] = max(peak[c], net.rss_mib(c))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    sent = submit_many(net, n, threads=threads)
    submitted = time.time() - t0
    wait(lambda: net.call(G22, "node.info")["pending_deliveries"] == 0, 600, "receipts")
    cpu_after = cpu_s(net)
    receipts.fill(net, sent)
    last = max(receipts.at[d] for d in sent) / 1000
    stop.set()
    receipts.close()
    elapsed = last - t0
    lat = [receipts.at[d] / 1000 - sent[d] for d in sent]
    return {
        "docs": n,
        "elapsed_s": elapsed,
        "submit_s": submitted,
        "docs_per_s": n / elapsed,
        "p50_ms": percentile(lat, 0.5) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        **{f"rss_peak_{c[-3:]}": v for c, v in peak.items()},
        # up to the check that every receipt is back (polled once a second, so it includes up to a second of idling)
        **{f"cpu_ms_per_doc_{c[-3:]}": 1000 * (cpu_after[c] - cpu_before[c]) / n for c in net.homes},
    }, list(sent)


def statuses(net: Net, docs: list[str], threads: int) -> dict[str, float]:
    """H29 reports 03 (accepted) on each of ``docs`` over IPC; CPU per status at each node once all are delivered.

    Starts after one catch-up round (5 s here), so the relay's pulls of the documents are not counted, and is
    read after another, so its pulls of the statuses are.
    """
    time.sleep(SYNC_ROUND_S)
    before = cpu_s(net)
    t0 = time.time()
    over_connections(net, H29, threads, docs, lambda c, d: c.call("status.send", id=d, code="03"))
    wait(lambda: net.call(H29, "node.info")["pending_deliveries"] == 0, 300, "statuses delivered")
    sent_s = time.time() - t0
    time.sleep(SYNC_ROUND_S)
    after = cpu_s(net)
    return {
        "per_s": len(docs) / sent_s,
        **{f"cpu_ms_{c[-3:]}": 1000 * (after[c] - before[c]) / len(docs) for c in net.homes},
    }


def latency(net: Net, n: int, per_second: float) -> dict[str, float]:
    receipts = Receipts(net)
    sent = submit_many(net, n, per_second=per_second)
    wait(lambda: net.call(G22, "node.info")["pending_deliveries"] == 0, 300, "receipts")
    receipts.fill(net, sent)
    receipts.close()
    lat = [receipts.at[d] / 1000 - sent[d] for d in sent]
    return {"p50_ms": percentile(lat, 0.5) * 1000, "p99_ms": percentile(lat, 0.99) * 1000}


class InboxCount:
    """How many documents H29's inbox holds, read as an integrator does (``inbox.list`` from a cursor).

    Not ``stats``: it scans every stored document and its history, and polled
    once a second while 10,000 documents arrive it took a third of the
    receiving node's time (py-spy), slowing the very catch-up it measured.
    """

    def __init__(self, net: Net) -> None:
        self.net = net
        self.after = 0
        self.count = 0

    def __call__(self) -> int:
        while True:
            page = self.net[H29].call("inbox.list", code=H29, after=self.after, limit=10_000)
            self.count += len(page["items"])
            self.after = page["next_after"]
            if not page["more"]:
                return self.count


def catchup(net: Net, n: int, threads: int = 4) -> dict[str, float]:
    """Completion is read from node state, not events: 10,000 receipts at once overflow any event buffer."""
    inbox = InboxCount(net)
    before = inbox()
    net[H29].stop(signal.SIGTERM)
    t0 = time.time()
    submit_many(net, n, threads=threads)
    submit_s = time.time() - t0
    wait(lambda: net.call(G22, "node.info")["pending_deliveries"] >= n, 120, "all queued")
    restart = time.time()
    net[H29].start()
    started = time.time() - restart
    # The inbox is read from a cursor (a page of new entries costs what it returns), so it is polled every
    # 0.1 s: at 1 s the row carried up to a second of polling; node.info counts the pending deliveries, 4 per s.
    inbox_s = wait_for(lambda: inbox() >= before + n, 1800, "inbox full", interval=0.1)
    receipts_s = wait_for(
        lambda: net.call(G22, "node.info")["pending_deliveries"] == 0, 1800, "receipts after catch-up", interval=0.25
    )
    return {
        "docs": n,
        "submit_s": submit_s,
        "restart_s": started,
        "inbox_complete_s": inbox_s + started,
        "all_receipts_s": receipts_s + inbox_s + started,
    }


def baselines(seconds: float) -> dict[str, float]:
    import nacl.signing
    import plyvel

    sk = nacl.signing.SigningKey(os.urandom(32))
    signed = sk.sign(os.urandom(600))
    vk = sk.verify_key
    verify = rate(lambda: vk.verify(signed), min_seconds=seconds)
    with tempfile.TemporaryDirectory() as tmp:
        db = plyvel.DB(tmp, create_if_missing=True)
        counter = iter(range(1 << 62))
        blob = os.urandom(DOC_BYTES)

        def batch() -> None:
            with db.write_batch(transaction=True, sync=True) as wb:
                for _ in range(16):
                    wb.put(next(counter).to_bytes(8, "big"), blob)

        synced = rate(batch, min_seconds=seconds, per_call=16)
        db.close()
    return {"verify_per_s": verify, "plyvel_synced_puts_per_s": synced}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 6,000: the window (~9 s) spans the relay's sync rounds (every 5 s here). With 2,000 (~3 s) a run counted the
    # relay's pulls or not depending on where its rounds fell: 560-694 or ~800 documents/s (docs/performance.md).
    ap.add_argument("--docs", type=int, default=6000, help="documents for the throughput run")
    ap.add_argument("--gossip-docs", type=int, default=400, help="documents for the one-gossip-message-per-envelope run")
    ap.add_argument("--catchup", type=int, default=10_000, help="documents sent while the recipient is down")
    ap.add_argument("--statuses", type=int, default=3000, help="processing statuses sent by the recipient, one per document")
    ap.add_argument("--rate", type=float, default=20.0, help="documents/s for the latency run")
    ap.add_argument("--latency-docs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=4, help="integrator connections submitting at once (each waits for its fsync)")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    base = baselines(2.0)
    fast = FAST_SYNC
    with tempfile.TemporaryDirectory(prefix="truc-bench-") as tmp:
        net = Net(Path(tmp) / "push", tune=fast)
        try:
            net.start_all()
            time.sleep(2)
            idle = {c: net.rss_mib(c) for c in net.homes}
            t, ids = throughput(net, args.docs, args.threads)
            st = statuses(net, ids[: args.statuses], args.threads) if args.statuses > 0 else None
            lat = latency(net, args.latency_docs, args.rate)
            cu = catchup(net, args.catchup, args.threads)
        finally:
            net.stop_all()
        gnet = Net(
            Path(tmp) / "gossip",
            tune={
                **fast,
                "direct_push = true": "direct_push = false",
                "batch_kb = 256": "batch_kb = 1",
                "flush_ms = 20": "flush_ms = 0",
                "initial_s = 1": "initial_s = 60",
                "cap_s = 300": "cap_s = 600",
            },
        )
        try:
            gnet.start_all()
            time.sleep(3)
            g, _ = throughput(gnet, args.gossip_docs)
        finally:
            gnet.stop_all()
    env_rate = 2 * t["docs_per_s"]
    status_rows: list[dict[str, Any]] = []
    if st is not None:
        status_rows = [
            {
                "measure": f"a processing status (03) over IPC, {args.threads} connections: CPU per status, G22 / H29 / H17",
                "value": " / ".join(f"{st['cpu_ms_' + c[-3:]]:.2f}" for c in (G22, H29, H17)),
                "unit": "ms",
                "baseline": "CPU per document",
                "ratio": sum(st["cpu_ms_" + c[-3:]] for c in (G22, H29, H17))
                / sum(t["cpu_ms_per_doc_" + c[-3:]] for c in (G22, H29, H17)),
            },
            {"measure": "  statuses delivered", "value": st["per_s"], "unit": "/s", "baseline": "", "ratio": None},
        ]
    genv_rate = 2 * g["docs_per_s"]
    rows += [
        {
            "measure": f"throughput, {DOC_BYTES >> 10} KiB docs with receipts (push, batched)",
            "value": t["docs_per_s"],
            "unit": "docs/s",
            "baseline": "gossip, 1 envelope/message",
            "ratio": t["docs_per_s"] / g["docs_per_s"],
        },
        {"measure": "  envelopes per node (doc + receipt)", "value": env_rate, "unit": "env/s", "baseline": "", "ratio": None},
        {
            "measure": f"  submit rate ({args.threads} connections, each waiting for its fsync)",
            "value": t["docs"] / t["submit_s"],
            "unit": "docs/s",
            "baseline": "",
            "ratio": None,
        },
        {
            "measure": "  submit-to-receipt p50 / p99 under saturation",
            "value": f"{t['p50_ms']:.0f} / {t['p99_ms']:.0f}",
            "unit": "ms",
            "baseline": "",
            "ratio": None,
        },
        {
            "measure": "  CPU per document in that run: G22 / H29 / H17",
            "value": " / ".join(f"{t['cpu_ms_per_doc_' + c[-3:]]:.2f}" for c in (G22, H29, H17)),
            "unit": "ms",
            "baseline": "",
            "ratio": None,
        },
        *status_rows,
        {
            "measure": "throughput, one gossip message per envelope",
            "value": g["docs_per_s"],
            "unit": "docs/s",
            "baseline": "",
            "ratio": 1.0,
        },
        {"measure": "  envelopes per node", "value": genv_rate, "unit": "env/s", "baseline": "", "ratio": None},
        {
            "measure": f"latency at {args.rate:g} docs/s: p50 / p99",
            "value": f"{lat['p50_ms']:.0f} / {lat['p99_ms']:.0f}",
            "unit": "ms",
            "baseline": "",
            "ratio": None,
        },
        {
            "measure": f"catch-up: {cu['docs']:,} docs missed, all in the inbox after restart",
            "value": f"{cu['inbox_complete_s']:.1f}",  # tenths: the target is 15 s, and runs differ by less than 1 s
            "unit": "s",
            "baseline": "",
            "ratio": None,
        },
        {
            "measure": "  ... and every receipt back at the sender",
            "value": f"{cu['all_receipts_s']:.1f}",
            "unit": "s",
            "baseline": "",
            "ratio": None,
        },
        {
            "measure": "RSS idle: G22 / H29 / H17",
            "value": " / ".join(f"{idle[c]:.0f}" for c in (G22, H29, H17)),
            "unit": "MiB",
            "baseline": "",
            "ratio": None,
        },
        {
            "measure": "RSS peak under load: G22 / H29 / H17",
            "value": " / ".join(f"{t['rss_peak_' + c[-3:]]:.0f}" for c in (G22, H29, H17)),
            "unit": "MiB",
            "baseline": "",
            "ratio": None,
        },
        {
            "measure": "baseline: raw PyNaCl Ed25519 verify",
            "value": base["verify_per_s"],
            "unit": "/s",
            "baseline": "",
            "ratio": env_rate / base["verify_per_s"],
        },
        {
            "measure": "baseline: raw plyvel synced puts (16 KiB, batches of 16)",
            "value": base["plyvel_synced_puts_per_s"],
            "unit": "/s",
            "baseline": "",
            "ratio": env_rate / base["plyvel_synced_puts_per_s"],
        },
    ]
    report("node", rows)


if __name__ == "__main__":
    main()
