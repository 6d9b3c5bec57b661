"""Key layout of the node's LevelDB store (``docs/storage.md``, format 2).

Every key starts with a one-byte keyspace tag (a printable letter, so a raw
dump is readable), followed by fixed-width fields; integers are unsigned
big-endian so byte order is numeric order. Agency codes are their 13-byte
canonical text (``000.00.00.G22``), shards their 3-byte level-1 code
(``G22``), ids and hashes 32 raw bytes, peer ids the 38 raw bytes of the
libp2p identity multihash.

| tag | key                                   | value                                |
|-----|---------------------------------------|--------------------------------------|
| E   | E id32                                | envelope (wire bytes)                |
| B   | B hash32                              | sealed block                         |
| D   | D id32                                | DocRecord (this node's view)         |
| I   | I code13 seq8                         | InboxEntry                           |
| i   | i code13 id32                         | seq8 (reverse index of I)            |
| O   | O sender13 id32 recipient13           | DeliveryRecord (outbox)              |
| P   | P recipient13 id32                    | sender13 (pending deliveries index)  |
| R   | R due_ms8 id32 recipient13            | sender13 (retry schedule)            |
| H   | H doc32 recipient13 seq4 status32     | HistoryRecord (status thread)        |
| K   | K sender13 keyhash32                  | id32 (idempotency keys)              |
| L   | L shard3 seq8                         | id32 (sync log, local order)         |
| C   | C shard3 peer38                       | Cursor (how far we read a peer's log)|
| A   | A id32                                | empty: document awaiting blocks      |
| S   | S doc32 status32                      | empty: status parked until its doc   |
| X   | X id32                                | u64 ms: envelope dropped (tombstone) |
| Y   | Y serial8                             | directory link envelope              |
| W   | W hash32                              | u32 size: block of an uncommitted doc|
| G   | G party13 sender13 docidhash32 id32   | empty (edXML DocumentId index)       |
| J   | J id32                                | EdxmlRef (a document's edXML names)  |
| Q   | Q code13 status32                     | u64 ms: status taken by an SDK system|
| M   | M name                                | store metadata (format, epoch, owner)|
"""

from __future__ import annotations

import struct

from protocol.agency import CODE_TEXT_BYTES, SHARD_BYTES, AgencyCode

ENVELOPE = b"E"
BLOCK = b"B"
DOC = b"D"
INBOX = b"I"
INBOX_BY_ID = b"i"
OUTBOX = b"O"
PENDING = b"P"
RETRY = b"R"
HISTORY = b"H"
IDEMPOTENCY = b"K"
LOG = b"L"
CURSOR = b"C"
AWAITING = b"A"
PARKED = b"S"
TOMBSTONE = b"X"
DIRECTORY = b"Y"
INFLIGHT = b"W"  # a block written for a document not committed yet (format 2)
EDXML_INDEX = b"G"  # (hosted party, the document's sender, sha256 of its edXML DocumentId, document id) (format 3)
EDXML_REF = b"J"  # document id -> its edXML DocumentId, số/ký hiệu, date (format 3)
STATUS_ACK = b"Q"  # (hosted agency, status id): the agency's SDK system took the status (updateStatus done)
META = b"M"

# Every keyspace and what it holds, for the checker and its reports.
KEYSPACES = {
    ENVELOPE: "envelopes",
    BLOCK: "blocks",
    DOC: "documents",
    INBOX: "inbox",
    INBOX_BY_ID: "inbox index",
    OUTBOX: "outbox",
    PENDING: "pending index",
    RETRY: "retry schedule",
    HISTORY: "status history",
    IDEMPOTENCY: "idempotency keys",
    LOG: "sync log",
    CURSOR: "sync cursors",
    AWAITING: "awaiting blocks",
    PARKED: "parked statuses",
    TOMBSTONE: "tombstones",
    DIRECTORY: "directory links",
    INFLIGHT: "in-flight blocks",
    EDXML_INDEX: "edXML DocumentId index",
    EDXML_REF: "edXML references",
    STATUS_ACK: "status acknowledgements",
    META: "metadata",
}

PEER_BYTES = 38
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


def u64(n: int) -> bytes:
    return _U64.pack(n)


def read_u64(b: bytes, offset: int = 0) -> int:
    return int(_U64.unpack_from(b, offset)[0])


def u32(n: int) -> bytes:
    return _U32.pack(n)


def read_u32(b: bytes, offset: int = 0) -> int:
    return int(_U32.unpack_from(b, offset)[0])


def code(c: AgencyCode) -> bytes:
    raw = c.key()
    assert len(raw) == CODE_TEXT_BYTES
    return raw


def delivery_tail(env_id: bytes, recipient: AgencyCode) -> bytes:
    """id32 recipient13: how the outbox and retry-schedule keys of one delivery end."""
    return bytes(env_id) + code(recipient)


RETRY_TAIL = slice(1 + 8, 1 + 8 + 32 + CODE_TEXT_BYTES)  # where a retry key holds its delivery_tail


def parse_code(raw: bytes) -> AgencyCode:
    return AgencyCode.parse(raw.decode("ascii"))


def shard(s: str) -> bytes:
    raw = s.encode("ascii")
    assert len(raw) == SHARD_BYTES, s
    return raw


def peer(peer_id_bytes: bytes) -> bytes:
    assert len(peer_id_bytes) == PEER_BYTES
    return peer_id_bytes


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        raise ValueError("no upper bound for an all-0xFF prefix")
    p[-1] += 1
    return bytes(p)
