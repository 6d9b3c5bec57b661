from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.document import BusinessType
from protocol.errors import IllegalTransitionError, NotAuthorizedError, SchemaError
from protocol.status import (
    TRANSITIONS,
    HistoryItem,
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


def test_every_state_input_pair_is_in_the_table_or_an_error() -> None:
    """Sweep: the table is total in the sense that nothing is a silent no-op."""
    moves = 0
    for state, (code, role) in itertools.product(ALL_STATES, ALL_INPUTS):
        key = (state, (code, role))
        if key in TRANSITIONS:
            assert transition(state, code, role) == TRANSITIONS[key]
            moves += 1
        else:
            with pytest.raises(IllegalTransitionError):
                transition(state, code, role)
    assert moves == len(TRANSITIONS)


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


@given(st.lists(st.tuples(st.sampled_from(list(StatusCode)), st.sampled_from(list(Role))), max_size=12))
def test_random_sequences_only_raise_illegal_transition(steps: list[tuple[StatusCode, Role]]) -> None:
    state = initial_state(BusinessType.NEW)
    for code, role in steps:
        try:
            state = transition(state, code, role)
        except IllegalTransitionError:
            pass
    assert state in {s for (s, _) in TRANSITIONS} | set(TRANSITIONS.values())


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
