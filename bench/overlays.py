"""What a connection costs in the overlay itself: a full mesh of bare overlays in one process.

    python -m bench.overlays [--overlays 20] [--topics 96] [--rounds 2]

N bare overlays (node/p2p.py, real py-libp2p hosts on 127.0.0.1, no engine,
no store) each subscribe to T topics, as a national node relays 96 shards;
overlay i dials the i before it. Measured in CPU seconds of the process that
runs them: forming the mesh (start to every overlay at N-1 peers), the 5 s
after, and 30 s of idle from 15 s after forming (a whole period of yamux's
30 s timers). The baseline, run alternately, each mesh in a fresh process,
so the machine's load hits both alike, is the same mesh with one topic: the
difference is what subscribing to many topics costs per connection. This is
the library's share of the 95-process mesh (``bench.idle``) without 95
start-ups competing for the cores, so a change to the overlay shows here in
a few minutes, out of that bench's noise.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from bench.common import cpu_seconds, report
from identity.keys import NodeKey
from node.log import NullLog
from node.metrics import Metrics
from node.p2p import P2POverlay
from simnet.processes import free_port

IDLE_S = 30.0  # one whole period of yamux's 30 s timers (RTT pings, stale-stream sweeps) per connection


async def _ignore(topic: str, sender: str, data: bytes) -> None:
    return None


def one_mesh(n: int, topics: int) -> dict[str, float]:
    """Form one full mesh of ``n`` overlays with ``topics`` topics each; CPU of each phase."""
    keys = [NodeKey(secrets.token_bytes(32)) for _ in range(n)]
    ports = [free_port() for _ in range(n)]
    members = {k.peer_id for k in keys}
    addrs = {k.peer_id: [f"/ip4/127.0.0.1/tcp/{p}"] for k, p in zip(keys, ports, strict=True)}

    def overlay(i: int) -> P2POverlay:
        earlier = {k.peer_id: addrs[k.peer_id] for k in keys[:i]}
        return P2POverlay(
            key=keys[i],
            listen=addrs[keys[i].peer_id],
            is_member=lambda p: p in members,
            targets=lambda: earlier,
            log=NullLog(),
            metrics=Metrics(),
            restarted=True,  # dial at once: the mesh, not the second dialer's wait, is measured
        )

    overlays = [overlay(i) for i in range(n)]
    names = [f"truc/bench/{t}" for t in range(topics)]
    out: dict[str, float] = {}

    async def main() -> None:
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                c0, t0 = cpu_seconds(), time.monotonic()
                for ov in overlays:
                    await nursery.start(ov.run)
                    for name in names:
                        await ov.subscribe(name, lambda topic, sender, data: True, _ignore)
                while not all(len(ov.connected_peers()) == n - 1 for ov in overlays):
                    await trio.sleep(0.05)
                c1, out["form_s"] = cpu_seconds(), time.monotonic() - t0
                await trio.sleep(5)
                c2 = cpu_seconds()
                await trio.sleep(10)
                c3 = cpu_seconds()
                await trio.sleep(IDLE_S)
                c4 = cpu_seconds()
                out["form_cpu_s"], out["settle_cpu_s"] = c1 - c0, c2 - c1
                out["per_end_ms"] = (c2 - c0) / (n * (n - 1)) * 1000
                out["idle_pct"] = (c4 - c3) / IDLE_S / n * 100
                nursery.cancel_scope.cancel()

    trio.run(main)
    return out


def _child(n: int, topics: int) -> dict[str, float]:
    """One mesh in a fresh process: every round starts from the same interpreter state."""
    code = f"import json, bench.overlays as b; print(json.dumps(b.one_mesh({n}, {topics})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overlays", type=int, default=20, help="overlays in the mesh (one process)")
    ap.add_argument("--topics", type=int, default=96, help="topics each overlay subscribes to (95 shards + directory)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of the mesh and its one-topic baseline")
    args = ap.parse_args()
    many: list[dict[str, float]] = []
    one: list[dict[str, float]] = []
    for _ in range(args.rounds):
        many.append(_child(args.overlays, args.topics))
        one.append(_child(args.overlays, 1))

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    n, t = args.overlays, args.topics
    rows: list[dict[str, Any]] = []
    for key, what, unit in (
        ("per_end_ms", f"CPU per connection end, forming + 5 s ({n} overlays)", "ms"),
        ("form_cpu_s", "CPU to form the full mesh", "core-s"),
        ("settle_cpu_s", "CPU in the 5 s after forming", "core-s"),
        ("idle_pct", "idle CPU per overlay, 30 s from 15 s later", "% of a core"),
        ("form_s", "time to form", "s"),
    ):
        rows.append(
            {
                "measure": f"{t} topics: {what}",
                "median": med(many, key),
                "runs": " / ".join(f"{r[key]:.2f}" for r in many),
                "unit": unit,
                "baseline (1 topic)": med(one, key),
                "vs_baseline": med(many, key) / max(med(one, key), 1e-9),
            }
        )
    report("overlays", rows)


if __name__ == "__main__":
    main()
