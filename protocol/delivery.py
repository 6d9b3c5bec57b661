"""The delivery state machine: one outbox record per (envelope, recipient agency).

Rule 1 (as in ``protocol/status.py``): everything that decides what an event
does to a delivery lives in ``TRANSITIONS``. A pair that is not in the table
is a bug in the node (``IllegalDeliveryEvent``), never a silent no-op; a pair
that the table maps to ``IGNORED`` is a race the node expects and must not
act on — the classic one: the recipient's 01 lands while a push's
bookkeeping, which read the record before, is being written; the receipt
wins.

States: NEW (no record yet), PENDING (being delivered), DELIVERED (a
document's signed 01 is back, or a status was stored by the recipient's
node), FAILED (refused for good, given up, or replaced after a key change).
``node/outbox.py`` owns the records and has one method per event.
"""

from __future__ import annotations

import enum
from typing import Final


class DeliveryKind(enum.Enum):
    DOCUMENT = "doc"  # delivered when the recipient's signed 01 is back
    STATUS = "status"  # delivered when the recipient's node has stored it


class DeliveryState(enum.Enum):
    NEW = "new"  # no record yet; never stored
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryEvent(enum.Enum):
    QUEUED = "queued"  # authored here, to a recipient on another node
    DELIVERED_HERE = "delivered_here"  # authored here, to a recipient hosted here too
    FAILED_HERE = "failed_here"  # ... which could not open it
    CLAIMED = "claimed"  # the worker takes a due delivery for an attempt (rescheduled as if it will fail)
    PUSHED = "pushed"  # the recipient's node stored a document: now wait for its 01
    ACKED = "acked"  # the recipient's node stored a status: delivered
    DEFERRED = "deferred"  # the attempt did not get through (not connected, no answer, a refusal that may pass)
    REFUSED = "refused"  # the recipient refused it for good (a push result, or a signed 02 in place of the 01)
    RECEIPTED = "receipted"  # the recipient's signed 01 arrived
    GAVE_UP = "gave_up"  # retry.give_up_days passed
    RETRY_NOW = "retry_now"  # the recipient's node connected: the backoff is reset
    REISSUED = "reissued"  # signed with a key that is no longer current: replaced (status) or failed (document)
    REOPENED = "reopened"  # the sender lost our 01 and pushed the document again: send the 01 again


class _Ignored:
    def __repr__(self) -> str:
        return "IGNORED"


IGNORED: Final = _Ignored()  # an event that arrives late for this state: no change, nothing written

S, E = DeliveryState, DeliveryEvent
TRANSITIONS: dict[tuple[DeliveryState, DeliveryEvent], DeliveryState | _Ignored] = {
    (S.NEW, E.QUEUED): S.PENDING,
    (S.NEW, E.DELIVERED_HERE): S.DELIVERED,
    (S.NEW, E.FAILED_HERE): S.FAILED,
    (S.PENDING, E.CLAIMED): S.PENDING,
    (S.PENDING, E.PUSHED): S.PENDING,
    (S.PENDING, E.ACKED): S.DELIVERED,
    (S.PENDING, E.DEFERRED): S.PENDING,
    (S.PENDING, E.REFUSED): S.FAILED,
    (S.PENDING, E.RECEIPTED): S.DELIVERED,
    (S.PENDING, E.GAVE_UP): S.FAILED,
    (S.PENDING, E.RETRY_NOW): S.PENDING,
    (S.PENDING, E.REISSUED): S.FAILED,
    # The receipt (or a refusal) landed while an attempt was under way: its bookkeeping is stale.
    **{(s, e): IGNORED for s in (S.DELIVERED, S.FAILED) for e in (E.PUSHED, E.ACKED, E.DEFERRED, E.REFUSED)},
    (S.DELIVERED, E.RECEIPTED): IGNORED,  # the same 01 again (gossip, sync, a re-push)
    (S.DELIVERED, E.RETRY_NOW): IGNORED,
    (S.DELIVERED, E.REOPENED): S.PENDING,
    (S.FAILED, E.RECEIPTED): S.DELIVERED,  # a receipt after giving up is still a receipt
    (S.FAILED, E.RETRY_NOW): IGNORED,
}


class IllegalDeliveryEvent(Exception):
    """A bug in the node: an outbox event that cannot happen in this state."""


def next_state(state: DeliveryState, event: DeliveryEvent) -> DeliveryState | None:
    """The state after ``event``, or None when the event is a late one to ignore; raises IllegalDeliveryEvent."""
    try:
        target = TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalDeliveryEvent(f"{event.value} cannot happen to a delivery that is {state.value}") from None
    return None if isinstance(target, _Ignored) else target
