"""Values stored under the keys of ``store.keys``: small canonical CBOR maps.

Each record is a frozen dataclass; ``encode``/``decode`` use the same strict
canonical CBOR as the wire, so a corrupt value is a StoreError, not a crash.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from protocol import cbor
from protocol.delivery import DeliveryKind, DeliveryState
from protocol.errors import DecodeError, StoreError

MAX_RECORD_BYTES = 1 << 20
R = TypeVar("R", bound="Record")
__all__ = [  # DeliveryKind and DeliveryState are protocol's (the delivery state machine); records carry them
    "Audit",
    "Cursor",
    "DeliveryKind",
    "DeliveryRecord",
    "DeliveryState",
    "DocRecord",
    "DocRole",
    "EdxmlRef",
    "HistoryRecord",
    "InboxEntry",
    "Owner",
    "Record",
]  # fmt: skip


class DocRole(enum.Enum):
    SENT = "sent"  # authored by an agency hosted here
    RECEIVED = "received"  # addressed to an agency hosted here
    RELAYED = "relayed"  # neither: kept to forward and to serve sync


class Record:
    """Base: fields map 1:1 to CBOR keys; enums by value."""

    _enums: ClassVar[dict[str, type[enum.Enum]]] = {}

    def encode(self) -> bytes:
        out: dict[str, Any] = {}
        for name in _canonical_field_order(type(self)):  # keys in CBOR's order: the encoder's fast path
            v = getattr(self, name)
            if isinstance(v, enum.Enum):
                v = v.value
            elif isinstance(v, tuple):
                v = list(v)
            out[name] = v
        return cbor.encode(out)

    @classmethod
    def decode(cls: type[R], data: bytes) -> R:
        try:
            m = cbor.decode(data, max_bytes=MAX_RECORD_BYTES)
            names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
            if type(m) is not dict or set(m) != names:
                raise DecodeError(f"fields {sorted(m) if type(m) is dict else m!r}")
            for name, enum_type in cls._enums.items():
                m[name] = enum_type(m[name])
            for name, v in m.items():
                if type(v) is list:
                    m[name] = tuple(v)
            return cls(**m)
        except (DecodeError, ValueError, TypeError) as exc:
            raise StoreError(f"corrupt {cls.__name__} record: {exc}") from None


_FIELD_ORDER: dict[type, tuple[str, ...]] = {}


def _canonical_field_order(cls: type[Record]) -> tuple[str, ...]:
    order = _FIELD_ORDER.get(cls)
    if order is None:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        order = _FIELD_ORDER[cls] = tuple(sorted(names, key=lambda n: (len(n.encode("utf-8")), n)))
    return order


@dataclass(frozen=True)
class DeliveryRecord(Record):
    """Outbox: one envelope this node authored, towards one recipient agency."""

    kind: DeliveryKind
    state: DeliveryState  # never NEW: that is the state of a record not written yet
    attempts: int = 0  # every attempt so far
    failures: int = 0  # consecutive failures; the backoff grows with it and resets when the peer is seen
    next_at: int = 0  # ms; when the next attempt is due
    first_at: int = 0  # ms; first published
    last_at: int = 0  # ms; last attempt
    last_error: str = ""
    delivered_at: int = 0  # ms; receipt (doc) or transport ack (status)
    receipt: bytes = b""  # id of the 01 status envelope, for documents
    _enums: ClassVar[dict[str, type[enum.Enum]]] = {"kind": DeliveryKind, "state": DeliveryState}


@dataclass(frozen=True)
class DocRecord(Record):
    """This node's view of a document envelope."""

    role: DocRole
    sender: str
    to: tuple[str, ...]
    created_at: int
    received_at: int
    size: int  # plaintext body bytes
    blocks: int
    complete: bool  # all blocks stored and verified
    subject: str = ""  # only where this node can read it (sender or recipient)
    business: str = "new"
    ref: bytes = b""
    problem: str = ""  # why a document addressed here could not be opened (then no receipt is sent)
    _enums: ClassVar[dict[str, type[enum.Enum]]] = {"role": DocRole}


@dataclass(frozen=True)
class InboxEntry(Record):
    id: bytes
    sender: str
    received_at: int
    acked_at: int = 0  # 0 until the integrator acknowledged it


@dataclass(frozen=True)
class HistoryRecord(Record):
    """One status in a document thread (document x recipient agency)."""

    code: int
    role: str  # "sender" or "recipient"
    author: str
    seq: int
    at: int  # author's time, ms
    received_at: int
    note: str = ""


@dataclass(frozen=True)
class Cursor(Record):
    """How far this node has read a peer's sync log for one shard."""

    epoch: bytes  # the peer store's epoch; a new epoch restarts from 0
    seq: int


@dataclass(frozen=True)
class Owner(Record):
    """Whose store this is (``M owner``): written when the store is made, compared by the node at every start."""

    network: str
    peer_id: str  # the node's libp2p peer id, text form

    def describe(self) -> str:
        return f"node {self.peer_id} on network {self.network}"


@dataclass(frozen=True)
class Audit(Record):
    """What the last full check (``truc store check``, ``gc``, ``repair``) counted (``M audit``)."""

    at: int  # ms
    blocks: int
    block_bytes: int
    garbage_blocks: int  # stored, referenced by no stored document
    garbage_bytes: int


@dataclass(frozen=True)
class EdxmlRef(Record):
    """What a document is called in edXML, kept by every node that holds it for an agency of its own.

    The sender's node cannot open what it sent (it is encrypted to the
    recipients), yet it must name the document in the status packages it
    hands its own agency: so it keeps these names when the document is made.
    """

    document_id: str  # the edXML DocumentId, as written (never parsed)
    number: str  # CodeNumber (số)
    notation: str  # CodeNotation (ký hiệu)
    date: str  # PromulgationDate as written (yyyy/MM/dd, or whatever the producer sent)
    sender: str  # the document's sending agency, canonical code
    fingerprint: bytes = b""  # an imported edoc's (protocol.edxml.carry.fingerprint): a retry is told from a change
