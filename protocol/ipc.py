"""The integrator IPC protocol, version 1 (``docs/ipc.md``).

Frames: ``u32 big-endian length ‖ CBOR map`` over a Unix stream socket. CBOR
from clients need not be canonical (any key order); duplicate keys,
indefinite lengths, tags, floats and trailing bytes are refused.

    request   {"v": 1, "id": 1..2^63-1, "method": text, "params": map}   (params optional)
    upload    {"v": 1, "id": id, "file": uint, "data": bytes}   (after a request that declared streamed files)
    response  {"v": 1, "id": id, "ok": true,  "result": any}
              {"v": 1, "id": id, "ok": false, "error": {"code": text, "message": text}}
    chunk     {"v": 1, "id": id, "file": uint, "data": bytes}    (document.get, before its response)
    event     {"v": 1, "id": id, "event": text, "at": uint, "data": map}   (after events.subscribe)

Frames from a client are at most ``MAX_FRAME_BYTES`` (4 MiB): attachments
larger than that travel as upload frames, never inside one request. Frames
from the node are at most ``MAX_ANSWER_BYTES``.

This module is pure: frame payloads in, typed requests out, and the
parameter parsers that turn a request's ``params`` into typed values or a
SchemaError naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import cbor
from .agency import AgencyCode
from .document import BusinessType, DocumentMeta, Urgency
from .errors import AgencyCodeError, DecodeError, SchemaError, TrucError
from .ids import Digest
from .status import StatusCode

VERSION = 1
MAX_FRAME_BYTES = 4 << 20  # client -> node
MAX_ANSWER_BYTES = 64 << 20  # node -> client (a national directory.show is ~30 MB)
CHUNK_BYTES = 1 << 20
MAX_ID = (1 << 63) - 1
MAX_FILES = 1024

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
    "edxml.submit",
    "edxml.export",
    "edxml.statuses",
)


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    params: dict[str, Any]
    v: int = VERSION

    def encode(self) -> bytes:
        return cbor.encode({"v": self.v, "id": self.id, "method": self.method, "params": self.params})


@dataclass(frozen=True)
class Upload:
    """Bytes of a streamed file (``file`` indexes the request's declared files)."""

    id: int
    file: int
    data: bytes

    def encode(self) -> bytes:
        return cbor.encode({"v": VERSION, "id": self.id, "file": self.file, "data": self.data})


def decode_client_frame(payload: bytes) -> Request | Upload:
    """A frame from a client: a request or an upload chunk.

    Raises DecodeError (``malformed``: answered with id 0, connection closed)
    for anything that is not one of the two shapes. A request with another
    ``v`` is returned as is: the server answers it with its own id.
    """
    m = cbor.decode_lenient(payload, max_bytes=MAX_FRAME_BYTES)
    if type(m) is not dict:
        raise DecodeError(f"a frame must hold a CBOR map, got {cbor._kind(m)}")
    rid = m.get("id")
    if type(rid) is not int or not 1 <= rid <= MAX_ID:
        raise DecodeError(f"id must be an integer in 1..2^63-1, got {rid!r:.40}")
    if "method" in m:
        extra = set(m) - {"v", "id", "method", "params"}
        if extra or "v" not in m:
            raise DecodeError(f"a request has v, id, method and params; got {', '.join(sorted(m))}")
        method, params, v = m["method"], m.get("params", {}), m["v"]
        if type(method) is not str or len(method) > 64:
            raise DecodeError("method must be text of at most 64 characters")
        if type(params) is not dict:
            raise DecodeError(f"params must be a map, got {cbor._kind(params)}")
        if type(v) is not int:
            raise DecodeError("v must be an integer")
        return Request(rid, method, params, v)
    if set(m) != {"v", "id", "file", "data"}:
        raise DecodeError(
            f"a frame is a request (v, id, method, params) or an upload (v, id, file, data); got {', '.join(sorted(m))}"
        )
    if m["v"] != VERSION:
        raise DecodeError(f"upload frames are IPC version {VERSION}, got v={m['v']!r:.20}")
    if type(m["file"]) is not int or not 0 <= m["file"] < MAX_FILES or type(m["data"]) is not bytes or not m["data"]:
        raise DecodeError("an upload has file (0..1023) and data (non-empty bytes)")
    return Upload(rid, m["file"], m["data"])


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
    m = cbor.decode_lenient(payload, max_bytes=MAX_ANSWER_BYTES)
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
                f"{method}: unknown parameter(s) {', '.join(sorted(unknown))}"
                + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else " (it takes none)")
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

    def integer(self, key: str, *, default: int | None = None, lo: int = 0, hi: int = MAX_ID) -> int:
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

    def _parse_code(self, key: str, value: Any) -> AgencyCode:
        if type(value) is not str:
            raise self._fail(key, "expected an agency code as text, such as 000.00.00.G22")
        try:
            return AgencyCode.parse(value)
        except AgencyCodeError as exc:
            raise AgencyCodeError(f"{self.method}: {key}: {exc.detail}") from None

    def code(self, key: str, *, required: bool = True) -> AgencyCode | None:
        """An agency code; raises SchemaError if missing or not text, AgencyCodeError if not a code."""
        if not self.has(key):
            if required:
                raise self._fail(key, "is required (an agency code such as 000.00.00.G22)")
            return None
        return self._parse_code(key, self.p[key])

    def codes(self, key: str, *, max_len: int = 1024) -> list[AgencyCode]:
        """A non-empty list of distinct agency codes (``G22`` and ``000.00.00.G22`` are the same code)."""
        v = self.p.get(key)
        if type(v) is not list or not 1 <= len(v) <= max_len:
            raise self._fail(key, f"expected a list of 1..{max_len} agency codes")
        out: list[AgencyCode] = []
        for i, c in enumerate(v):
            code = self._parse_code(f"{key}[{i}]", c)
            if code in out:
                raise self._fail(f"{key}[{i}]", f"{code} is listed twice")
            out.append(code)
        return out

    def digest(self, key: str) -> Digest:
        v = self.p.get(key)
        if type(v) is str and len(v) == 64 and all(ch in "0123456789abcdef" for ch in v):
            return Digest.parse(v)
        if type(v) is bytes and len(v) == 32:
            return Digest(v)
        raise self._fail(key, "expected a document id (64 lower-case hex digits, or 32 bytes)")

    def status_code(self, key: str) -> StatusCode:
        """A status code as two-digit text (``"03"``) or an integer; anything else is bad_schema."""
        if not self.has(key):
            raise self._fail(key, "is required")
        v = self.p[key]
        if type(v) is str and len(v) == 2 and v.isdigit():
            number = int(v)
        elif type(v) is int:
            number = v
        else:
            raise self._fail(key, f'expected a status code as two digits ("03") or an integer, got {v!r:.20}')
        try:
            return StatusCode(number)
        except ValueError:
            allowed = ", ".join(str(c) for c in StatusCode)
            raise self._fail(key, f"{number:02d} is not a status code ({allowed})") from None


@dataclass(frozen=True)
class FileParam:
    """One attachment of a submit: bytes inline, a path (if the node allows it), or streamed in upload frames."""

    name: str
    media_type: str
    data: bytes | None = None
    path: str | None = None
    size: int | None = None  # streamed: exactly this many bytes follow in upload frames
    sha256: bytes | None = None  # streamed: optional, checked by the node when the last byte arrives

    @property
    def streamed(self) -> bool:
        return self.size is not None


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
FILE_KEYS = {"name", "mime", "data", "path", "size", "sha256"}


T = TypeVar("T")


def page_by_time(items: Sequence[T], limit: int, at: Callable[[T], int]) -> tuple[list[T], bool]:
    """(one page of ``items``, sorted by ``at``; whether more follow): a page never ends inside a run of equal times.

    A client asks again with ``since`` = the last page's last time and
    misses nothing: the page is cut before a run that ``limit`` would split,
    or, when one run alone is over ``limit``, holds that whole run.
    """
    page = list(items[:limit])
    if len(items) > limit:
        tied = at(items[limit])
        page = [x for x in page if at(x) != tied] or [x for x in items if at(x) == tied]
    return page, len(items) > len(page)


def parse_files(params: dict[str, Any]) -> list[FileParam]:
    """The ``files`` of a submit; raises SchemaError naming the file. Also what the server reads to expect uploads."""
    raw_files = params.get("files", [])
    if type(raw_files) is not list or len(raw_files) > MAX_FILES:
        raise SchemaError(f"submit: files: expected a list of at most {MAX_FILES} maps {{name, mime, data | size | path}}")
    files = []
    for i, f in enumerate(raw_files):
        if type(f) is not dict:
            raise SchemaError(f"submit: files[{i}]: expected a map with name, mime and one of data, size or path")
        fp = Params(f"submit: files[{i}]", f, FILE_KEYS)
        given = [k for k in ("data", "size", "path") if fp.has(k)]
        if len(given) != 1:
            raise SchemaError(
                f"submit: files[{i}]: give exactly one of data (the bytes), size (the bytes follow as upload frames) "
                "or path (a file in a directory the node's operator allows)"
            )
        data = f.get("data")
        if "data" in given and type(data) is not bytes:
            raise SchemaError(f"submit: files[{i}].data: expected bytes")
        sha = None
        if fp.has("sha256"):
            if "size" not in given:
                raise SchemaError(f"submit: files[{i}].sha256: only for streamed files (with size)")
            sha = fp.digest("sha256")
        files.append(
            FileParam(
                fp.text("name", max_len=255),
                fp.text("mime", default="application/octet-stream", max_len=127),
                data=data if "data" in given else None,
                path=fp.text("path", max_len=4096) if "path" in given else None,
                size=fp.integer("size") if "size" in given else None,
                sha256=bytes(sha) if sha is not None else None,
            )
        )
    return files


def declared_uploads(method: str, params: dict[str, Any]) -> dict[int, int]:
    """Which files of this request arrive as upload frames: {file index: size}. Raises SchemaError.

    The server calls this as soon as it reads the request, before any upload
    frame of it can arrive.
    """
    if method == "submit":
        return {i: f.size for i, f in enumerate(parse_files(params)) if f.size is not None}
    if method == "directory.publish":
        f = params.get("file")
        if type(f) is dict:
            fp = Params("directory.publish: file", f, {"size"})
            return {0: fp.integer("size")}
    if method == "edxml.submit":
        package = parse_package(params)
        if package.size is not None:
            return {0: package.size}
    return {}


@dataclass(frozen=True)
class PackageParam:
    """An edXML package: its bytes inline, or ``size`` bytes in upload frames (file 0), with an optional SHA-256."""

    data: bytes | None
    size: int | None = None
    sha256: bytes | None = None


def parse_package(params: dict[str, Any]) -> PackageParam:
    """``edxml.submit``'s ``package``; raises SchemaError."""
    p = Params("edxml.submit", params, {"package"})
    v = p.p.get("package")
    if type(v) is bytes and v:
        return PackageParam(v)
    if type(v) is dict:
        fp = Params("edxml.submit: package", v, {"size", "sha256"})
        sha = fp.digest("sha256") if fp.has("sha256") else None
        return PackageParam(None, fp.integer("size", lo=1), bytes(sha) if sha is not None else None)
    raise SchemaError("edxml.submit: package: expected the package's bytes, or {size, sha256?} with upload frames following")


def parse_submit(params: dict[str, Any]) -> SubmitParams:
    p = Params("submit", params, SUBMIT_KEYS)
    sender = p.code("from")
    assert sender is not None
    recipients = p.codes("to")
    if sender in recipients:
        raise SchemaError(f"submit: to: {sender} is the sender; a document cannot be sent to itself")
    files = parse_files(params)
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
    return SubmitParams(sender, recipients, meta, files, key)
