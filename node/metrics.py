"""Counters and gauges, exposed in the Prometheus text format."""

from __future__ import annotations

from collections.abc import Callable


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.gauges: dict[str, Callable[[], float]] = {}
        self.help: dict[str, str] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0) + amount

    def get(self, name: str, **labels: str) -> float:
        return self.counters.get((name, tuple(sorted(labels.items()))), 0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.counters.items() if n == name)

    def gauge(self, name: str, fn: Callable[[], float], help: str = "") -> None:
        self.gauges[name] = fn
        if help:
            self.help[name] = help

    def render(self) -> str:
        lines = []
        names = sorted({n for n, _ in self.counters})
        for name in names:
            lines.append(f"# TYPE truc_{name} counter")
            for (n, labels), v in sorted(self.counters.items()):
                if n == name:
                    lab = ",".join(f'{k}="{_esc(val)}"' for k, val in labels)
                    lines.append(f"truc_{name}{{{lab}}} {v:g}" if lab else f"truc_{name} {v:g}")
        for name, fn in sorted(self.gauges.items()):
            if name in self.help:
                lines.append(f"# HELP truc_{name} {self.help[name]}")
            lines.append(f"# TYPE truc_{name} gauge")
            try:
                lines.append(f"truc_{name} {fn():g}")
            except Exception:  # a gauge must never break the scrape
                lines.append(f"truc_{name} NaN")
        return "\n".join(lines) + "\n"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
