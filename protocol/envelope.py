"""Envelopes: the signed unit that travels (documents, statuses, directory updates).

Wire form (canonical CBOR map, version 1)::

    {"v": 1, "h": <header bytes>, "sig": <64 bytes>, "blk": [<inline block>...]}

``h`` is the canonical CBOR encoding of the header map, carried as a byte
string so the signed bytes are exactly the bytes on the wire. The signature
is Ed25519 over ``CONTEXT_TAGS[kind] ‖ h``; the envelope id is SHA-256(h).
``blk`` is present exactly when the body travels inline. Full field lists and
limits are in ``docs/protocol.md``; golden vectors in ``tests/vectors/``.

This module decodes and checks structure and hashes. Signatures and trust are
checked by ``identity``; this module has no crypto beyond SHA-256.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from . import cbor
from .agency import AgencyCode
from .body import INLINE_MAX_BYTES, NONCE_BYTES, BodyRef
from .errors import AgencyCodeError, HashMismatchError, SchemaError, StaleEnvelopeError
from .ids import DIGEST_BYTES, KEY_ID_BYTES, Digest
from .status import StatusCode

FORMAT_VERSION = 1
SIGNATURE_BYTES = 64
WRAPPED_KEY_BYTES = 80  # sealed box of a 32-byte key: 32 ephemeral + 16 tag + 32
MAX_HEADER_BYTES = 256 << 10
MAX_ENVELOPE_BYTES = 512 << 10
MAX_DIRECTORY_ENVELOPE_BYTES = 64 << 20
MAX_RECIPIENTS = 1024
MAX_STATUS_SEQ = 1 << 32
_NETWORK = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Kind(enum.Enum):
    DOCUMENT = "doc"
    STATUS = "status"
    DIRECTORY = "dir"


CONTEXT_TAGS: dict[Kind, bytes] = {
    Kind.DOCUMENT: b"truc/v1/document\x00",
    Kind.STATUS: b"truc/v1/status\x00",
    Kind.DIRECTORY: b"truc/v1/directory\x00",
}


def check_network(net: str) -> str:
    if not isinstance(net, str) or not _NETWORK.match(net):
        raise SchemaError(f"network id {net!r:.80} must be 1-63 characters a-z, 0-9, '-'")
    return net


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """Header of a document or status envelope: routing metadata only, no contents."""

    kind: Kind
    net: str
    sender: AgencyCode
    kid: bytes
    at: int  # creation time, ms since the Unix epoch (UTC)
    to: tuple[AgencyCode, ...]
    keys: tuple[bytes, ...]  # content key sealed to each recipient, same order as ``to``
    nonce: bytes
    body: BodyRef
    doc: Digest | None = None  # status: the document it is about
    code: StatusCode | None = None  # status only
    seq: int = 0  # status only: position in the thread, from 1

    def to_cbor(self, *, with_body: bool = True) -> dict[str, Any]:
        # Keys in canonical order (length, then bytewise), so encoding takes cbor2's plain encoder: the header
        # is encoded at every seal and open (its binding), not only on the wire.
        status = self.kind is Kind.STATUS
        doc, code = self.doc, self.code
        if status:
            assert doc is not None and code is not None
        m: dict[str, Any] = {"v": FORMAT_VERSION, "at": self.at, "to": [str(c) for c in self.to]}
        if doc is not None and status:
            m["doc"] = bytes(doc)
        m["kid"] = self.kid
        m["net"] = self.net
        if status:
            m["seq"] = self.seq
        if with_body:
            m["body"] = self.body.to_cbor()
        if code is not None and status:
            m["code"] = int(code)
        m["from"] = str(self.sender)
        m["keys"] = list(self.keys)
        m["kind"] = self.kind.value
        m["nonce"] = self.nonce
        return m

    def binding(self) -> bytes:
        """SHA-256 of the header without its body: the AAD anchor of every block."""
        return hashlib.sha256(cbor.encode(self.to_cbor(with_body=False))).digest()

    @property
    def shards(self) -> tuple[str, ...]:
        return tuple(sorted({c.shard for c in self.to}))

    @classmethod
    def from_cbor(cls, m: dict[str, Any], kind: Kind) -> MessageHeader:
        where = "header"
        common = {"v", "kind", "net", "from", "kid", "at", "to", "keys", "nonce", "body"}
        required = common | {"doc", "code", "seq"} if kind is Kind.STATUS else common
        cbor.expect_map(m, where, required)
        sender = _code(m["from"], "header.from")
        raw_to = cbor.get_list(m, "to", where, min_len=1, max_len=1 if kind is Kind.STATUS else MAX_RECIPIENTS)
        to = tuple(_code(c, f"header.to[{i}]") for i, c in enumerate(raw_to))
        if [str(c) for c in to] != sorted({str(c) for c in to}):
            raise SchemaError("header.to: recipients must be sorted and distinct")
        if sender in to:
            raise SchemaError(f"header.to: {sender} cannot send to itself")
        raw_keys = cbor.get_list(m, "keys", where, min_len=len(to), max_len=len(to))
        for i, k in enumerate(raw_keys):
            if type(k) is not bytes or len(k) != WRAPPED_KEY_BYTES:
                raise SchemaError(f"header.keys[{i}]: expected a {WRAPPED_KEY_BYTES}-byte wrapped key")
        body = BodyRef.from_cbor(m["body"], "header.body")
        doc = code = None
        seq = 0
        if kind is Kind.STATUS:
            doc = Digest(cbor.get_bytes(m, "doc", where, size=DIGEST_BYTES))
            code = StatusCode.parse(cbor.get_int(m, "code", where, 0, 99))
            seq = cbor.get_int(m, "seq", where, 1, MAX_STATUS_SEQ)
            if not body.inline:
                raise SchemaError("header.body: a status body must travel inline")
        return cls(
            kind=kind,
            net=check_network(cbor.get_text(m, "net", where, max_len=63)),
            sender=sender,
            kid=cbor.get_bytes(m, "kid", where, size=KEY_ID_BYTES),
            at=cbor.get_int(m, "at", where),
            to=to,
            keys=tuple(raw_keys),
            nonce=cbor.get_bytes(m, "nonce", where, size=NONCE_BYTES),
            body=body,
            doc=doc,
            code=code,
            seq=seq,
        )


@dataclass(frozen=True, slots=True)
class DirectoryHeader:
    """Header of a directory snapshot (``base == 0``) or delta (``base == serial - k``)."""

    net: str
    kid: bytes  # the authority key id
    at: int
    serial: int
    base: int
    until: int  # the directory is valid until this time (ms)
    body_len: int
    body_hash: Digest
    kind: Kind = field(default=Kind.DIRECTORY, init=False)

    def to_cbor(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "kind": Kind.DIRECTORY.value,
            "net": self.net,
            "kid": self.kid,
            "at": self.at,
            "serial": self.serial,
            "base": self.base,
            "until": self.until,
            "body": {"len": self.body_len, "hash": bytes(self.body_hash)},
        }

    @property
    def is_snapshot(self) -> bool:
        return self.base == 0

    @classmethod
    def from_cbor(cls, m: dict[str, Any]) -> DirectoryHeader:
        where = "header"
        cbor.expect_map(m, where, {"v", "kind", "net", "kid", "at", "serial", "base", "until", "body"})
        serial = cbor.get_int(m, "serial", where, 1)
        base = cbor.get_int(m, "base", where, 0, serial - 1)
        body = cbor.expect_map(m["body"], "header.body", {"len", "hash"})
        return cls(
            net=check_network(cbor.get_text(m, "net", where, max_len=63)),
            kid=cbor.get_bytes(m, "kid", where, size=KEY_ID_BYTES),
            at=cbor.get_int(m, "at", where),
            serial=serial,
            base=base,
            until=cbor.get_int(m, "until", where),
            body_len=cbor.get_int(body, "len", "header.body", 1, MAX_DIRECTORY_ENVELOPE_BYTES),
            body_hash=Digest(cbor.get_bytes(body, "hash", "header.body", size=DIGEST_BYTES)),
        )


Header = MessageHeader | DirectoryHeader


@dataclass(frozen=True, slots=True)
class Envelope:
    header: Header
    header_bytes: bytes
    signature: bytes
    inline: tuple[bytes, ...] = ()
    id: Digest = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", Digest.of(self.header_bytes))

    @property
    def kind(self) -> Kind:
        return self.header.kind

    @property
    def signed_bytes(self) -> bytes:
        return CONTEXT_TAGS[self.kind] + self.header_bytes

    @staticmethod
    def header_bytes_of(header: Header) -> bytes:
        return cbor.encode(header.to_cbor())

    def encode(self) -> bytes:
        m: dict[str, Any] = {"v": FORMAT_VERSION, "h": self.header_bytes, "sig": self.signature}
        if self.inline:
            m["blk"] = list(self.inline)
        return cbor.encode(m)

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
        """Decode and check structure, inline hashes and sizes; not the signature.

        Raises a DecodeError subclass (malformed, too large, bad schema) or
        HashMismatchError.
        """
        outer = cbor.expect_map(cbor.decode(data, max_bytes=max_bytes), "envelope", {"v", "h", "sig"}, {"blk"})
        if cbor.get_int(outer, "v", "envelope") != FORMAT_VERSION:
            raise SchemaError(f"envelope.v: only version {FORMAT_VERSION} is known, got {outer['v']}")
        header_bytes = cbor.get_bytes(outer, "h", "envelope", max_len=MAX_HEADER_BYTES)
        signature = cbor.get_bytes(outer, "sig", "envelope", size=SIGNATURE_BYTES)
        raw = cbor.decode(header_bytes, max_bytes=MAX_HEADER_BYTES)
        if type(raw) is not dict or "kind" not in raw or "v" not in raw:
            raise SchemaError("header: expected a map with v and kind")
        if raw["v"] != FORMAT_VERSION:
            raise SchemaError(f"header.v: only version {FORMAT_VERSION} is known")
        try:
            kind = Kind(raw["kind"])
        except (ValueError, TypeError):
            raise SchemaError(f"header.kind: {raw['kind']!r:.40} is not doc, status or dir") from None
        header: Header = DirectoryHeader.from_cbor(raw) if kind is Kind.DIRECTORY else MessageHeader.from_cbor(raw, kind)
        inline: tuple[bytes, ...] = ()
        if "blk" in outer:
            blocks = cbor.get_list(outer, "blk", "envelope", min_len=1, max_len=1)
            if type(blocks[0]) is not bytes:
                raise SchemaError("envelope.blk[0]: expected bytes")
            inline = (blocks[0],)
        env = cls(header, header_bytes, signature, inline)
        env.check_inline()
        return env

    def check_inline(self) -> None:
        """Check that inline blocks are present exactly when required and match the header."""
        h = self.header
        if isinstance(h, DirectoryHeader):
            if len(self.inline) != 1:
                raise SchemaError("a directory envelope carries its body inline")
            if len(self.inline[0]) != h.body_len or Digest.of(self.inline[0]) != h.body_hash:
                raise HashMismatchError("directory body")
            return
        if h.body.inline != bool(self.inline):
            raise SchemaError(
                f"envelope.blk: a body of {h.body.length} bytes must {'' if h.body.inline else 'not '}travel inline"
                f" (inline limit {INLINE_MAX_BYTES})"
            )
        if self.inline:
            block = self.inline[0]
            if len(block) != h.body.sealed_size(0) or Digest.of(block) != h.body.blocks[0]:
                raise HashMismatchError("inline body block")


def _code(value: Any, where: str) -> AgencyCode:
    if type(value) is not str:
        raise SchemaError(f"{where}: expected an agency code as text")
    try:
        code = AgencyCode.parse(value)
    except AgencyCodeError as exc:
        raise SchemaError(f"{where}: {exc.detail}") from None
    if str(code) != value:
        raise SchemaError(f"{where}: {value!r} must be written in the canonical form {code}")
    return code


def check_time(at: int, now: int, *, max_age_ms: int, max_skew_ms: int) -> None:
    """Raise StaleEnvelopeError when ``at`` is older than ``max_age_ms`` or ahead of ``now`` by more than ``max_skew_ms``."""
    if at > now + max_skew_ms:
        raise StaleEnvelopeError(f"created {(at - now) // 1000} s in the future (allowed clock skew {max_skew_ms // 1000} s)")
    if at < now - max_age_ms:
        raise StaleEnvelopeError(f"created {(now - at) // 1000} s ago (maximum age {max_age_ms // 1000} s)")
