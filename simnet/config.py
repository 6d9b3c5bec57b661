"""What a simnet run is given (:class:`SimConfig`) and what it hands back (:class:`Outcome`).

Apart from the flow (sim.py) so that the drivers, the fault registry and the
report can name them without importing the flow that imports them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from protocol.agency import AgencyListing


class Mode(enum.StrEnum):
    """How the nodes run (docs/simnet.md says which scenario uses which)."""

    VIRTUAL = "virtual"  # in this process, on a simulated wire, in virtual time
    LIBP2P = "libp2p"  # in this process, real py-libp2p hosts on 127.0.0.1, real time
    PROCESSES = "processes"  # one `truc run` per agency, driven through IPC, real time


@dataclass
class SimConfig:
    agencies: list[AgencyListing]
    docs: int = 300
    duration_s: float = 600.0
    faults: str = "default"
    seed: int = 1
    mode: Mode = Mode.VIRTUAL
    max_size: int = 8 << 20
    relay_shards: int = 3  # shards each node relays besides its own; -1 = every shard
    status_delay_s: float = 0.0  # mean time between a recipient's statuses; 0 = duration / 30
    latency_ms: tuple[float, float] = (5.0, 40.0)
    settle_s: float = 1800.0
    peaks: bool = True  # morning peaks; False: a steady rate (benchmarks)

    def __post_init__(self) -> None:
        self.mode = Mode(self.mode)  # from untyped callers, the mode's name ("libp2p") is as good as the member


@dataclass
class Outcome:
    ok: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
