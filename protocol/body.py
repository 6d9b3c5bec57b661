"""Bodies: the encrypted part of an envelope, cut into content-addressed blocks.

A body is the plaintext ``u32 manifest length ‖ manifest ‖ file bytes...``
cut into chunks of ``BLOCK_BYTES``; each chunk is sealed with
XChaCha20-Poly1305 under a random per-envelope content key:

* nonce  = header ``nonce`` (16 bytes) ‖ chunk index (u64 big-endian)
* AAD    = ``BODY_CONTEXT`` ‖ binding (32 bytes) ‖ index (u32 BE) ‖ final (u8)
* binding = SHA-256 of the canonical header map without its ``body`` field,
  so a block only opens under the header (sender, recipients, wrapped keys,
  nonce, time) it was made for; ``final`` marks the last chunk, so a
  truncated body does not open.

Each sealed chunk is a block, named by SHA-256 of its bytes. The header's
``body`` lists the block hashes in order; the header is signed, so every block
is authenticated by hash before it is decrypted. Bodies up to
``INLINE_MAX_BYTES`` of plaintext travel inside the envelope (one block);
larger ones travel as blocks over request/response.

This module only computes sizes, nonces and AAD: no crypto, no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from . import cbor
from .errors import SchemaError
from .ids import Digest

BLOCK_BYTES = 1 << 20  # plaintext bytes per block (the last one may be shorter)
AEAD_TAG_BYTES = 16
INLINE_MAX_BYTES = 48 << 10  # bodies up to this many plaintext bytes are inline
MAX_BODY_BYTES = 4 << 30  # protocol ceiling; nodes configure a lower limit
MAX_BLOCKS = MAX_BODY_BYTES // BLOCK_BYTES
NONCE_BYTES = 16
BODY_CONTEXT = b"truc/v1/body\x00"
MANIFEST_PREFIX_BYTES = 4


@dataclass(frozen=True, slots=True)
class BodyRef:
    """What the signed header says about the body."""

    length: int  # plaintext bytes
    block_size: int
    blocks: tuple[Digest, ...]

    def to_cbor(self) -> dict[str, Any]:
        return {"bsz": self.block_size, "len": self.length, "blocks": [bytes(b) for b in self.blocks]}  # canonical order

    @classmethod
    def from_cbor(cls, value: Any, where: str, *, max_length: int = MAX_BODY_BYTES) -> BodyRef:
        m = cbor.expect_map(value, where, {"len", "bsz", "blocks"})
        length = cbor.get_int(m, "len", where, 0, max_length)
        bsz = cbor.get_int(m, "bsz", where, 1, 1 << 62)
        if bsz != BLOCK_BYTES:
            raise SchemaError(f"{where}.bsz: version 1 uses blocks of {BLOCK_BYTES} bytes, got {bsz}")
        raw = cbor.get_list(m, "blocks", where, min_len=1, max_len=MAX_BLOCKS)
        expected = block_count(length)
        if len(raw) != expected:
            raise SchemaError(f"{where}.blocks: {length} bytes need {expected} block(s), header lists {len(raw)}")
        blocks = []
        for i, h in enumerate(raw):
            if type(h) is not bytes or len(h) != 32:
                raise SchemaError(f"{where}.blocks[{i}]: expected a 32-byte hash")
            blocks.append(Digest(h))
        return cls(length, bsz, tuple(blocks))

    @property
    def inline(self) -> bool:
        return self.length <= INLINE_MAX_BYTES

    def sealed_size(self, index: int) -> int:
        """Bytes of sealed block ``index`` (plaintext chunk plus the AEAD tag)."""
        return plain_size(self.length, index) + AEAD_TAG_BYTES


def block_count(length: int) -> int:
    """Blocks for ``length`` plaintext bytes; an empty body still has one (sealed) block."""
    return max(1, -(-length // BLOCK_BYTES))


def plain_size(length: int, index: int) -> int:
    n = block_count(length)
    if not 0 <= index < n:
        raise IndexError(index)
    return length - BLOCK_BYTES * (n - 1) if index == n - 1 else BLOCK_BYTES


def chunk_nonce(nonce: bytes, index: int) -> bytes:
    """The 24-byte XChaCha20 nonce of chunk ``index``."""
    return nonce + struct.pack(">Q", index)


def chunk_aad(binding: bytes, index: int, final: bool) -> bytes:
    return BODY_CONTEXT + binding + struct.pack(">IB", index, 1 if final else 0)


def manifest_prefix(manifest: bytes) -> bytes:
    return struct.pack(">I", len(manifest))
