"""The fault registry: for each kind of fault, how it is injected and in which modes.

``REGISTRY`` maps every :class:`FaultKind` to a :class:`Handler`; the flow
(sim.py) starts one task per scheduled fault, which waits for the fault's
time and hands it to its kind's handler, or marks it skipped with the reason
the handler gives for this mode. A fault a mode cannot inject is never
reported as injected, and a check it would exercise prints SKIP, not PASS.

Handlers reach the nodes only through the run's driver (driver.py): ``kill``
through the :class:`Driver` every mode has, the others through its
:class:`Wire`, which exists only where the nodes run in this process.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from protocol.agency import AgencyCode
from protocol.ids import Digest

from .config import Mode
from .driver import Driver, NodeDown, Wire, node_name
from .faults import Fault, FaultKind, partition_groups


@dataclass(frozen=True)
class Crash:
    """A node killed during the run, and what its agency's inbox held just before."""

    code: AgencyCode
    node: str
    at: float
    inbox: set[Digest]


class Run(Protocol):
    """What a handler may see and change of the run in progress (the flow implements it)."""

    driver: Driver
    t0: float
    codes: list[AgencyCode]  # the network's agencies from the start
    joined: list[AgencyCode]  # agencies that joined since, in order
    rng: random.Random
    crashes: list[Crash]
    rekeyed: dict[AgencyCode, float]  # agency -> when its key was revoked
    forged: set[Digest]

    def now(self) -> float: ...

    def mark(self, what: str, **fields: Any) -> None: ...

    def welcome(self, code: AgencyCode) -> None:
        """A joining agency takes part at once: the workload's hub and it exchange documents."""
        ...


Inject = Callable[[Run, Fault], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    inject: Inject
    modes: frozenset[Mode]
    why_not: Mapping[Mode, str] = field(default_factory=dict)  # a reason more precise than the mode's usual one

    def skip_reason(self, mode: Mode) -> str | None:
        """None if this mode injects the fault; otherwise why not, for the timeline."""
        if mode in self.modes:
            return None
        return self.why_not.get(mode, NOT_INJECTED[mode])


NOT_INJECTED = {
    Mode.VIRTUAL: "not modelled on the virtual wire",
    Mode.LIBP2P: "not injected on real hosts; use --mode virtual",
    Mode.PROCESSES: "processes mode injects only kill; use --mode virtual for network faults",
}
ALL_MODES = frozenset(Mode)
IN_PROCESS = frozenset({Mode.VIRTUAL, Mode.LIBP2P})


def _wire(run: Run) -> Wire:
    wire = run.driver.wire
    if wire is None:  # the registry sends these kinds only to modes whose driver has a wire
        raise RuntimeError(f"{run.driver.mode} mode has no wire to inject network faults on")
    return wire


async def kill(run: Run, f: Fault) -> None:
    """The node stops abruptly (what it had not committed is gone) and restarts after the fault's length."""
    code = AgencyCode.parse(f.arg)
    try:
        before = {item.doc for item in await run.driver.inbox(code)}
    except NodeDown:
        return  # down already (killed by an earlier fault)
    how = await run.driver.kill(code)
    run.crashes.append(Crash(code, node_name(code), run.now(), before))
    run.mark("kill", node=f.arg, **how, inbox=len(before))
    await trio.sleep(f.length_s)
    await run.driver.restart(code)
    run.mark("restart", node=f.arg)


async def partition(run: Run, f: Fault) -> None:
    """The network splits in two (agencies that joined are on the second side), then heals."""
    wire = _wire(run)
    a, b = partition_groups(f.arg, run.codes, run.rng)
    await wire.partition(a, b | set(run.joined))
    run.mark("partition", groups=f"{len(a)}|{len(b)}")
    first = min(2.0, f.length_s / 4)
    await trio.sleep(first)
    run.mark("partition.held", crossing_connections=wire.crossing())
    await trio.sleep(f.length_s - first)
    await wire.heal()
    run.mark("heal")


def _link_window(apply: Callable[[Wire, float], None]) -> Inject:
    """A window during which every link gets the fault's value (delay in ms, or loss as a fraction), then 0 again."""

    async def window(run: Run, f: Fault) -> None:
        wire = _wire(run)
        apply(wire, float(f.arg))
        run.mark(f.kind, value=f.arg)
        try:
            await trio.sleep(f.length_s)
        finally:
            apply(wire, 0.0)
        run.mark(f"{f.kind}.end")

    return window


delay = _link_window(lambda wire, ms: wire.set_delay(ms))
loss = _link_window(lambda wire, fraction: wire.set_loss(fraction))


async def rekey(run: Run, f: Fault) -> None:
    """The authority revokes the agency's signing key (a stolen key) and lists a new one; its node installs it."""
    wire = _wire(run)
    code = AgencyCode.parse(f.arg)
    await wire.revoke(code)
    run.rekeyed[code] = run.now()
    serial, reissued = await wire.install_key(code)
    run.mark("rekey", agency=code.short(), serial=serial, reissued=reissued)


async def join(run: Run, f: Fault) -> None:
    code = AgencyCode.parse(f.arg)
    serial = await _wire(run).join(code)
    run.joined.append(code)
    run.mark("join", agency=code.short(), serial=serial)
    run.welcome(code)


async def forge(run: Run, f: Fault) -> None:
    rogue, envelopes = await _wire(run).forge()
    run.forged.update(envelopes)
    run.mark("forge", rogue=rogue.short(), envelopes=len(envelopes))


REGISTRY: dict[FaultKind, Handler] = {
    FaultKind.KILL: Handler(kill, ALL_MODES),
    FaultKind.PARTITION: Handler(partition, IN_PROCESS),
    # libp2p mode: a shim in py-libp2p's TCP reads (shim.py)
    FaultKind.DELAY: Handler(delay, IN_PROCESS),
    FaultKind.LOSS: Handler(
        loss,
        frozenset({Mode.VIRTUAL}),
        {Mode.LIBP2P: "TCP retransmits: loss on a real connection is delay; virtual mode models loss"},
    ),
    FaultKind.REKEY: Handler(rekey, IN_PROCESS),
    FaultKind.JOIN: Handler(join, IN_PROCESS),
    FaultKind.FORGE: Handler(forge, IN_PROCESS),
}


def supports(mode: Mode, kind: FaultKind) -> bool:
    return REGISTRY[kind].skip_reason(mode) is None


async def inject(run: Run, f: Fault) -> None:
    """At the fault's time: hand it to its kind's handler, or say why this mode skips it."""
    await trio.sleep_until(run.t0 + f.start_s)
    handler = REGISTRY[f.kind]
    reason = handler.skip_reason(run.driver.mode)
    if reason is not None:
        run.mark(f"{f.kind}.skipped", reason=reason)
        return
    await handler.inject(run, f)
