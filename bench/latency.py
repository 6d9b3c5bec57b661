"""Submit-to-receipt latency of the 95-agency network at a fixed rate, with and without added link delay.

    python -m bench.latency [--rate 1] [--duration 300] [--delays 0,100,300]

Runs simnet's virtual mode (real engines, stores and crypto; a simulated wire
in virtual time) with a steady workload of the national mix, no faults. Link
latency is drawn per link from 5-40 ms; each row adds a fixed delay to every
link. The baseline, from the same run, is the links' mean one-way latency:
a document needs at least two one-way trips before its receipt is back (the
push, then the 01), plus block fetches for bodies over 48 KiB, plus the
20 ms flush windows. Bandwidth is not simulated: transfer time is in the
real benchmarks (bench/node.py, bench/large.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import report
from simnet.agencies import embedded_agencies
from simnet.sim import SimConfig, run_simulation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1.0, help="documents per second")
    ap.add_argument("--duration", type=float, default=300.0, help="virtual seconds of workload")
    ap.add_argument("--delays", default="0,100,300", help="added one-way delay per link, ms, comma-separated")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rows = []
    agencies = embedded_agencies()
    lo, hi = 5.0, 40.0
    for delay in (float(d) for d in args.delays.split(",")):
        faults = "none" if delay == 0 else f"delay={delay:g}@0+100%"
        cfg = SimConfig(
            agencies=agencies,
            docs=round(args.rate * args.duration),
            duration_s=args.duration,
            faults=faults,
            seed=args.seed,
            latency_ms=(lo, hi),
            peaks=False,
            max_size=8 << 20,
        )
        with tempfile.TemporaryDirectory(prefix="truc-latency-") as tmp:
            outcome = run_simulation(cfg, Path(tmp), echo=lambda s: None)
        lat = outcome.stats["latency_ms"]
        one_way = (lo + hi) / 2 + delay
        rows.append(
            {
                "added delay/link (ms)": delay,
                "deliveries": outcome.stats["deliveries"],
                "p50 (ms)": lat["p50"],
                "p90 (ms)": lat["p90"],
                "p99 (ms)": lat["p99"],
                "baseline one-way (ms)": one_way,
                "p50 / one-way": (lat["p50"] or 0) / one_way,
                "verdict": "PASS" if outcome.ok else "FAIL",
                "wall (s)": outcome.stats["wall_s"],
            }
        )
    report("latency", rows)


if __name__ == "__main__":
    main()
