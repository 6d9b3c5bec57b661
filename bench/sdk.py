"""The national SDK's HTTP calls through two real `truc run` processes, against the same HTTP stack answering a no-op.

    python -m bench.sdk [--latency-runs 10] [--docs 200] [--threads 4] [--seconds 3]

G22's document system sends with sendEdoc; H29's polls getReceivedEdocList.
Measured in one run, with simnet/sdk_client.py (signing as VNPT's SDK does):

* sendEdoc of a 1 MiB package -> the document in H29's getReceivedEdocList
  (polled every 2 ms), p50 and max; baseline: the same signed multipart POST
  answered by a no-op handler on node/http.py's server (upload + answer);
* documents/s through the two nodes: ``--docs`` 16 KiB packages sent by
  ``--threads`` clients, until all are listed at H29; baseline: the same
  POSTs to the no-op server;
* getReceivedEdocList calls/s with ``--docs`` documents listed (one client);
  baseline: the same signed call to the no-op server.

The no-op server runs in its own process (``--serve-noop PORT``), like the node.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import rate, report
from identity import sdk_systems
from protocol.agency import AgencyCode
from protocol.edxml import EdocFields, FileSpec, ZipMode, build_edoc, write_bytes
from simnet.processes import FAST_SYNC, ProcessNetwork, free_port, wait_for
from simnet.sdk_client import SdkClient

G22, H29 = "000.00.00.G22", "000.00.00.H29"
UNLIMITED = {"rate_per_s = 20": "rate_per_s = 1000000", "burst = 60": "burst = 1000000"}


def serve_noop(port: int) -> None:
    """node/http.py's server answering every request with an OK envelope after reading its body."""
    import trio

    from node.http import HttpLimits, HttpServer, Request, Response
    from node.log import NullLog
    from node.metrics import Metrics
    from protocol import sdk

    async def handle(req: Request) -> Response:
        async for _ in req.chunks(1 << 30):
            pass
        return Response(200, sdk.ok(DocId="0" * 64), "application/json")

    async def main() -> None:
        server = HttpServer(handle, limits=HttpLimits(max_connections=256), log=NullLog(), metrics=Metrics(), name="noop")
        await server.serve(await trio.open_tcp_listeners(port, host="127.0.0.1"))

    trio.run(main)


def package(number: int, size: int) -> bytes:
    fields = EdocFields(
        sender=G22, recipients=(H29,), subject=f"Văn bản {number}", number=str(number), notation="B", date="2026-12-01"
    )
    p = build_edoc(fields, names=lambda c: "", files=[FileSpec("vb.pdf", "application/pdf")])
    return write_bytes(p, [os.urandom(size)], zip=ZipMode.RAW, at_ms=0, rng=os.urandom)


def enable(home: Path, code: str) -> tuple[str, str]:
    port = free_port()
    sdk_systems.enable(home, f"127.0.0.1:{port}")
    secret, _ = sdk_systems.add_system(home, "bench", [AgencyCode.parse(code)], os.urandom)
    cfg = home / "config.toml"
    text = cfg.read_text()
    for old, new in UNLIMITED.items():
        text = text.replace(old, new)
    cfg.write_text(text)
    return f"http://127.0.0.1:{port}/XrdAdapter/adapter", secret


def listed(c: SdkClient, doc: str) -> bool:
    return any(r["docId"] == doc for r in c.received())


def parallel(n: int, threads: int, fn: Any) -> float:
    """Seconds for ``fn(i)`` over i < n spread across ``threads`` threads."""
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(k, n, threads):
                fn(i)
        except BaseException as exc:
            errors.append(exc)

    start = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-runs", type=int, default=10)
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--serve-noop", type=int, default=0)
    args = ap.parse_args()
    if args.serve_noop:
        serve_noop(args.serve_noop)
        return
    noop_port = free_port()
    noop = subprocess.Popen([sys.executable, "-m", "bench.sdk", "--serve-noop", str(noop_port)])
    root = Path(tempfile.mkdtemp(prefix="truc-bench-sdk-"))
    net = ProcessNetwork(root, {"g22": [G22], "h29": [H29]}, network="bench", tune=FAST_SYNC)
    g_url, g_secret = enable(net["g22"].home, G22)
    h_url, h_secret = enable(net["h29"].home, H29)
    rows: list[dict[str, Any]] = []
    try:
        net.start_all()
        sender, receiver = SdkClient(g_url, "bench", g_secret), SdkClient(h_url, "bench", h_secret)
        noop_url = f"http://127.0.0.1:{noop_port}/XrdAdapter/adapter"
        base = SdkClient(noop_url, "bench", "x" * 32)
        wait_for(lambda: base.call("countReceiveEdoc")["status"] == "OK", 10, "the no-op server")

        latencies, uploads = [], []
        for i in range(args.latency_runs):
            data = package(1_000_000 + i, 786_000)  # base64 and XML make it 1 MiB
            assert 1 << 20 <= len(data) < (1 << 20) + 65536, len(data)
            start = time.perf_counter()
            sent = sender.send_edoc(data, G22)
            assert sent["status"] == "OK", sent
            doc = sent["DocId"]
            wait_for(lambda doc=doc: listed(receiver, doc), 60, "the 1 MiB document at H29", interval=0.002)  # type: ignore[misc]
            latencies.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            assert base.send_edoc(data, G22)["status"] == "OK"
            uploads.append((time.perf_counter() - start) * 1000)
            receiver.update_status(doc)
        p50, noop50 = statistics.median(latencies), statistics.median(uploads)
        rows.append(
            {
                "measure": "sendEdoc 1 MiB -> listed at H29, p50 / max ms",
                "value": f"{p50:.0f} / {max(latencies):.0f}",
                "baseline": f"no-op upload {noop50:.0f} ms",
                "ratio": round(p50 / noop50, 1),
            }
        )

        small = [package(i, 16 << 10) for i in range(args.docs)]
        docs: list[str] = [""] * args.docs

        def send(i: int) -> None:
            docs[i] = SdkClient(g_url, "bench", g_secret).send_edoc(small[i], G22)["DocId"]

        start = time.perf_counter()
        parallel(args.docs, args.threads, send)
        wait_for(lambda: len(receiver.received()) >= args.docs, 120, "every document listed at H29", interval=0.01)
        took = time.perf_counter() - start
        noop_took = parallel(args.docs, args.threads, lambda i: SdkClient(noop_url, "bench", "x" * 32).send_edoc(small[i], G22))
        rows.append(
            {
                "measure": f"documents/s through two nodes ({args.docs} x 16 KiB, {args.threads} clients, sendEdoc -> listed)",
                "value": round(args.docs / took, 1),
                "baseline": f"no-op sendEdoc {args.docs / noop_took:.0f}/s",
                "ratio": round((args.docs / took) / (args.docs / noop_took), 2),
            }
        )

        calls = rate(lambda: receiver.received(), min_seconds=args.seconds)
        noop_calls = rate(
            lambda: base.call("getReceivedEdocList", servicetype="eDoc", messagetype="edoc"), min_seconds=args.seconds
        )
        rows.append(
            {
                "measure": f"getReceivedEdocList calls/s ({len(receiver.received())} rows listed)",
                "value": round(calls),
                "baseline": f"no-op call {noop_calls:.0f}/s",
                "ratio": round(calls / noop_calls, 2),
            }
        )
        rows.append(
            {"measure": "RSS after the run, G22 / H29 (MiB)", "value": f"{net['g22'].rss_mib():.0f} / {net['h29'].rss_mib():.0f}"}
        )
    finally:
        net.stop_all()
        noop.terminate()
        noop.wait(timeout=10)
    report("sdk", rows)


if __name__ == "__main__":
    main()
