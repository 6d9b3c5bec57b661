"""Node-to-node messages (``docs/overlay.md``), version 1.

Every message is a canonical CBOR map with ``"v": 1``. Envelopes travel as
their wire bytes (``protocol.envelope``) inside these containers:

* gossip batch  — ``{"v", "envs": [bytes]}`` on a shard or directory topic
* push          — request ``{"v", "envs": [bytes]}``; response ``{"v", "results": [[id, status, detail]]}``
* blocks        — request ``{"v", "want": [hash]}``; response ``{"v", "blocks": [bytes | null]}``
* sync          — request ``{"v", "op", ...}`` (heads, log, get, dir); responses below
* any response may instead be ``{"v", "error": code, "detail": text}``
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from . import cbor
from .agency import parse_shard
from .errors import AgencyCodeError, RemoteError, SchemaError
from .ids import Digest

VERSION = 1
MAX_BATCH_BYTES = 3 << 20  # gossip messages stay under the 4 MiB RPC limit we configure
MAX_PUSH_BYTES = 8 << 20
MAX_WANT = 4  # blocks per request: ~4 MiB response
MAX_BLOCKS_RESPONSE_BYTES = MAX_WANT * ((1 << 20) + 64) + 1024
MAX_SYNC_IDS = 256
MAX_LOG_PAGE = 2000
MAX_SYNC_RESPONSE_BYTES = 16 << 20

OK = "ok"  # stored now
DUPLICATE = "duplicate"  # already stored before


def _msg(data: bytes, where: str, max_bytes: int, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    m = cbor.expect_map(cbor.decode(data, max_bytes=max_bytes), where, required | {"v"}, optional)
    if m["v"] != VERSION:
        raise SchemaError(f"{where}.v: only version {VERSION} is known")
    return m


def _bytes_list(m: dict[str, Any], key: str, where: str, *, max_len: int, size: int | None = None) -> list[bytes]:
    items = cbor.get_list(m, key, where, max_len=max_len)
    for i, item in enumerate(items):
        if type(item) is not bytes or (size is not None and len(item) != size):
            raise SchemaError(f"{where}.{key}[{i}]: expected {'bytes' if size is None else f'{size} bytes'}")
    return items


@dataclass(frozen=True)
class EnvelopeBatch:
    """Gossip messages and push requests: envelopes as wire bytes."""

    envs: tuple[bytes, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, "envs": list(self.envs)})

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = MAX_PUSH_BYTES) -> EnvelopeBatch:
        m = _msg(data, "batch", max_bytes, {"envs"})
        return cls(tuple(_bytes_list(m, "envs", "batch", max_len=100_000)))


# Push refusals that depend on the envelope itself (its bytes, signature, key, size against the
# recipient's limit): pushing it again, to that node or any other, gets the same answer, so the sender
# marks the delivery failed with the reason. Every other code (unknown_agency, unknown_key,
# key_not_valid, stale, directory_expired, too_many_parked, codes added later...) depends on the
# recipient's view of the directory or its clock, and may pass on a later attempt: retried.
REFUSED_FOR_GOOD = frozenset(
    {
        "malformed",
        "too_large",
        "bad_schema",
        "bad_agency_code",
        "bad_frame",
        "bad_signature",
        "hash_mismatch",
        "cannot_decrypt",
        "not_authorized",
        "wrong_network",
        "revoked_key",
    }
)


def refused_for_good(status: str) -> bool:
    """Whether a push result's ``status`` is a refusal that no later attempt can change."""
    return status in REFUSED_FOR_GOOD


@dataclass(frozen=True)
class PushResult:
    id: Digest
    status: str  # OK, DUPLICATE, or an error code (protocol.errors)
    detail: str = ""

    @property
    def stored(self) -> bool:
        return self.status in (OK, DUPLICATE)


@dataclass(frozen=True)
class PushResponse:
    results: tuple[PushResult, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, "results": [[bytes(r.id), r.status, r.detail[:500]] for r in self.results]})

    @classmethod
    def decode(cls, data: bytes) -> PushResponse:
        m = _msg(data, "push response", 1 << 20, {"results"})
        out = []
        for i, r in enumerate(cbor.get_list(m, "results", "push response", max_len=100_000)):
            if not (
                type(r) is list
                and len(r) == 3
                and type(r[0]) is bytes
                and len(r[0]) == 32
                and type(r[1]) is str
                and type(r[2]) is str
            ):
                raise SchemaError(f"push response.results[{i}]: expected [id, status, detail]")
            out.append(PushResult(Digest(r[0]), r[1][:64], r[2][:500]))
        return cls(tuple(out))


@dataclass(frozen=True)
class BlockRequest:
    want: tuple[Digest, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, "want": [bytes(h) for h in self.want]})

    @classmethod
    def decode(cls, data: bytes) -> BlockRequest:
        m = _msg(data, "block request", 4096, {"want"})
        return cls(tuple(Digest(h) for h in _bytes_list(m, "want", "block request", max_len=MAX_WANT, size=32)))


@dataclass(frozen=True)
class BlockResponse:
    blocks: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, "blocks": list(self.blocks)})

    @classmethod
    def decode(cls, data: bytes) -> BlockResponse:
        m = _msg(data, "block response", MAX_BLOCKS_RESPONSE_BYTES, {"blocks"})
        items = cbor.get_list(m, "blocks", "block response", max_len=MAX_WANT)
        for i, b in enumerate(items):
            if b is not None and type(b) is not bytes:
                raise SchemaError(f"block response.blocks[{i}]: expected bytes or null")
        return cls(tuple(items))


# --- sync -----------------------------------------------------------------------------


class SyncOp(enum.Enum):
    """What a sync request asks for; the value is ``op`` on the wire."""

    HEADS = "heads"  # every shard's log head
    LOG = "log"  # a page of one shard's log
    GET = "get"  # envelopes by id
    DIR = "dir"  # directory links after a serial


_SYNC_OPS = {op.value: op for op in SyncOp}


@dataclass(frozen=True)
class SyncRequest:
    op: SyncOp
    shard: str = ""
    after: int = 0
    limit: int = 0
    ids: tuple[Digest, ...] = ()
    shards: tuple[str, ...] = ()  # heads: only these shards (empty = all)
    mine: HeadsResponse | None = None  # heads: the asker's own heads, so the answerer can skip its round back

    def encode(self) -> bytes:
        m: dict[str, Any] = {"v": VERSION, "op": self.op.value}
        if self.op is SyncOp.HEADS and self.shards:
            m["shards"] = sorted(self.shards)
        if self.op is SyncOp.HEADS and self.mine is not None:
            m["mine"] = self.mine.fields()
        if self.op is SyncOp.LOG:
            m.update(shard=self.shard, after=self.after, limit=self.limit)
        elif self.op is SyncOp.GET:
            m["ids"] = [bytes(i) for i in self.ids]
        elif self.op is SyncOp.DIR:
            m["after"] = self.after
        return cbor.encode(m)

    @classmethod
    def decode(cls, data: bytes) -> SyncRequest:
        m = cbor.decode(data, max_bytes=64 << 10)
        raw_op = m.get("op") if type(m) is dict else None
        op = _SYNC_OPS.get(raw_op) if type(raw_op) is str else None
        where = "sync request"
        if op is SyncOp.HEADS:
            m = _msg(data, where, 64 << 10, {"op"}, {"shards", "mine"})
            shards = []
            for i, s in enumerate(cbor.get_list(m, "shards", where, max_len=100_000) if "shards" in m else []):
                if type(s) is not str:
                    raise SchemaError(f"{where}.shards[{i}]: expected a shard such as G22")
                try:
                    shards.append(parse_shard(s))
                except AgencyCodeError as exc:
                    raise SchemaError(f"{where}.shards[{i}]: {exc.detail}") from None
            mine = None
            if "mine" in m:
                if type(m["mine"]) is not dict:
                    raise SchemaError(f"{where}.mine: expected a map of epoch, heads, serial")
                mine = HeadsResponse.from_fields(m["mine"], f"{where}.mine")
            return cls(SyncOp.HEADS, shards=tuple(shards), mine=mine)
        if op is SyncOp.LOG:
            m = _msg(data, where, 64 << 10, {"op", "shard", "after", "limit"})
            try:
                shard = parse_shard(cbor.get_text(m, "shard", where, max_len=3))
            except AgencyCodeError as exc:
                raise SchemaError(f"{where}.shard: {exc.detail}") from None
            return cls(
                SyncOp.LOG,
                shard=shard,
                after=cbor.get_int(m, "after", where),
                limit=cbor.get_int(m, "limit", where, 1, MAX_LOG_PAGE),
            )
        if op is SyncOp.GET:
            m = _msg(data, where, 64 << 10, {"op", "ids"})
            return cls(SyncOp.GET, ids=tuple(Digest(i) for i in _bytes_list(m, "ids", where, max_len=MAX_SYNC_IDS, size=32)))
        if op is SyncOp.DIR:
            m = _msg(data, where, 64 << 10, {"op", "after"})
            return cls(SyncOp.DIR, after=cbor.get_int(m, "after", where))
        raise SchemaError(f"{where}.op: expected heads, log, get or dir, got {raw_op!r:.20}")


@dataclass(frozen=True)
class HeadsResponse:
    epoch: bytes  # the answering store's epoch: cursors into its logs are only valid within one epoch
    heads: tuple[tuple[str, int], ...]
    serial: int  # its directory serial, so a peer that is behind asks for the links

    def fields(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "heads": [[s, n] for s, n in self.heads], "serial": self.serial}

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, **self.fields()})

    @classmethod
    def decode(cls, data: bytes) -> HeadsResponse:
        return cls.from_fields(_msg(data, "heads", 1 << 20, {"epoch", "heads", "serial"}), "heads")

    @classmethod
    def from_fields(cls, m: dict[str, Any], where: str) -> HeadsResponse:
        if set(m) - {"v"} != {"epoch", "heads", "serial"}:
            raise SchemaError(f"{where}: expected exactly epoch, heads, serial")
        heads = []
        for i, h in enumerate(cbor.get_list(m, "heads", where, max_len=100_000)):
            if not (type(h) is list and len(h) == 2 and type(h[0]) is str and type(h[1]) is int and h[1] >= 0):
                raise SchemaError(f"{where}.heads[{i}]: expected [shard, seq]")
            try:
                heads.append((parse_shard(h[0]), h[1]))
            except AgencyCodeError as exc:
                raise SchemaError(f"{where}.heads[{i}]: {exc.detail}") from None
        return cls(cbor.get_bytes(m, "epoch", where, size=16), tuple(heads), cbor.get_int(m, "serial", where))


@dataclass(frozen=True)
class LogResponse:
    epoch: bytes
    entries: tuple[tuple[int, Digest], ...]
    head: int

    def encode(self) -> bytes:
        return cbor.encode(
            {"v": VERSION, "epoch": self.epoch, "entries": [[s, bytes(i)] for s, i in self.entries], "head": self.head}
        )

    @classmethod
    def decode(cls, data: bytes) -> LogResponse:
        m = _msg(data, "log", 1 << 20, {"epoch", "entries", "head"})
        entries = []
        for i, e in enumerate(cbor.get_list(m, "entries", "log", max_len=MAX_LOG_PAGE)):
            if not (type(e) is list and len(e) == 2 and type(e[0]) is int and type(e[1]) is bytes and len(e[1]) == 32):
                raise SchemaError(f"log.entries[{i}]: expected [seq, id]")
            entries.append((e[0], Digest(e[1])))
        return cls(cbor.get_bytes(m, "epoch", "log", size=16), tuple(entries), cbor.get_int(m, "head", "log"))


@dataclass(frozen=True)
class EnvelopesResponse:
    """Answer to sync ``get`` (null where this peer does not have the id) and ``dir``."""

    envs: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, "envs": list(self.envs)})

    @classmethod
    def decode(cls, data: bytes) -> EnvelopesResponse:
        m = _msg(data, "envelopes", MAX_SYNC_RESPONSE_BYTES, {"envs"})
        items = cbor.get_list(m, "envs", "envelopes", max_len=100_000)
        for i, e in enumerate(items):
            if e is not None and type(e) is not bytes:
                raise SchemaError(f"envelopes.envs[{i}]: expected bytes or null")
        return cls(tuple(items))


@dataclass(frozen=True)
class ErrorResponse:
    code: str
    detail: str = ""

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, "error": self.code, "detail": self.detail[:500]})

    @classmethod
    def of(cls, exc: RemoteError) -> ErrorResponse:
        return cls(exc.code, exc.message)


def peek_error(data: bytes) -> ErrorResponse | None:
    """The error a peer answered with, if the response is one (errors are small; big responses are not)."""
    if len(data) > 4096 or b"\x65error" not in data:  # the CBOR text key "error"
        return None
    try:
        m = cbor.decode(data, max_bytes=MAX_SYNC_RESPONSE_BYTES)
    except RemoteError:
        return None
    if type(m) is dict and set(m) == {"v", "error", "detail"} and type(m["error"]) is str and type(m["detail"]) is str:
        return ErrorResponse(m["error"][:64], m["detail"][:500])
    return None
