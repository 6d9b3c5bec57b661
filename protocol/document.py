"""Document metadata (the encrypted manifest) and the plaintext layout.

The manifest follows the national edXML practice: number and notation (số,
ký hiệu), document type, subject (trích yếu), promulgation place and date,
signer, urgency, due date, business type (new, revoke, update, replace with
a reference to the target document) and the attached files. It travels
inside the encrypted body, so relays never see it.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
import struct
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import cbor
from .body import MANIFEST_PREFIX_BYTES
from .errors import DecodeError, SchemaError
from .ids import Digest

MAX_MANIFEST_BYTES = 1 << 20
MAX_EDXML_HEADER_BYTES = (1 << 20) - (64 << 10)  # the edXML header carried in a version-2 manifest
MAX_FILES = 256
MAX_NOTE_CHARS = 4000
MAX_FILE_NAME_BYTES = 255  # UTF-8 bytes: what a recipient's file system can take as a name
MAX_MEDIA_TYPE_CHARS = 127
# Longest text per manifest field (characters). The decoder and the constructor use the same table,
# so a sender cannot build a manifest its recipients will refuse.
TEXT_LIMITS = {
    "subject": 2000,
    "number": 32,
    "notation": 64,
    "doc_type": 128,
    "place": 128,
    "date": 10,
    "signer": 128,
    "signer_title": 128,
    "due": 10,
}
# Bidirectional overrides and isolates: they make "invoice\u202efdp.exe" display as "invoiceexe.pdf".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
_MEDIA_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*$")


def check_file_name(name: str) -> str:
    """Return ``name`` if it is a plain file name every recipient can write; raise SchemaError saying why not.

    One name, not a path (no ``/`` or ``\\``, not ``.`` or ``..``), 1 to 255
    UTF-8 bytes, no control characters and no bidirectional overrides.
    Used by the sender's node at submit and by the decoder at every recipient.
    """
    if not name:
        raise SchemaError("an attached file name must not be empty")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise SchemaError(f"{name!r:.80} is not a plain file name (no '/', '\\', '.' or '..')")
    for ch in name:
        if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            raise SchemaError(f"{name!r:.80} is not a plain file name (control character U+{ord(ch):04X})")
    if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        raise SchemaError(
            f"{name[:40]!r}…: a file name is at most {MAX_FILE_NAME_BYTES} bytes in UTF-8, "
            f"this one is {len(name.encode('utf-8'))}"
        )
    return name


def check_media_type(media_type: str) -> str:
    """Return ``media_type`` if it is ``type/subtype`` (RFC 6838, optional ``; name=value`` parameters); else SchemaError."""
    if len(media_type) > MAX_MEDIA_TYPE_CHARS or not _MEDIA_TYPE.match(media_type):
        raise SchemaError(
            f"{media_type!r:.80} is not a media type like application/pdf "
            f"(type/subtype, at most {MAX_MEDIA_TYPE_CHARS} characters)"
        )
    return media_type


def check_attachments(files: Sequence[tuple[str, str]]) -> None:
    """The attachments' names and media types, as a recipient will check them; raises SchemaError.

    Call it before reading any file: every rule that does not need the bytes.
    """
    if len(files) > MAX_FILES:
        raise SchemaError(f"at most {MAX_FILES} files per document")
    for name, media_type in files:
        check_file_name(name)
        check_media_type(media_type)
    names = [name for name, _ in files]
    if len(set(names)) != len(names):
        raise SchemaError("two attached files have the same name")


class BusinessType(enum.Enum):
    NEW = "new"
    REVOKE = "revoke"
    UPDATE = "update"
    REPLACE = "replace"


class Urgency(enum.IntEnum):
    """Độ khẩn: normal, urgent (khẩn), very urgent (thượng khẩn), flash (hỏa tốc), flash with timer."""

    NORMAL = 0
    URGENT = 1
    VERY_URGENT = 2
    FLASH = 3
    FLASH_TIMED = 4


@dataclass(frozen=True, slots=True)
class FileEntry:
    """An attached file as the manifest describes it."""

    name: str
    media_type: str
    size: int
    sha256: Digest

    def __post_init__(self) -> None:
        check_file_name(self.name)
        check_media_type(self.media_type)
        if self.size < 0:
            raise SchemaError(f"{self.name}: a file size cannot be negative")

    def to_cbor(self) -> dict[str, Any]:
        return {"name": self.name, "mime": self.media_type, "size": self.size, "sha256": bytes(self.sha256)}

    @classmethod
    def from_cbor(cls, value: Any, where: str) -> FileEntry:
        m = cbor.expect_map(value, where, {"name", "mime", "size", "sha256"})
        name = cbor.get_text(m, "name", where, max_len=MAX_FILE_NAME_BYTES)
        mime = cbor.get_text(m, "mime", where, max_len=MAX_MEDIA_TYPE_CHARS)
        try:
            return cls(  # __post_init__: the same rules as at the sender's submit
                name=name,
                media_type=mime,
                size=cbor.get_int(m, "size", where),
                sha256=Digest(cbor.get_bytes(m, "sha256", where, size=32)),
            )
        except SchemaError as exc:
            raise SchemaError(f"{where}: {exc.detail}") from None


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    """What an integrator says about a document (everything except file bytes)."""

    subject: str
    number: str = ""
    notation: str = ""
    doc_type: str = ""
    place: str = ""
    date: str = ""  # promulgation date, YYYY-MM-DD, or "" when not given
    signer: str = ""
    signer_title: str = ""
    urgency: Urgency = Urgency.NORMAL
    due: str = ""  # YYYY-MM-DD or ""
    business: BusinessType = BusinessType.NEW
    ref: Digest | None = None  # target document for revoke/update/replace
    files: tuple[FileEntry, ...] = field(default=())
    edxml: bytes = b""  # the document's edXML header, in its CBOR form (docs/edxml.md §10); "" when none

    def __post_init__(self) -> None:
        _check_meta(self)

    def to_cbor(self) -> dict[str, Any]:
        m: dict[str, Any] = {
            "v": 1,
            "subject": self.subject,
            "number": self.number,
            "notation": self.notation,
            "type": self.doc_type,
            "place": self.place,
            "date": self.date,
            "signer": self.signer,
            "stitle": self.signer_title,
            "urgency": int(self.urgency),
            "due": self.due,
            "btype": self.business.value,
            "files": [f.to_cbor() for f in self.files],
        }
        if self.ref is not None:
            m["ref"] = bytes(self.ref)
        if self.edxml:
            m["v"] = 2  # a manifest without edXML stays byte for byte what version 1 wrote
            m["edxml"] = self.edxml
        return m

    def encode(self) -> bytes:
        return cbor.encode(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes) -> DocumentMeta:
        where = "manifest"
        m = cbor.expect_map(
            cbor.decode(data, max_bytes=MAX_MANIFEST_BYTES),
            where,
            {
                "v",
                "subject",
                "number",
                "notation",
                "type",
                "place",
                "date",
                "signer",
                "stitle",
                "urgency",
                "due",
                "btype",
                "files",
            },
            {"ref", "edxml"},
        )
        version = cbor.get_int(m, "v", where)
        if version not in (1, 2) or ("edxml" in m) != (version == 2) or m.get("edxml") == b"":
            raise SchemaError("manifest.v: version 1 (no edXML header) or 2 (with one) are known")
        try:
            business = BusinessType(cbor.get_text(m, "btype", where, max_len=16))
        except ValueError:
            raise SchemaError(f"manifest.btype: {m['btype']!r} is not new/revoke/update/replace") from None
        files = tuple(
            FileEntry.from_cbor(f, f"manifest.files[{i}]")
            for i, f in enumerate(cbor.get_list(m, "files", where, max_len=MAX_FILES))
        )
        limit = TEXT_LIMITS
        return cls(  # __post_init__ (_check_meta): the same rules as at the sender's submit
            subject=cbor.get_text(m, "subject", where, max_len=limit["subject"]),
            number=cbor.get_text(m, "number", where, max_len=limit["number"]),
            notation=cbor.get_text(m, "notation", where, max_len=limit["notation"]),
            doc_type=cbor.get_text(m, "type", where, max_len=limit["doc_type"]),
            place=cbor.get_text(m, "place", where, max_len=limit["place"]),
            date=cbor.get_text(m, "date", where, max_len=limit["date"]),
            signer=cbor.get_text(m, "signer", where, max_len=limit["signer"]),
            signer_title=cbor.get_text(m, "stitle", where, max_len=limit["signer_title"]),
            urgency=Urgency(cbor.get_int(m, "urgency", where, 0, 4)),
            due=cbor.get_text(m, "due", where, max_len=limit["due"]),
            business=business,
            ref=Digest(cbor.get_bytes(m, "ref", where, size=32)) if "ref" in m else None,
            files=files,
            edxml=cbor.get_bytes(m, "edxml", where, max_len=MAX_EDXML_HEADER_BYTES) if "edxml" in m else b"",
        )

    @property
    def files_size(self) -> int:
        return sum(f.size for f in self.files)


def _check_meta(meta: DocumentMeta) -> None:
    """Raise SchemaError for metadata the national practice does not allow, or a recipient would not decode."""
    if not meta.subject.strip():
        raise SchemaError("the subject (trích yếu) must not be empty")
    for name, limit in TEXT_LIMITS.items():
        if len(getattr(meta, name)) > limit:
            raise SchemaError(f"{name.replace('_', ' ')} is longer than {limit} characters")
    for name in ("date", "due"):
        value = getattr(meta, name)
        if value:
            try:
                _dt.date.fromisoformat(value)
            except ValueError:
                raise SchemaError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None
            if len(value) != 10:
                raise SchemaError(f"{name} must be a date YYYY-MM-DD, got {value!r}")
    if meta.business is BusinessType.NEW and meta.ref is not None:
        raise SchemaError("a new document does not reference another one")
    if meta.business is not BusinessType.NEW and meta.ref is None:
        raise SchemaError(f"a {meta.business.value} document must reference its target document")
    check_attachments([(f.name, f.media_type) for f in meta.files])
    if len(meta.edxml) > MAX_EDXML_HEADER_BYTES:
        raise SchemaError(f"the edXML header is {len(meta.edxml)} bytes, over the {MAX_EDXML_HEADER_BYTES} a manifest carries")


@dataclass(frozen=True, slots=True)
class StatusNote:
    """The encrypted part of a status envelope."""

    note: str = ""

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "note": self.note})

    @classmethod
    def decode(cls, data: bytes) -> StatusNote:
        m = cbor.expect_map(cbor.decode(data, max_bytes=MAX_MANIFEST_BYTES), "note", {"v", "note"})
        if cbor.get_int(m, "v", "note") != 1:
            raise SchemaError("note.v: only version 1 is known")
        return cls(cbor.get_text(m, "note", "note", max_len=MAX_NOTE_CHARS))


# --- plaintext layout -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestRead:
    manifest: bytes


@dataclass(frozen=True, slots=True)
class FileBytes:
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FileDone:
    index: int


class PlaintextReader:
    """Bytes in, events out: split a decrypted body stream into manifest and files.

    Feed plaintext chunks in order with :meth:`feed`; it yields
    ``ManifestRead`` once, then ``FileBytes``/``FileDone`` per file, in file
    order. ``file_sizes`` must be set (from the decoded manifest) before file
    bytes can be split; call :meth:`close` at the end to check nothing is
    missing or left over. Raises DecodeError on a malformed layout.
    """

    def __init__(self, *, max_manifest: int = MAX_MANIFEST_BYTES) -> None:
        self._buf = bytearray()
        self._manifest_len: int | None = None
        self._max_manifest = max_manifest
        self._sizes: list[int] | None = None
        self._file = 0
        self._left = 0
        self._manifest_done = False

    def set_file_sizes(self, sizes: list[int]) -> None:
        self._sizes = list(sizes)
        self._file = 0
        self._left = sizes[0] if sizes else 0

    def feed(self, chunk: bytes) -> Iterator[ManifestRead | FileBytes | FileDone]:
        if not self._manifest_done:
            self._buf += chunk
            if self._manifest_len is None and len(self._buf) >= MANIFEST_PREFIX_BYTES:
                (self._manifest_len,) = struct.unpack(">I", self._buf[:MANIFEST_PREFIX_BYTES])
                if self._manifest_len > self._max_manifest:
                    raise DecodeError(f"manifest of {self._manifest_len} bytes, limit {self._max_manifest}")
            if self._manifest_len is None or len(self._buf) < MANIFEST_PREFIX_BYTES + self._manifest_len:
                return
            end = MANIFEST_PREFIX_BYTES + self._manifest_len
            self._manifest_done = True
            rest = bytes(self._buf[end:])
            yield ManifestRead(bytes(self._buf[MANIFEST_PREFIX_BYTES:end]))
            self._buf = bytearray()
            chunk = rest
        if not chunk:
            return
        if self._sizes is None:
            raise RuntimeError("set_file_sizes() must be called after ManifestRead")  # caller bug
        view = memoryview(chunk)
        while view:
            if self._file >= len(self._sizes):
                raise DecodeError("the body has more bytes than its manifest lists")
            take = min(self._left, len(view))
            if take:
                yield FileBytes(self._file, bytes(view[:take]))
                view = view[take:]
                self._left -= take
            if self._left == 0:
                yield from self._finish_file()
        # Zero-length files right after the current one complete immediately.
        while self._sizes and self._file < len(self._sizes) and self._left == 0:
            yield from self._finish_file()

    def _finish_file(self) -> Iterator[FileDone]:
        assert self._sizes is not None
        yield FileDone(self._file)
        self._file += 1
        self._left = self._sizes[self._file] if self._file < len(self._sizes) else 0

    def close(self) -> Iterator[FileDone]:
        if not self._manifest_done:
            raise DecodeError("the body ends inside the manifest")
        if self._sizes is None:
            self._sizes = []
        while self._file < len(self._sizes) and self._left == 0:
            yield from self._finish_file()
        if self._file < len(self._sizes):
            raise DecodeError(f"the body ends inside file {self._file}")
