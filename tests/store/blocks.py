"""Blocks in a store, read (which ones no stored document refers to) and damaged with plain plyvel and file I/O.

Deliberately independent of ``store.check`` and ``store.blocks``: the tests
that use it must say the same thing about a store written by any version of
the code (blocks as files in ``blocks/`` since format 4, in keyspace ``B``
before), and must not clean up what they are counting (opening a ``Store``
sweeps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plyvel

from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, Envelope, Kind, MessageHeader

BLOCK, ENVELOPE, INFLIGHT = b"B", b"E", b"W"


def _keys(db: Any, tag: bytes) -> list[tuple[bytes, bytes]]:
    return list(db.iterator(prefix=tag))


def _files(store: Path) -> dict[bytes, Path]:
    d = store / "blocks"
    return {bytes.fromhex(p.name): p for p in d.iterdir() if len(p.name) == 64} if d.is_dir() else {}


def block_census(db: Any, store: Path) -> tuple[set[bytes], set[bytes], set[bytes]]:
    """(blocks stored, blocks some stored document lists, in-flight markers) of the open plyvel DB of ``store``."""
    stored = {key[1:] for key, _ in _keys(db, BLOCK)} | set(_files(store))
    referenced: set[bytes] = set()
    for _, raw in _keys(db, ENVELOPE):
        env = Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
        h = env.header
        if isinstance(h, MessageHeader) and h.kind is Kind.DOCUMENT and not env.inline:
            referenced.update(bytes(d) for d in h.body.blocks)
    markers = {key[1:] for key, _ in _keys(db, INFLIGHT)}
    return stored, referenced, markers


def orphan_blocks(store: Any) -> set[bytes]:
    """Blocks an open ``Store`` holds that no stored document lists."""
    stored, referenced, _ = block_census(store._db, store.path)
    return stored - referenced


def flip_a_bit_in_a_block(store: Path) -> bytes:
    """Flip one bit inside the largest block file of the stopped store; returns its hash."""
    files = _files(store)
    h, path = max(files.items(), key=lambda item: item[1].stat().st_size)
    with open(path, "r+b") as f:
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes([byte[0] ^ 0x01]))
    return h


def flip_a_bit_in_a_value(store: Path, tag: bytes) -> None:
    """Flip one bit inside the largest value of keyspace ``tag``, where it sits in a table file.

    The store must be stopped. Compacting first puts every record in a table
    file, where LevelDB's checksum then catches the flip at the next read.
    """
    db = plyvel.DB(str(store))
    db.compact_range()
    value = max((v for _, v in db.iterator(prefix=tag)), key=len)
    db.close()
    assert len(value) >= 256, "the value is too short to find in a table"
    for table in store.glob("*.ldb"):
        data = table.read_bytes()
        # Tables are Snappy-compressed: look for a run of the value that was stored as it is (random bytes are).
        for offset in range(len(value) // 2, len(value) - 32, 8):
            at = data.find(value[offset : offset + 32])
            if at >= 0:
                with open(table, "r+b") as f:
                    f.seek(at + 16)
                    byte = f.read(1)
                    f.seek(at + 16)
                    f.write(bytes([byte[0] ^ 0x01]))
                return
    raise AssertionError("the value is not in a table file")


def orphans_at(path: Path) -> tuple[set[bytes], set[bytes]]:
    """(orphan blocks, in-flight markers) of the stopped store at ``path``."""
    db = plyvel.DB(str(path))
    try:
        stored, referenced, markers = block_census(db, path)
        return stored - referenced, markers
    finally:
        db.close()
