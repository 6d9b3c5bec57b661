"""Helpers shared by the benchmarks: timed loops, a table, a JSON report."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rate(fn: Callable[[], object], *, min_seconds: float = 1.0, per_call: int = 1) -> float:
    """Operations per second of ``fn`` (each call does ``per_call`` operations), after one warm-up call."""
    fn()
    n = 0
    start = time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n * per_call / elapsed


def cpu_seconds() -> float:
    """CPU time of this process so far, user and system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
    }


def report(name: str, rows: list[dict[str, Any]], out_dir: Path | None = None) -> Path:
    """Print rows as a table and write them as JSON under ``bench/results/``."""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols))
    out_dir = out_dir or Path(__file__).resolve().parent / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(
        json.dumps({"benchmark": name, "machine": machine(), "at": time.time(), "rows": rows}, indent=2, ensure_ascii=False)
    )
    print(f"\nwritten {path}")
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
    return "" if v is None else str(v)
