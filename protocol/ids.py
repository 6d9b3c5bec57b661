"""Identifiers: content hashes and key ids, with one text form each."""

from __future__ import annotations

import hashlib

from .errors import SchemaError

DIGEST_BYTES = 32
KEY_ID_BYTES = 8
_KID_CONTEXT = b"truc/v1/key-id\x00"


class Digest(bytes):
    """A SHA-256 content hash: envelope ids, document ids, block hashes.

    Text form: 64 lower-case hex digits. ``short()`` (12 digits) is for logs
    and tables only; it is not unique.
    """

    __slots__ = ()

    def __new__(cls, raw: bytes) -> Digest:
        if len(raw) != DIGEST_BYTES:
            raise SchemaError(f"a content hash is {DIGEST_BYTES} bytes, got {len(raw)}")
        return super().__new__(cls, raw)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).digest())

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse the 64-hex-digit text form; raises SchemaError."""
        try:
            raw = bytes.fromhex(text)
        except (ValueError, TypeError):
            raise SchemaError(f"{text!r:.80} is not a 64-digit hex id") from None
        if len(raw) != DIGEST_BYTES:
            raise SchemaError(f"{text!r:.80} is not a 64-digit hex id")
        return cls(raw)

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"Digest({self.short()}…)"

    def short(self) -> str:
        return self.hex()[:12]


def key_id(public_key: bytes) -> bytes:
    """The 8-byte id of a public key: the start of SHA-256(context ‖ key)."""
    return hashlib.sha256(_KID_CONTEXT + public_key).digest()[:KEY_ID_BYTES]
