"""simnet reports: ``summary.json`` and PNG plots in ``--report DIR``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import Outcome

FAULT_COLOURS = {"kill": "#d62728", "partition": "#9467bd", "delay": "#ff7f0e", "loss": "#8c564b"}
POINT_FAULTS = ("rekey", "join", "forge")


def write_report(outcome: Outcome, directory: Path, config: dict[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    summary = {
        "verdict": "PASS" if outcome.ok else "FAIL",
        "config": config,
        "checks": outcome.checks,
        "stats": outcome.stats,
        "timeline": outcome.timeline,
        "samples": outcome.samples,
    }
    paths = [directory / "summary.json"]
    paths[0].write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    paths += _plots(outcome, directory)
    return paths


def _plots(outcome: Outcome, directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faults = outcome.stats.get("faults", [])
    out = []

    # 1. Latency CDF (submit to receipt).
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lat = sorted(outcome.latencies_ms)
    if lat:
        ax.plot([v / 1000 for v in lat], [(i + 1) / len(lat) for i in range(len(lat))], color="#1f77b4")
        ax.set_xscale("log")
    ax.set_xlabel("submit to signed 01 receipt (s, log scale)")
    ax.set_ylabel("share of deliveries")
    p = outcome.stats.get("latency_ms", {})
    ax.set_title(f"Delivery latency CDF — p50 {_s(p.get('p50'))}, p99 {_s(p.get('p99'))}, {len(lat)} deliveries")
    ax.grid(True, which="both", alpha=0.3)
    out.append(_save(fig, directory / "latency_cdf.png"))

    # 2. Deliveries over time and 3. queue depth, fault windows shaded.
    ts = [s["t"] for s in outcome.samples]
    receipted = [s["receipted"] for s in outcome.samples]
    pending = [s["pending"] for s in outcome.samples]
    out.append(
        _over_time(
            directory / "deliveries.png",
            ts,
            receipted,
            faults,
            color="#2ca02c",
            label="deliveries receipted (cumulative)",
            ylabel="deliveries",
            title="Deliveries over time, fault windows shaded",
        )
    )
    out.append(
        _over_time(
            directory / "queues.png",
            ts,
            pending,
            faults,
            color="#1f77b4",
            label="pending deliveries, all outboxes",
            ylabel="pending",
            title="Outbox depth over time",
        )
    )
    return out


def _over_time(
    path: Path, ts: list[float], ys: list[float], faults: list[dict[str, Any]], *, color: str, label: str, ylabel: str, title: str
) -> Path:
    import matplotlib.pyplot as plt  # after _plots chose the Agg backend

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(ts, ys, color=color, label=label)
    _mark_faults(ax, faults)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def _mark_faults(ax: Any, faults: list[dict[str, Any]]) -> None:
    seen = set()
    for f in faults:
        kind = f["kind"]
        label = kind if kind not in seen else None
        seen.add(kind)
        if kind in POINT_FAULTS:
            ax.axvline(f["start_s"], color="#7f7f7f", linestyle="--", linewidth=1, label=label)
            ax.annotate(
                f"{kind} {f['arg']}".strip(),
                (f["start_s"], 0),
                rotation=90,
                fontsize=7,
                xytext=(3, 5),
                textcoords="offset points",
            )
        else:
            ax.axvspan(
                f["start_s"], f["start_s"] + f["length_s"], color=FAULT_COLOURS.get(kind, "#cccccc"), alpha=0.15, label=label
            )


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _s(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f} s"
