"""The daemon entry points: the only part of cli/ that hands over to node/ and simnet/.

Imported lazily by ``truc run`` so that admin commands load fast and never
touch the store (which the running daemon holds anyway); ``truc store ...``
opens it here, offline, with the node stopped.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any


def run(home: Path) -> int:
    # The imports (py-libp2p above all) and the directory load make ~1M objects that live as long as the
    # process; the collector walked them again and again meanwhile (a start took 0.1 s more CPU, on a
    # machine starting 95 nodes). node.daemon freezes them and turns the collector back on.
    gc.disable()
    from node.daemon import main

    return main(home)


def demo(*, short: bool, keep: Path | None) -> int:
    from simnet.demo import run_demo

    return run_demo(short=short, keep=keep)


def simnet_run(
    *,
    nodes: int | None,
    agencies: Path | None,
    docs: int | None,
    rate: float | None,
    duration: float,
    faults: str,
    seed: int,
    report: Path | None,
    mode: str,
    relay: int,
    max_size_mb: float,
    keep: Path | None,
) -> int:
    import shutil
    import tempfile

    from protocol.agency import parse_agency_list
    from simnet.agencies import embedded_agencies, national_set
    from simnet.config import Mode
    from simnet.sim import SimConfig, run_simulation, verdict_lines

    listing = parse_agency_list(agencies.read_text("utf-8")) if agencies is not None else embedded_agencies()
    chosen = national_set(listing, nodes) if nodes is not None else listing
    count = docs if docs is not None else max(1, round((rate or 0.5) * duration))
    cfg = SimConfig(
        agencies=chosen,
        docs=count,
        duration_s=duration,
        faults=faults,
        seed=seed,
        mode=Mode(mode),
        relay_shards=relay,
        max_size=int(max_size_mb * (1 << 20)),
    )
    root = keep if keep is not None else Path(tempfile.mkdtemp(prefix="truc-simnet-"))
    try:
        outcome = run_simulation(cfg, root)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    s = outcome.stats
    print(
        f"{s['documents']} documents, {s['deliveries']} deliveries, {s['broadcasts']} broadcasts, "
        f"{s['bytes_sent'] / 1e6:.1f} MB; latency p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms; "
        f"{s['simulated_s']} s simulated in {s['wall_s']} s"
    )
    print("statuses: " + ", ".join(f"{k}: {v}" for k, v in s["statuses"].items()))
    for line in verdict_lines(outcome):
        print(line)
    if report is not None:
        from simnet.report import write_report

        written = write_report(
            outcome,
            report,
            {"nodes": len(chosen), "docs": count, "duration_s": duration, "faults": faults, "seed": seed, "mode": mode},
        )
        print(f"report: {', '.join(str(p) for p in written)}")
    return 0 if outcome.ok else 1


def store_tool(command: str, home: Path, **kw: Any) -> dict[str, Any]:
    """``truc store COMMAND``: check, gc, repair or adopt (node/maintenance.py); the node must be stopped."""
    from node import maintenance

    result: dict[str, Any] = getattr(maintenance, command)(home, **kw)
    return result
