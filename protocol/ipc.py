"""The integrator IPC protocol, version 1 (``docs/ipc.md``).

Frames: ``u32 big-endian length ‖ CBOR map`` over a Unix stream socket. CBOR
from clients need not be canonical (any key order); duplicate keys,
indefinite lengths, tags and floats are refused.

    request   {"v": 1, "id": uint, "method": text, "params": map}
    response  {"v": 1, "id": uint, "ok": true,  "result": any}
              {"v": 1, "id": uint, "ok": false, "error": {"code": text, "message": text}}
    chunk     {"v": 1, "id": uint, "file": uint, "data": bytes}    (document.get, before its response)
    event     {"v": 1, "id": uint, "event": text, "at": uint, "data": map}   (after events.subscribe)

This module is pure: frame payloads in, typed requests out, and the
parameter parsers that turn a request's ``params`` into typed values or a
SchemaError naming the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import cbor
from .agency import AgencyCode
from .document import BusinessType, DocumentMeta, Urgency
from .errors import AgencyCodeError, DecodeError, SchemaError, TrucError
from .ids import Digest
from .status import StatusCode

VERSION = 1
MAX_FRAME_BYTES = 64 << 20
CHUNK_BYTES = 1 << 20

METHODS = (
    "submit",
    "inbox.list",
    "inbox.ack",
    "document.get",
    "document.track",
    "documents.list",
    "status.send",
    "events.subscribe",
    "peers.list",
    "queues.list",
    "directory.lookup",
    "directory.show",
    "directory.publish",
    "node.info",
    "stats",
)


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    params: dict[str, Any]

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, "id": self.id, "method": self.method, "params": self.params})

    @classmethod
    def decode(cls, payload: bytes) -> Request:
        """Raises DecodeError for bytes that are not a request, SchemaError for a bad shape."""
        m = cbor.decode_lenient(payload, max_bytes=MAX_FRAME_BYTES)
        m = cbor.expect_map(m, "request", {"v", "id", "method"}, {"params"})
        if m["v"] != VERSION:
            raise SchemaError(f"request.v: this node speaks IPC version {VERSION}, the client sent {m['v']!r}")
        rid = cbor.get_int(m, "id", "request", 0, (1 << 63) - 1)
        method = cbor.get_text(m, "method", "request", max_len=64)
        params = m.get("params", {})
        if type(params) is not dict:
            raise SchemaError("request.params: expected a map")
        return cls(rid, method, params)


def response(rid: int, result: Any) -> bytes:
    return cbor.encode({"v": VERSION, "id": rid, "ok": True, "result": result})


def error_response(rid: int, exc: TrucError) -> bytes:
    return cbor.encode({"v": VERSION, "id": rid, "ok": False, "error": {"code": exc.code, "message": exc.message}})


def chunk(rid: int, file: int, data: bytes) -> bytes:
    return cbor.encode({"v": VERSION, "id": rid, "file": file, "data": data})


def event(rid: int, kind: str, at: int, data: dict[str, Any]) -> bytes:
    return cbor.encode({"v": VERSION, "id": rid, "event": kind, "at": at, "data": data})


def decode_message(payload: bytes) -> dict[str, Any]:
    """What a client reads: a response, chunk or event map (checked for its shape)."""
    m = cbor.decode_lenient(payload, max_bytes=MAX_FRAME_BYTES)
    if type(m) is not dict or m.get("v") != VERSION or type(m.get("id")) is not int:
        raise DecodeError("not an IPC message")
    return m


# --- parameters ------------------------------------------------------------------------


class Params:
    """Typed access to a request's params; every error names the method and parameter."""

    def __init__(self, method: str, params: dict[str, Any], allowed: set[str]) -> None:
        self.method = method
        self.p = params
        unknown = set(params) - allowed
        if unknown:
            raise SchemaError(
                f"{method}: unknown parameter(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(allowed))})"
            )

    def _fail(self, key: str, why: str) -> SchemaError:
        return SchemaError(f"{self.method}: {key}: {why}")

    def has(self, key: str) -> bool:
        return key in self.p and self.p[key] is not None

    def text(self, key: str, *, default: str | None = None, max_len: int = 4000) -> str:
        if not self.has(key):
            if default is None:
                raise self._fail(key, "is required")
            return default
        v = self.p[key]
        if type(v) is not str or len(v) > max_len:
            raise self._fail(key, f"expected text of at most {max_len} characters")
        return v

    def integer(self, key: str, *, default: int | None = None, lo: int = 0, hi: int = (1 << 63) - 1) -> int:
        if not self.has(key):
            if default is None:
                raise self._fail(key, "is required")
            return default
        v = self.p[key]
        if type(v) is not int or not lo <= v <= hi:
            raise self._fail(key, f"expected a whole number in {lo}..{hi}")
        return v

    def boolean(self, key: str, *, default: bool) -> bool:
        if not self.has(key):
            return default
        v = self.p[key]
        if type(v) is not bool:
            raise self._fail(key, "expected true or false")
        return v

    def code(self, key: str, *, required: bool = True) -> AgencyCode | None:
        if not self.has(key):
            if required:
                raise self._fail(key, "is required (an agency code such as 000.00.00.G22)")
            return None
        try:
            return AgencyCode.parse(self.p[key])
        except AgencyCodeError as exc:
            raise self._fail(key, exc.message) from None

    def codes(self, key: str) -> list[AgencyCode]:
        v = self.p.get(key)
        if type(v) is not list or not v:
            raise self._fail(key, "expected a non-empty list of agency codes")
        out = []
        for i, c in enumerate(v):
            try:
                out.append(AgencyCode.parse(c))
            except AgencyCodeError as exc:
                raise self._fail(f"{key}[{i}]", exc.message) from None
        return out

    def digest(self, key: str) -> Digest:
        v = self.p.get(key)
        if type(v) is str:
            return Digest.parse(v)
        if type(v) is bytes and len(v) == 32:
            return Digest(v)
        raise self._fail(key, "expected a document id (64 hex digits)")

    def status_code(self, key: str) -> StatusCode:
        if not self.has(key):
            raise self._fail(key, "is required")
        return StatusCode.parse(self.p[key])


@dataclass(frozen=True)
class FileParam:
    name: str
    media_type: str
    path: str | None
    data: bytes | None


@dataclass(frozen=True)
class SubmitParams:
    sender: AgencyCode
    recipients: list[AgencyCode]
    meta: DocumentMeta
    files: list[FileParam]
    idempotency_key: str | None


SUBMIT_KEYS = {
    "from", "to", "subject", "number", "notation", "type", "place", "date", "signer", "signer_title",
    "urgency", "due", "business", "ref", "files", "idempotency_key",
}  # fmt: skip


def parse_submit(params: dict[str, Any]) -> SubmitParams:
    p = Params("submit", params, SUBMIT_KEYS)
    sender = p.code("from")
    assert sender is not None
    files = []
    raw_files = params.get("files", [])
    if type(raw_files) is not list:
        raise SchemaError("submit: files: expected a list of {name, mime, path | data}")
    for i, f in enumerate(raw_files):
        if type(f) is not dict or not set(f) <= {"name", "mime", "path", "data"} or "name" not in f:
            raise SchemaError(f"submit: files[{i}]: expected a map with name, mime and one of path or data")
        fp = Params(f"submit: files[{i}]", f, {"name", "mime", "path", "data"})
        has_path, has_data = fp.has("path"), fp.has("data")
        if has_path == has_data:
            raise SchemaError(f"submit: files[{i}]: give exactly one of path (a file the node can read) or data (bytes)")
        data = f.get("data")
        if has_data and type(data) is not bytes:
            raise SchemaError(f"submit: files[{i}].data: expected bytes")
        files.append(
            FileParam(
                fp.text("name", max_len=255),
                fp.text("mime", default="application/octet-stream", max_len=127),
                fp.text("path", max_len=4096) if has_path else None,
                data if has_data else None,
            )
        )
    business_text = p.text("business", default="new", max_len=16)
    try:
        business = BusinessType(business_text)
    except ValueError:
        raise SchemaError(f"submit: business: {business_text!r} is not new, revoke, update or replace") from None
    meta = DocumentMeta(
        subject=p.text("subject", max_len=2000),
        number=p.text("number", default="", max_len=32),
        notation=p.text("notation", default="", max_len=64),
        doc_type=p.text("type", default="", max_len=128),
        place=p.text("place", default="", max_len=128),
        date=p.text("date", default="", max_len=10),
        signer=p.text("signer", default="", max_len=128),
        signer_title=p.text("signer_title", default="", max_len=128),
        urgency=Urgency(p.integer("urgency", default=0, lo=0, hi=4)),
        due=p.text("due", default="", max_len=10),
        business=business,
        ref=p.digest("ref") if p.has("ref") else None,
        files=(),
    )
    key = p.text("idempotency_key", max_len=200) if p.has("idempotency_key") else None
    return SubmitParams(sender, p.codes("to"), meta, files, key)
