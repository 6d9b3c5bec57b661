"""The delivery state machine (protocol/delivery.py): the table's properties, swept over every pair."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.delivery import TRANSITIONS, DeliveryEvent, DeliveryState, IllegalDeliveryEvent, next_state

S, E = DeliveryState, DeliveryEvent
ATTEMPT_OUTCOMES = (E.PUSHED, E.ACKED, E.DEFERRED, E.REFUSED)


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, E)))
def test_every_pair_is_in_the_table_or_a_bug(state: DeliveryState, event: DeliveryEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) in (None, *S)
    else:
        with pytest.raises(IllegalDeliveryEvent, match=f"{event.value} cannot happen"):
            next_state(state, event)


def test_only_creation_events_leave_new_and_nothing_returns_to_it() -> None:
    assert {e for (s, e) in TRANSITIONS if s is S.NEW} == {E.QUEUED, E.DELIVERED_HERE, E.FAILED_HERE}
    assert S.NEW not in TRANSITIONS.values()


@pytest.mark.parametrize("event", ATTEMPT_OUTCOMES)
def test_an_attempt_that_ends_after_the_receipt_or_a_refusal_changes_nothing(event: DeliveryEvent) -> None:
    # The race that once left documents 'pending' forever: the push's bookkeeping read the record
    # before the receipt's commit landed. In the table, the receipt always wins.
    assert next_state(S.DELIVERED, event) is None
    assert next_state(S.FAILED, event) is None


def test_a_receipt_is_final_except_when_the_sender_lost_it() -> None:
    leaving = {e for (s, e), t in TRANSITIONS.items() if s is S.DELIVERED and t not in (None, S.DELIVERED) and isinstance(t, S)}
    assert leaving == {E.REOPENED}
    assert next_state(S.FAILED, E.RECEIPTED) is S.DELIVERED  # a receipt after giving up is still a receipt


@given(st.lists(st.sampled_from(list(E)), max_size=30))
def test_once_receipted_a_delivery_stays_delivered_until_reopened(events: list[DeliveryEvent]) -> None:
    state = S.PENDING
    receipted = False
    for event in events:
        try:
            nxt = next_state(state, event)
        except IllegalDeliveryEvent:
            continue  # a caller never sends it (the outbox checks state first); the table refuses it
        if nxt is not None:
            state = nxt
        if event is E.RECEIPTED:
            receipted = True
        if event is E.REOPENED and nxt is not None:
            receipted = False
        if receipted:
            assert state is S.DELIVERED, (events, state)
