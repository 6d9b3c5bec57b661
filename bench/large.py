"""One large document end to end: 3 real `truc run` processes on loopback.

    python -m bench.large [--mb 100] [--psk]

G22 sends an N MB attachment (given as a path, so nothing large crosses the
IPC socket) to H29; H17 relays (it keeps the envelope, not the blocks). We
measure submit time (hash + seal + store at the sender), time to the signed
01 receipt, time for H29's document system to fetch the file through IPC,
and the peak memory of each process, sampled every 20 ms: anonymous memory
(heap: what the node holds) apart from total RSS (which also counts
LevelDB's memory-mapped table files, clean page cache the kernel reclaims).
Baselines in the same run: raw loopback TCP transfer and SHA-256 of the same
bytes. With ``--psk`` the three nodes run on a private network (one shared
libp2p PSK v1 key, as deployments should): the same rows, with XSalsa20 on
every byte of the overlay.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from bench.common import report
from identity.psk import generate_psk, save_psk_file
from simnet.agencies import embedded_agencies
from simnet.processes import FAST_SYNC, ProcessNetwork

G22, H29, H17 = "000.00.00.G22", "000.00.00.H29", "000.00.00.H17"


def loopback_tcp_seconds(data: bytes) -> float:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    received = [0]

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                received[0] += len(chunk)

    t = threading.Thread(target=sink)
    t.start()
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(data)
    t.join()
    server.close()
    assert received[0] == len(data)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--psk", action="store_true", help="run the three nodes on a private network (libp2p PSK v1)")
    args = ap.parse_args()
    names = {a.code: a.name for a in embedded_agencies()}
    with tempfile.TemporaryDirectory(prefix="truc-large-") as tmp:
        root = Path(tmp)
        inbox = root / "in"  # a directory the sender may read files from ([ipc] read_paths), outside every node's home
        inbox.mkdir()
        payload = inbox / "phu-luc.bin"
        with open(payload, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        data = payload.read_bytes()
        tcp_s = loopback_tcp_seconds(data)
        t = time.perf_counter()
        digest = hashlib.sha256(data).hexdigest()
        sha_s = time.perf_counter() - t
        del data
        tune = {**FAST_SYNC, "read_paths = []": f"read_paths = [{str(inbox)!r}]"}
        if args.psk:
            key = root / "swarm.key"
            save_psk_file(key, generate_psk(os.urandom))
            tune['psk_file = ""'] = f"psk_file = {str(key)!r}"
        net = ProcessNetwork(root / "net", {G22: [G22], H29: [H29], H17: [H17]}, network="bench", names=names, tune=tune)
        try:
            net.start_all()
            idle = {c: net[c].anon_mib() for c in (G22, H29, H17)}
            peak_anon = dict(idle)
            peak_rss = {c: net[c].rss_mib() for c in (G22, H29, H17)}
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    for c in (G22, H29, H17):
                        peak_anon[c] = max(peak_anon[c], net[c].anon_mib())
                        peak_rss[c] = max(peak_rss[c], net[c].rss_mib())
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            doc = net[G22].call(
                "submit",
                **{"from": G22, "to": [H29], "subject": "Tài liệu lớn", "files": [{"name": "phu-luc.bin", "path": str(payload)}]},
            )["id"]
            submit_s = time.perf_counter() - t0
            deadline = t0 + max(120.0, args.mb)  # ~1 s per MB at worst: a refused or stuck delivery ends the run
            while True:
                track = net[G22].call("document.track", id=doc)
                recipient = track["recipients"][0]
                if recipient["state"] == "delivered":
                    break
                if recipient["state"] == "failed" or time.perf_counter() > deadline:
                    raise SystemExit(f"bench.large: no receipt for {doc}: {recipient}")
                time.sleep(0.02)  # one record read per poll; at 0.2 s the row carried up to 0.2 s of polling
            receipt_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            with net[H29].client() as c:
                got = c.get_document(doc, root / "received")
            fetch_s = time.perf_counter() - t1
            sampling.set()
            sampler.join()
            assert got["files"][0]["sha256"] == digest
            assert hashlib.sha256((root / "received" / "phu-luc.bin").read_bytes()).hexdigest() == digest
        finally:
            net.stop_all()
    mb = args.mb
    rows = [
        {
            "measure": f"submit {mb} MB (hash, seal, store; durable)",
            "value": submit_s,
            "unit": "s",
            "MB/s": mb / submit_s,
            "vs_baseline": submit_s / sha_s,
        },
        {
            "measure": "submit to signed 01 receipt (blocks fetched, checked, opened)",
            "value": receipt_s,
            "unit": "s",
            "MB/s": mb / receipt_s,
            "vs_baseline": receipt_s / tcp_s,
        },
        {
            "measure": "recipient's system fetches it over IPC (sha-256 checked)",
            "value": fetch_s,
            "unit": "s",
            "MB/s": mb / fetch_s,
            "vs_baseline": fetch_s / tcp_s,
        },
        {
            "measure": "baseline: raw loopback TCP of the same bytes",
            "value": tcp_s,
            "unit": "s",
            "MB/s": mb / tcp_s,
            "vs_baseline": 1.0,
        },
        {"measure": "baseline: SHA-256 of the same bytes", "value": sha_s, "unit": "s", "MB/s": mb / sha_s, "vs_baseline": 1.0},
        *(
            {
                "measure": f"{role} {c[-3:]}: heap peak / idle (total RSS peak)",
                "value": f"{peak_anon[c]:.0f} / {idle[c]:.0f} ({peak_rss[c]:.0f})",
                "unit": "MiB",
                "MB/s": None,
                "vs_baseline": (peak_anon[c] - idle[c]) / mb,
            }
            for role, c in (("sender", G22), ("recipient", H29), ("relay", H17))
        ),
    ]
    report("large-psk" if args.psk else "large", rows)


if __name__ == "__main__":
    main()
