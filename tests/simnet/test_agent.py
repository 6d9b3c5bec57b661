"""The simulated agencies' document systems (simnet/agent.py), synchronously: no nodes, no trio.

The states a thread goes through come from protocol/status.py's table
(``transition``), so these tests check the agent's choices against the
protocol, not against a copy of it.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from protocol.agency import AgencyCode
from protocol.ids import Digest
from protocol.status import Pending, Phase, Role, StatusCode, ThreadState, transition
from simnet.agent import Agent, Thread
from simnet.workload import DocPlan, StatusPlan

G22, H29, H17 = (AgencyCode.parse(c) for c in ("G22", "H29", "H17"))
DOC = Digest.of(b"a document")
S = StatusCode


def agent(seed: int = 7, rng: random.Random | None = None) -> Agent:
    return Agent(seed=seed, mean_delay_s=10.0, rng=rng or random.Random(1))


def with_plan(t: Thread, **changes: object) -> Thread:
    t.plan = dataclasses.replace(t.plan, **changes)  # type: ignore[arg-type]
    return t


def run_thread(a: Agent, t: Thread, state: ThreadState, *, now: float = 100.0) -> list[StatusCode]:
    """Step ``t`` until the agent says it is finished, each status applied through the protocol's table."""
    sent = []
    while (code := a.next_status(t, state)) is not None:
        state = transition(state, code, Role.RECIPIENT)
        a.stepped(t, code, sent=True, now=now)
        sent.append(code)
        assert len(sent) < 20, sent
    return sent


def test_a_new_document_starts_one_thread_due_after_its_first_delay() -> None:
    a = agent()
    a.arrived(H29, 5, DOC, now=3.0)
    (t,) = a.threads.values()
    assert (t.doc, t.recipient, t.next_at) == (DOC, H29, 3.0 + t.plan.delays[0])
    assert a.due(now=t.next_at - 0.001) == [] and a.due(now=t.next_at) == [t]
    a.arrived(H29, 4, DOC, now=50.0)  # seen again (a re-read): nothing new, the cursor does not go back
    assert list(a.threads.values()) == [t] and t.next_at == 3.0 + t.plan.delays[0]
    assert a.cursor(H29) == 5 and a.cursor(H17) == 0


def test_each_threads_plan_follows_from_the_seed_the_document_and_the_recipient_only() -> None:
    one, two = agent(seed=7), agent(seed=7)
    other = Digest.of(b"another")
    one.arrived(H29, 1, DOC, now=0.0)
    one.arrived(H29, 2, other, now=0.0)
    two.arrived(H29, 1, other, now=9.0)  # another order, another time
    two.arrived(H29, 2, DOC, now=9.0)
    assert one.threads[(DOC, H29)].plan == two.threads[(DOC, H29)].plan
    three = agent(seed=8)
    three.arrived(H29, 1, DOC, now=0.0)
    assert three.threads[(DOC, H29)].plan != one.threads[(DOC, H29)].plan != one.threads[(other, H29)].plan


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_a_recipient_registers_assigns_processes_and_finishes(steps: int) -> None:
    a = agent()
    a.arrived(H29, 1, DOC, now=0.0)
    t = with_plan(a.threads[(DOC, H29)], reject=False, processing_steps=steps)
    assert run_thread(a, t, ThreadState(Phase.ARRIVED)) == [S.ACCEPTED, S.ASSIGNED] + [S.PROCESSING] * steps + [S.FINISHED]
    assert t.done and a.finished()


def test_a_recipient_that_rejects_stops_there() -> None:
    a = agent()
    a.arrived(H29, 1, DOC, now=0.0)
    t = with_plan(a.threads[(DOC, H29)], reject=True)
    assert run_thread(a, t, ThreadState(Phase.ARRIVED)) == [S.REJECTED]
    assert t.done


def test_the_next_step_comes_after_the_plans_next_delay_whether_or_not_the_status_went_out() -> None:
    a = agent()
    a.arrived(H29, 1, DOC, now=0.0)
    t = with_plan(a.threads[(DOC, H29)], delays=(1.0, 2.0, 3.0, 4.0, 5.0), processing_steps=2)
    a.stepped(t, S.ACCEPTED, sent=True, now=10.0)
    assert (t.steps_done, t.next_at) == (0, 12.0)
    a.stepped(t, S.PROCESSING, sent=False, now=20.0)  # refused, or its node was down: not a step done
    assert (t.steps_done, t.next_at) == (0, 22.0)
    a.stepped(t, S.PROCESSING, sent=True, now=30.0)
    assert (t.steps_done, t.next_at) == (1, 33.0)
    a.stepped(t, S.PROCESSING, sent=True, now=40.0)
    a.stepped(t, S.PROCESSING, sent=True, now=50.0)
    assert t.next_at == 55.0  # past the plan's end: its last delay again
    assert a.note(t) == "bước 4"


@pytest.mark.parametrize("answer", [S.AGREED, S.REFUSED])
@pytest.mark.parametrize("phase", [Phase.ARRIVED, Phase.ASSIGNED, Phase.PROCESSING, Phase.FINISHED])
def test_a_take_back_is_answered_first_with_the_plans_answer(answer: StatusCode, phase: Phase) -> None:
    a = agent()
    a.arrived(H29, 1, DOC, now=0.0)
    t = with_plan(a.threads[(DOC, H29)], takeback_answer=answer)
    state = transition(ThreadState(phase), S.TAKEBACK_REQUESTED, Role.SENDER)
    assert state.pending is Pending.TAKEBACK
    assert a.next_status(t, state) is answer
    transition(state, answer, Role.RECIPIENT)  # and the table takes it


def test_a_change_document_is_agreed_to_before_anything_else() -> None:
    a = agent()
    a.arrived(H29, 1, DOC, now=0.0)
    t = a.threads[(DOC, H29)]
    state = ThreadState(Phase.ARRIVED, Pending.CHANGE)
    assert a.next_status(t, state) is S.AGREED
    transition(state, S.AGREED, Role.RECIPIENT)


def test_a_sender_asks_for_a_document_back_once_its_receipt_is_in_and_the_recipient_answers_even_after_finishing() -> None:
    draws = random.Random(1)
    a = agent(rng=random.Random(1))
    plan = DocPlan(0, 0.0, G22, (H29, H17), 4096, broadcast=False, takeback=True)
    a.submitted(DOC, plan, now=5.0)
    at = 5.0 + draws.expovariate(1 / 10.0)  # from the run's rng, so the run replays from its seed
    assert a.takebacks_due(at - 0.001) == [] and a.takebacks_due(at) == [(DOC, H29)]  # the first recipient
    a.takeback_later(DOC, at + 2.0)  # its 01 is not back yet
    assert a.takebacks_due(at + 1.0) == [] and a.takebacks_due(at + 2.0) == [(DOC, H29)]
    assert not a.finished()

    a.arrived(H29, 1, DOC, now=1.0)
    t = with_plan(a.threads[(DOC, H29)], reject=False, processing_steps=1)
    run_thread(a, t, ThreadState(Phase.ARRIVED))
    assert t.done
    a.takeback_sent(DOC, H29, now=60.0)
    assert not t.done and t.next_at == 60.0 + t.plan.delays[-1] and a.takebacks == {}
    assert a.next_status(t, ThreadState(Phase.FINISHED, Pending.TAKEBACK)) is t.plan.takeback_answer
    assert a.unfinished() == [t.label()] and not a.finished()
    assert a.next_status(t, ThreadState(Phase.FINISHED)) is None  # answered: finished again
    assert a.finished()


def test_a_take_back_the_node_refuses_is_dropped_and_documents_without_one_schedule_nothing() -> None:
    a = agent()
    a.submitted(DOC, DocPlan(0, 0.0, G22, (H29,), 4096, broadcast=False, takeback=False), now=0.0)
    assert a.takebacks == {}
    a.submitted(DOC, DocPlan(0, 0.0, G22, (H29,), 4096, broadcast=False, takeback=True), now=0.0)
    a.takeback_dropped(DOC)  # e.g. H29 had rejected it already
    assert a.takebacks == {} and a.finished()


def test_plans_answer_take_backs_with_15_or_16_only() -> None:
    a = agent()
    for i in range(200):
        a.arrived(H29, i + 1, Digest.of(str(i).encode()), now=0.0)
    answers = {t.plan.takeback_answer for t in a.threads.values()}
    assert answers == {S.AGREED, S.REFUSED}
    assert all(isinstance(t.plan, StatusPlan) and t.plan.delays for t in a.threads.values())
