"""Processing statuses and the per-recipient status state machine.

Rule 1: everything that decides whether a status is legal lives in
``TRANSITIONS`` below. A (state, input) pair that is not in the table is an
``IllegalTransitionError``; there is no silent no-op.

A *thread* is one document as seen by one recipient agency. Its state is a
pair (phase, pending):

* phase: how far the recipient has processed the document
  (SENT → ARRIVED(01) → REJECTED(02) | ACCEPTED(03) → ASSIGNED(04) →
  PROCESSING(05, repeatable) → FINISHED(06)), plus WITHDRAWN (the recipient
  agreed to a take-back) and REFUSED (the recipient refused an
  update/revoke/replace document). SENT → REJECTED(02) directly is the
  recipient's node refusing a document that does not open, in place of 01.
* pending: a question the recipient answers with 15 (agree) or 16 (refuse):
  TAKEBACK (the sender sent 13) or CHANGE (the document itself is an update,
  revoke or replace). A CHANGE is answered before anything else. A TAKEBACK
  does not stop processing: the 13 travels while the recipient may be sending
  03, 04..., so the table lets both orders reach the same state (a 13 commutes
  with every status the recipient can send concurrently, which is what keeps
  both ends in agreement whatever order statuses arrive in).

Inputs are (code, role): the role says which party authored the status,
SENDER (the document's sender) or RECIPIENT (the thread's recipient). 01 is
emitted by the recipient's node itself once the document is durably stored.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .document import BusinessType
from .errors import IllegalTransitionError, NotAuthorizedError, SchemaError


class StatusCode(enum.IntEnum):
    ARRIVED = 1  # 01 đã đến (the end-to-end receipt, automatic)
    REJECTED = 2  # 02 từ chối
    ACCEPTED = 3  # 03 đã tiếp nhận / vào sổ
    ASSIGNED = 4  # 04 đã phân công
    PROCESSING = 5  # 05 đang xử lý (may repeat)
    FINISHED = 6  # 06 hoàn thành
    TAKEBACK_REQUESTED = 13  # 13 sender asks to take the document back
    AGREED = 15  # 15 recipient agrees (to a take-back or an update/revoke/replace)
    REFUSED = 16  # 16 recipient refuses

    def __str__(self) -> str:
        return f"{self.value:02d}"

    @classmethod
    def parse(cls, text: str | int) -> StatusCode:
        """Parse ``"03"``, ``"3"`` or ``3``; raises SchemaError for other codes."""
        try:
            return cls(int(text))
        except (ValueError, TypeError):
            allowed = ", ".join(str(c) for c in cls)
            raise SchemaError(f"status code {text!r} is not one of {allowed}") from None


class Role(enum.Enum):
    SENDER = "sender"
    RECIPIENT = "recipient"


class Phase(enum.Enum):
    SENT = "sent"
    ARRIVED = "arrived"
    REJECTED = "rejected"
    ACCEPTED = "accepted"
    ASSIGNED = "assigned"
    PROCESSING = "processing"
    FINISHED = "finished"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"


class Pending(enum.Enum):
    NONE = "none"
    TAKEBACK = "takeback"
    CHANGE = "change"


@dataclass(frozen=True, slots=True)
class ThreadState:
    phase: Phase
    pending: Pending = Pending.NONE


Input = tuple[StatusCode, Role]
S, R = Role.SENDER, Role.RECIPIENT
P = Phase
N, T, C = Pending.NONE, Pending.TAKEBACK, Pending.CHANGE
_TAKEBACK_FROM = (P.ARRIVED, P.ACCEPTED, P.ASSIGNED, P.PROCESSING, P.FINISHED, P.REJECTED)
_CHAIN: list[tuple[Phase, StatusCode, Phase]] = [
    (P.ARRIVED, StatusCode.REJECTED, P.REJECTED),
    (P.ARRIVED, StatusCode.ACCEPTED, P.ACCEPTED),
    (P.ACCEPTED, StatusCode.ASSIGNED, P.ASSIGNED),
    (P.ASSIGNED, StatusCode.PROCESSING, P.PROCESSING),
    (P.PROCESSING, StatusCode.PROCESSING, P.PROCESSING),
    (P.PROCESSING, StatusCode.FINISHED, P.FINISHED),
]


def _st(phase: Phase, pending: Pending = N) -> ThreadState:
    return ThreadState(phase, pending)


TRANSITIONS: dict[tuple[ThreadState, Input], ThreadState] = {
    # The receipt. A change document keeps its question open across it.
    (_st(P.SENT), (StatusCode.ARRIVED, R)): _st(P.ARRIVED),
    (_st(P.SENT, C), (StatusCode.ARRIVED, R)): _st(P.ARRIVED, C),
    # Instead of the receipt: the recipient's node refuses a document that does not open (its manifest
    # breaks the rules, its key does not open), with the reason in the note. Nothing was asked yet, so a
    # change document's question is void; the recipient's node cannot even tell it was one.
    (_st(P.SENT), (StatusCode.REJECTED, R)): _st(P.REJECTED),
    (_st(P.SENT, C), (StatusCode.REJECTED, R)): _st(P.REJECTED),
    # Registration or rejection, then the processing chain; it goes on while a
    # take-back question is open (the recipient may not have seen it yet).
    **{(_st(a, q), (code, R)): _st(b, q) for a, code, b in _CHAIN for q in (N, T)},
    # An update/revoke/replace document asks a question: 15 agrees (then the
    # normal chain continues), 16 refuses (the thread ends).
    (_st(P.ARRIVED, C), (StatusCode.AGREED, R)): _st(P.ARRIVED),
    (_st(P.ARRIVED, C), (StatusCode.REFUSED, R)): _st(P.REFUSED),
    # Take-back: only the original sender asks (13), only after arrival; the
    # recipient answers 15 (withdrawn) or 16 (the question is closed).
    **{(_st(ph), (StatusCode.TAKEBACK_REQUESTED, S)): _st(ph, T) for ph in _TAKEBACK_FROM},
    **{(_st(ph, T), (StatusCode.AGREED, R)): _st(P.WITHDRAWN) for ph in _TAKEBACK_FROM},
    **{(_st(ph, T), (StatusCode.REFUSED, R)): _st(ph) for ph in _TAKEBACK_FROM},
}


# Who ever sends each code, read off the table: a status from the other party
# is not a matter of timing but of role (``not_authorized``, never
# ``illegal_transition``).
AUTHORS: dict[StatusCode, frozenset[Role]] = {
    code: frozenset(role for (_, (c, role)) in TRANSITIONS if c is code) for code in StatusCode
}


def check_author(code: StatusCode, role: Role) -> None:
    """Raise NotAuthorizedError if the ``role`` party never sends ``code`` (whatever the state)."""
    if code is StatusCode.ARRIVED:
        raise NotAuthorizedError("01 is sent by the recipient's node itself once the document is stored")
    if role not in AUTHORS[code]:
        who = " or ".join(sorted(r.value for r in AUTHORS[code]))
        raise NotAuthorizedError(f"status {code} is sent by the {who}, not by the {role.value}")


def initial_state(business: BusinessType) -> ThreadState:
    return _st(P.SENT) if business is BusinessType.NEW else _st(P.SENT, C)


def transition(state: ThreadState, code: StatusCode, role: Role) -> ThreadState:
    """The next state; raises IllegalTransitionError when the table has no such move."""
    try:
        return TRANSITIONS[(state, (code, role))]
    except KeyError:
        raise IllegalTransitionError(
            f"status {code} from the {role.value} is not allowed while the document is "
            f"{state.phase.value}{'' if state.pending is N else f' (waiting for an answer to a {state.pending.value})'}"
            f"; allowed now: {', '.join(describe_allowed(state)) or 'nothing'}"
        ) from None


def allowed(state: ThreadState) -> list[Input]:
    return sorted((inp for (st, inp) in TRANSITIONS if st == state), key=lambda i: (i[0], i[1].value))


def describe_allowed(state: ThreadState) -> list[str]:
    return [f"{code} from the {role.value}" for code, role in allowed(state)]


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One status of a thread as both ends order them: by ``seq``, then time, then id."""

    seq: int
    at: int
    envelope_id: bytes
    code: StatusCode
    role: Role


@dataclass(frozen=True, slots=True)
class Replay:
    state: ThreadState
    illegal: tuple[HistoryItem, ...]  # items the table refused, kept for the record


def replay(business: BusinessType, items: Iterable[HistoryItem]) -> Replay:
    """Recompute a thread's state from its whole history.

    Statuses can arrive out of order (gossip, sync); ordering by the
    author-assigned ``seq`` and re-applying the table gives both ends the same
    answer. Items that the table refuses in that order are returned, not
    raised: they came from a peer, and the history keeps them.
    """
    state = initial_state(business)
    illegal: list[HistoryItem] = []
    for item in sorted(items, key=lambda i: (i.seq, i.at, i.envelope_id)):
        try:
            state = transition(state, item.code, item.role)
        except IllegalTransitionError:
            illegal.append(item)
    return Replay(state, tuple(illegal))
