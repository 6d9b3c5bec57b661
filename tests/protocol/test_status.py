from __future__ import annotations

import pytest

from protocol.document import BusinessType
from protocol.errors import IllegalTransitionError, NotAuthorizedError, SchemaError
from protocol.status import (
    TRANSITIONS,
    HistoryItem,
    Input,
    Pending,
    Phase,
    Role,
    StatusCode,
    ThreadState,
    check_author,
    initial_state,
    replay,
    transition,
)

S, R = Role.SENDER, Role.RECIPIENT
ALL_STATES = [ThreadState(p, q) for p in Phase for q in Pending]
ALL_INPUTS = [(c, r) for c in StatusCode for r in Role]


def run(business: BusinessType, *steps: tuple[int, Role]) -> ThreadState:
    state = initial_state(business)
    for code, role in steps:
        state = transition(state, StatusCode(code), role)
    return state


def test_national_flow() -> None:
    end = run(BusinessType.NEW, (1, R), (3, R), (4, R), (5, R), (5, R), (5, R), (6, R))
    assert end == ThreadState(Phase.FINISHED)


def test_rejection_ends_the_thread() -> None:
    assert run(BusinessType.NEW, (1, R), (2, R)) == ThreadState(Phase.REJECTED)
    with pytest.raises(IllegalTransitionError):
        run(BusinessType.NEW, (1, R), (2, R), (3, R))


@pytest.mark.parametrize("business", list(BusinessType))
def test_a_document_that_does_not_open_is_rejected_instead_of_receipted(business: BusinessType) -> None:
    """The recipient's node answers 02 (with the reason) in place of 01; the thread ends there."""
    assert run(business, (2, R)) == ThreadState(Phase.REJECTED)
    for code in (1, 3, 15, 16):
        with pytest.raises(IllegalTransitionError):
            run(business, (2, R), (code, R))


@pytest.mark.parametrize(
    "steps",
    [
        [(3, R)],  # 01 comes first
        [(1, R), (4, R)],  # 04 needs 03
        [(1, R), (3, R), (5, R)],  # 05 needs 04
        [(1, R), (3, R), (4, R), (6, R)],  # 06 after at least one 05
        [(1, R), (1, R)],  # one receipt
        [(1, S)],  # the sender does not emit receipts
        [(1, R), (13, R)],  # 13 only from the original sender
        [(1, R), (15, R)],  # 15 answers a question
        [(13, S)],  # take-back only after arrival
    ],
)
def test_illegal_moves_are_typed_errors(steps: list[tuple[int, Role]]) -> None:
    with pytest.raises(IllegalTransitionError) as err:
        run(BusinessType.NEW, *steps)
    assert "allowed now" in str(err.value)


def test_takeback_agreed_and_refused() -> None:
    asked = run(BusinessType.NEW, (1, R), (3, R), (13, S))
    assert asked == ThreadState(Phase.ACCEPTED, Pending.TAKEBACK)
    assert transition(asked, StatusCode.AGREED, R) == ThreadState(Phase.WITHDRAWN)
    assert transition(asked, StatusCode.REFUSED, R) == ThreadState(Phase.ACCEPTED)
    # Processing may go on while the question is open (the recipient may not have seen it yet).
    assert transition(asked, StatusCode.ASSIGNED, R) == ThreadState(Phase.ASSIGNED, Pending.TAKEBACK)
    with pytest.raises(IllegalTransitionError):
        transition(asked, StatusCode.TAKEBACK_REQUESTED, S)  # one question at a time


def test_a_takeback_commutes_with_every_status_the_recipient_can_send_concurrently() -> None:
    """A 13 and a recipient status made without seeing each other reach the same state in either order."""
    for state in [
        ThreadState(p) for p in (Phase.ARRIVED, Phase.ACCEPTED, Phase.ASSIGNED, Phase.PROCESSING, Phase.FINISHED, Phase.REJECTED)
    ]:
        for code in (StatusCode.REJECTED, StatusCode.ACCEPTED, StatusCode.ASSIGNED, StatusCode.PROCESSING, StatusCode.FINISHED):
            try:
                then_13 = transition(transition(state, code, R), StatusCode.TAKEBACK_REQUESTED, S)
            except IllegalTransitionError:
                continue  # the recipient could not have sent it from here
            first_13 = transition(transition(state, StatusCode.TAKEBACK_REQUESTED, S), code, R)
            assert then_13 == first_13, (state, code)


@pytest.mark.parametrize("business", [BusinessType.REVOKE, BusinessType.UPDATE, BusinessType.REPLACE])
def test_change_documents_are_answered_with_15_or_16(business: BusinessType) -> None:
    arrived = run(business, (1, R))
    assert arrived == ThreadState(Phase.ARRIVED, Pending.CHANGE)
    with pytest.raises(IllegalTransitionError):
        transition(arrived, StatusCode.ACCEPTED, R)
    assert run(business, (1, R), (16, R)) == ThreadState(Phase.REFUSED)
    assert run(business, (1, R), (15, R), (3, R), (4, R), (5, R), (6, R)) == ThreadState(Phase.FINISHED)


def moves_from(state: ThreadState) -> dict[Input, ThreadState]:
    """Every input ``transition`` accepts in ``state``, found by trying each one (not by reading the table)."""
    out = {}
    for code, role in ALL_INPUTS:
        try:
            out[(code, role)] = transition(state, code, role)
        except IllegalTransitionError:
            pass
    return out


def test_every_refusal_is_typed_and_names_exactly_the_inputs_that_would_move() -> None:
    """Sweep every (state, input) pair, as h2's state-machine tests do: a move, or an IllegalTransitionError
    (nothing else escapes) whose "allowed now" is the truth about that state."""
    for state in ALL_STATES:
        accepted = moves_from(state)
        allowed = sorted(accepted, key=lambda i: (i[0], i[1].value))
        expected = ", ".join(f"{code} from the {role.value}" for code, role in allowed) or "nothing"
        for code, role in ALL_INPUTS:
            if (code, role) in accepted:
                continue
            with pytest.raises(IllegalTransitionError) as err:
                transition(state, code, role)
            assert str(err.value).endswith(f"allowed now: {expected}"), (state, code, role)


PROGRESS = [Phase.SENT, Phase.ARRIVED, Phase.ACCEPTED, Phase.ASSIGNED, Phase.PROCESSING, Phase.FINISHED]
ENDS = {Phase.REJECTED: len(PROGRESS), Phase.WITHDRAWN: len(PROGRESS) + 1, Phase.REFUSED: len(PROGRESS) + 1}


def rank(phase: Phase) -> int:
    return PROGRESS.index(phase) if phase in PROGRESS else ENDS[phase]


def test_no_move_takes_a_document_back_to_an_earlier_phase() -> None:
    for state in ALL_STATES:
        for (code, role), nxt in moves_from(state).items():
            assert rank(nxt.phase) >= rank(state.phase), (state, code, role, nxt)


def test_withdrawn_and_refused_are_the_only_ends_and_every_state_is_reachable() -> None:
    seen = {initial_state(b) for b in BusinessType}
    todo = list(seen)
    while todo:
        for nxt in moves_from(todo.pop()).values():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert {s for (s, _) in TRANSITIONS} | set(TRANSITIONS.values()) <= seen, "the table has rows no document reaches"
    assert {s for s in seen if not moves_from(s)} == {ThreadState(Phase.WITHDRAWN), ThreadState(Phase.REFUSED)}


def test_a_status_is_refused_for_its_author_or_for_its_timing_never_both_ways() -> None:
    """What check_author refuses never moves in any state; what it lets through moves in some state."""
    for code, role in ALL_INPUTS:
        moves_somewhere = any((code, role) in moves_from(s) for s in ALL_STATES)
        try:
            check_author(code, role)
        except NotAuthorizedError:
            assert not moves_somewhere or code is StatusCode.ARRIVED, (code, role)  # 01: the node's, never a party's
            continue
        assert moves_somewhere, (code, role)


def test_table_invariants() -> None:
    for (state, (code, role)), nxt in TRANSITIONS.items():
        assert (code is StatusCode.TAKEBACK_REQUESTED) == (role is S), "only 13 comes from the sender"
        if code is StatusCode.ARRIVED:
            assert state.phase is Phase.SENT
        if state.pending is Pending.CHANGE and code is not StatusCode.ARRIVED:
            refused_unopened = state.phase is Phase.SENT and code is StatusCode.REJECTED  # the node's 02 instead of 01
            assert code in (StatusCode.AGREED, StatusCode.REFUSED) or refused_unopened, (
                "an update/revoke/replace is answered first"
            )
        assert nxt.phase not in (Phase.SENT,)


def test_status_code_text_form() -> None:
    assert str(StatusCode.ARRIVED) == "01"
    assert StatusCode.parse("05") is StatusCode.PROCESSING
    assert StatusCode.parse(16) is StatusCode.REFUSED
    with pytest.raises(SchemaError, match="not one of"):
        StatusCode.parse("07")


def item(seq: int, code: int, role: Role, at: int = 0) -> HistoryItem:
    return HistoryItem(seq, at, bytes([seq, code]) * 16, StatusCode(code), role)


def test_replay_orders_by_seq_whatever_the_arrival_order() -> None:
    hist = [item(1, 1, R), item(2, 3, R), item(3, 4, R), item(4, 5, R), item(5, 6, R)]
    expected = replay(BusinessType.NEW, hist)
    assert expected.state == ThreadState(Phase.FINISHED) and not expected.illegal
    assert replay(BusinessType.NEW, reversed(hist)) == expected


def test_replay_keeps_illegal_items_aside() -> None:
    out = replay(BusinessType.NEW, [item(1, 1, R), item(2, 6, R), item(2, 3, R, at=5)])
    assert out.state == ThreadState(Phase.ACCEPTED)
    assert [i.code for i in out.illegal] == [StatusCode.FINISHED]


@pytest.mark.parametrize(
    ("code", "role"),
    [
        (StatusCode.TAKEBACK_REQUESTED, Role.RECIPIENT),
        (StatusCode.ASSIGNED, Role.SENDER),
        (StatusCode.AGREED, Role.SENDER),
        (StatusCode.ARRIVED, Role.RECIPIENT),
    ],
)
def test_a_status_from_the_wrong_party_is_not_authorized_whatever_the_state(code: StatusCode, role: Role) -> None:
    with pytest.raises(NotAuthorizedError):
        check_author(code, role)


def test_the_right_party_is_authorized_and_the_state_decides() -> None:
    check_author(StatusCode.AGREED, Role.RECIPIENT)
    check_author(StatusCode.TAKEBACK_REQUESTED, Role.SENDER)
    with pytest.raises(IllegalTransitionError):  # 15 on a new document with no question open: timing, not role
        transition(initial_state(BusinessType.NEW), StatusCode.AGREED, Role.RECIPIENT)
