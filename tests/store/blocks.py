"""Blocks in a store, read (which ones no stored document refers to) and damaged with plain plyvel.

Deliberately independent of ``store.check``: the tests that use it must say
the same thing about a store written by any version of the code, and must
not clean up what they are counting (opening a ``Store`` sweeps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plyvel

from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, Envelope, Kind, MessageHeader

BLOCK, ENVELOPE, INFLIGHT = b"B", b"E", b"W"


def _keys(db: Any, tag: bytes) -> list[tuple[bytes, bytes]]:
    return list(db.iterator(prefix=tag))


def block_census(db: Any) -> tuple[set[bytes], set[bytes], set[bytes]]:
    """(blocks stored, blocks some stored document lists, in-flight markers) of an open plyvel DB."""
    stored = {key[1:] for key, _ in _keys(db, BLOCK)}
    referenced: set[bytes] = set()
    for _, raw in _keys(db, ENVELOPE):
        env = Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
        h = env.header
        if isinstance(h, MessageHeader) and h.kind is Kind.DOCUMENT and not env.inline:
            referenced.update(bytes(d) for d in h.body.blocks)
    markers = {key[1:] for key, _ in _keys(db, INFLIGHT)}
    return stored, referenced, markers


def orphan_blocks(db: Any) -> set[bytes]:
    """Blocks stored that no stored document lists."""
    stored, referenced, _ = block_census(db)
    return stored - referenced


def flip_a_bit_in_a_block(store: Path, *, skip_first: bool = False) -> None:
    """Flip one bit inside the largest stored block (of the rest, with ``skip_first``), where it sits in a table file.

    The store must be stopped. Compacting first puts every block in a table
    file, where LevelDB's checksum then catches the flip at the next read.
    """
    db = plyvel.DB(str(store))
    db.compact_range()
    blocks = [v for _, v in db.iterator(prefix=BLOCK)]
    block = max(blocks[1:] if skip_first else blocks, key=len)
    db.close()
    for table in store.glob("*.ldb"):
        at = table.read_bytes().find(block[:64])
        if at >= 0:
            with open(table, "r+b") as f:
                f.seek(at + 5000)
                byte = f.read(1)
                f.seek(at + 5000)
                f.write(bytes([byte[0] ^ 0x01]))
            return
    raise AssertionError("the block is not in a table file")


def orphans_at(path: Path) -> tuple[set[bytes], set[bytes]]:
    """(orphan blocks, in-flight markers) of the stopped store at ``path``."""
    db = plyvel.DB(str(path))
    try:
        stored, referenced, markers = block_census(db)
        return stored - referenced, markers
    finally:
        db.close()
