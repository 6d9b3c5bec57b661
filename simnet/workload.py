"""A seeded workload like the national axis carries, for simnet and benchmarks.

* Senders are skewed (Zipf): the Government Office (G22) sends most, a few
  ministries and big provinces follow, most agencies send little.
* Recipients: usually one, sometimes a few, sometimes a broadcast from G22 to
  every agency.
* Sizes: log-normal, median ~60 KiB, from a few KiB up to tens of MiB.
* Time: a Poisson process with two "morning peaks" at four times the base rate.
* Statuses: each recipient registers (03) or rejects (02) a document some
  time after the automatic 01, then assigns (04), processes (05, 1-3 times)
  and finishes (06); a few documents are asked back (13) by their sender and
  the recipient agrees (15) or refuses (16).

Everything follows from the seed, so a run can be replayed exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from protocol.agency import AgencyCode
from protocol.status import StatusCode

G22 = AgencyCode.parse("G22")
PEAKS = ((0.10, 0.22), (0.55, 0.65))  # fractions of the run with 4x the base rate
PEAK_FACTOR = 4.0


@dataclass(frozen=True)
class DocPlan:
    index: int
    at_s: float
    sender: AgencyCode
    recipients: tuple[AgencyCode, ...]
    size: int
    broadcast: bool
    takeback: bool  # the sender will ask one recipient to give it back


@dataclass(frozen=True)
class StatusPlan:
    """How one recipient will process one document (delays in seconds after the previous step)."""

    reject: bool
    delays: tuple[float, ...]  # before 03/02, 04, 05..., 06
    processing_steps: int
    takeback_answer: StatusCode  # AGREED (15) or REFUSED (16) if asked to give the document back


@dataclass(frozen=True)
class Workload:
    plans: list[DocPlan]
    senders: tuple[AgencyCode, ...]  # heaviest first (the Zipf ranks)

    @property
    def hub(self) -> AgencyCode:
        """The agency that sends most: the Government Office (G22) when it is in the network."""
        return self.senders[0]


def _intensity(frac: float) -> float:
    return PEAK_FACTOR if any(a <= frac < b for a, b in PEAKS) else 1.0


def plan_documents(
    agencies: list[AgencyCode],
    *,
    count: int,
    duration_s: float,
    rng: random.Random,
    max_size: int = 40 << 20,
    broadcast_share: float = 0.02,
    peaks: bool = True,
) -> Workload:
    """``count`` documents over ``duration_s`` seconds among ``agencies`` (``peaks=False``: a steady rate)."""
    if len(agencies) < 2:
        raise ValueError("a workload needs at least two agencies")
    order = sorted(agencies, key=str)
    rng.shuffle(order)
    if G22 in order:  # the Government Office is the biggest sender
        order.remove(G22)
        order.insert(0, G22)
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(len(order))]
    times = _arrival_times(count, duration_s, rng) if peaks else sorted(rng.uniform(0, duration_s) for _ in range(count))
    plans = []
    for i, at in enumerate(times):
        sender = rng.choices(order, weights)[0]
        others = [a for a in agencies if a != sender]
        roll = rng.random()
        broadcast = sender == G22 and roll < broadcast_share * 5  # G22 sends ~a fifth of all documents
        if broadcast:
            to = others
        elif roll < 0.70:
            to = rng.sample(others, 1)
        elif roll < 0.90:
            to = rng.sample(others, min(len(others), rng.randint(2, 3)))
        else:
            to = rng.sample(others, min(len(others), rng.randint(4, 10)))
        size = int(min(max_size, max(2048, math.exp(rng.gauss(math.log(60 << 10), 1.6)))))
        plans.append(DocPlan(i, at, sender, tuple(sorted(to, key=str)), size, broadcast, rng.random() < 0.02 and not broadcast))
    return Workload(plans, tuple(order))


def _arrival_times(count: int, duration_s: float, rng: random.Random) -> list[float]:
    """``count`` arrival times with the morning-peak intensity (inverse-CDF sampling, sorted)."""
    steps = 1000
    cdf = [0.0]
    for k in range(steps):
        cdf.append(cdf[-1] + _intensity((k + 0.5) / steps))
    total = cdf[-1]
    out = []
    for _ in range(count):
        u = rng.random() * total
        lo, hi = 0, steps
        while lo < hi:
            mid = (lo + hi) // 2
            if cdf[mid + 1] < u:
                lo = mid + 1
            else:
                hi = mid
        within = (u - cdf[lo]) / (cdf[lo + 1] - cdf[lo])
        out.append((lo + within) / steps * duration_s)
    return sorted(out)


def plan_statuses(rng: random.Random, *, mean_delay_s: float) -> StatusPlan:
    reject = rng.random() < 0.05
    steps = rng.randint(1, 3)
    delays = tuple(rng.expovariate(1 / mean_delay_s) for _ in range(3 + steps))
    answer = StatusCode.AGREED if rng.random() < 0.6 else StatusCode.REFUSED
    return StatusPlan(reject=reject, delays=delays, processing_steps=steps, takeback_answer=answer)
