"""The fault registry (simnet/injection.py) against a fake driver, and what a mode changes in the process, undone.

No nodes here: a fault's handler reaches nodes only through the run's
driver, so a fake one shows what each handler asks for, and that a mode
which cannot inject a fault marks it skipped without touching anything.
"""

from __future__ import annotations

import importlib
import random
from typing import Any

import pytest
import trio
import trio.testing

from protocol.agency import AgencyCode
from protocol.document import BusinessType
from protocol.ids import Digest
from simnet.config import Mode
from simnet.driver import InboxItem, NodeDown
from simnet.faults import Fault, FaultKind
from simnet.injection import NOT_INJECTED, REGISTRY, Crash, inject, supports
from simnet.inprocess import deterministic_scheduling

H29 = AgencyCode.parse("H29")
DOC = Digest.of(b"in H29's inbox")


class FakeDriver:
    """Records the calls; has no wire (like the IPC driver) unless given one."""

    def __init__(self, mode: Mode, *, down: bool = False) -> None:
        self.mode = mode
        self.wire = None
        self.down = down
        self.calls: list[tuple[str, AgencyCode]] = []

    async def inbox(self, code: AgencyCode, *, after: int = 0) -> list[InboxItem]:
        if self.down:
            raise NodeDown(code)
        return [InboxItem(1, DOC, BusinessType.NEW)]

    async def kill(self, code: AgencyCode) -> dict[str, str]:
        self.calls.append(("kill", code))
        return {"signal": "SIGKILL"}

    async def restart(self, code: AgencyCode) -> None:
        self.calls.append(("restart", code))


class FakeRun:
    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver
        self.t0 = 0.0
        self.codes = [H29]
        self.joined: list[AgencyCode] = []
        self.rng = random.Random(1)
        self.crashes: list[Crash] = []
        self.rekeyed: dict[AgencyCode, float] = {}
        self.forged: set[Digest] = set()
        self.marks: list[tuple[float, str, dict[str, Any]]] = []

    def now(self) -> float:
        return trio.current_time() - self.t0

    def mark(self, what: str, **fields: Any) -> None:
        self.marks.append((self.now(), what, fields))

    def welcome(self, code: AgencyCode) -> None:
        raise AssertionError("no join here")


def run_faults(run: FakeRun, *faults: Fault) -> None:
    async def main() -> None:
        with trio.fail_after(3600):  # virtual seconds
            async with trio.open_nursery() as n:
                for f in faults:
                    n.start_soon(inject, run, f)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_every_kind_has_a_handler_and_every_mode_a_reason_to_skip() -> None:
    assert set(REGISTRY) == set(FaultKind)
    assert set(NOT_INJECTED) == set(Mode)
    assert {k for k in FaultKind if supports(Mode.VIRTUAL, k)} == set(FaultKind)
    assert {k for k in FaultKind if supports(Mode.LIBP2P, k)} == set(FaultKind) - {FaultKind.LOSS}
    assert {k for k in FaultKind if supports(Mode.PROCESSES, k)} == {FaultKind.KILL}
    assert "TCP retransmits" in (REGISTRY[FaultKind.LOSS].skip_reason(Mode.LIBP2P) or "")


@pytest.mark.parametrize("kind", sorted(set(FaultKind) - {FaultKind.KILL}))
def test_a_fault_the_mode_cannot_inject_is_marked_skipped_at_its_time_and_touches_nothing(kind: FaultKind) -> None:
    run = FakeRun(FakeDriver(Mode.PROCESSES))
    run_faults(run, Fault(kind, "H29" if kind is not FaultKind.FORGE else "", 12.0, 5.0))
    assert run.marks == [(12.0, f"{kind}.skipped", {"reason": NOT_INJECTED[Mode.PROCESSES]})]
    assert run.driver.calls == [] and run.crashes == []


def test_a_kill_records_the_inbox_it_must_find_again_and_restarts_after_its_length() -> None:
    run = FakeRun(FakeDriver(Mode.PROCESSES))
    run_faults(run, Fault(FaultKind.KILL, str(H29), 10.0, 4.0))
    assert run.driver.calls == [("kill", H29), ("restart", H29)]
    assert run.crashes == [Crash(H29, "h29", 10.0, {DOC})]
    assert run.marks == [
        (10.0, "kill", {"node": str(H29), "signal": "SIGKILL", "inbox": 1}),
        (14.0, "restart", {"node": str(H29)}),
    ]


def test_a_kill_of_a_node_already_down_does_nothing() -> None:
    run = FakeRun(FakeDriver(Mode.VIRTUAL, down=True))
    run_faults(run, Fault(FaultKind.KILL, str(H29), 10.0, 4.0))
    assert run.driver.calls == [] and run.marks == [] and run.crashes == []


def test_deterministic_scheduling_is_undone_after_the_run_even_when_it_fails() -> None:
    core: Any = importlib.import_module("trio._core._run")
    flag, state = core._ALLOW_DETERMINISTIC_SCHEDULING, core._r.getstate()
    with deterministic_scheduling(5):
        assert core._ALLOW_DETERMINISTIC_SCHEDULING is True
        first = core._r.random()
    with pytest.raises(ZeroDivisionError), deterministic_scheduling(5):
        assert core._r.random() == first  # seeded: the same shuffle again
        _ = 1 / 0
    assert flag == core._ALLOW_DETERMINISTIC_SCHEDULING
    assert core._r.getstate() == state
