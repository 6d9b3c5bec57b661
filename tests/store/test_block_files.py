"""Blocks as files (store format 4, store/blocks.py): names, durability order, crash leftovers, sizes."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from protocol.ids import Digest
from store import keys as k
from store.store import Store


def block(n: int) -> tuple[Digest, bytes]:
    data = os.urandom(n)
    return Digest.of(data), data


def test_a_block_is_a_file_named_by_its_hash_and_never_a_leveldb_key(tmp_path: Path) -> None:
    with Store(tmp_path / "db") as s:
        h, data = block(70_000)
        b = s.batch()
        b.put_block(h, data)
        s.write(b)
        path = tmp_path / "db" / "blocks" / bytes(h).hex()
        assert path.read_bytes() == data and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert s.get_block(h) == data and s.block_size(h) == len(data) and s.has_block(h)
        assert list(s._db.iterator(prefix=k.BLOCK)) == []
        b = s.batch()
        b.delete_block(h)
        s.write(b)
        assert not path.exists() and s.get_block(h) is None and s.block_size(h) is None


class _Recording:
    """The store's LevelDB handle, noting each write in ``events`` (plyvel's objects take no new attributes)."""

    def __init__(self, db: Any, events: list[str]) -> None:
        self._db, self._events = db, events

    def write_batch(self, **kw: Any) -> Any:
        self._events.append(f"leveldb sync={kw.get('sync')}")
        return self._db.write_batch(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_a_sync_write_makes_every_earlier_block_durable_before_its_own_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promise LevelDB's log gave: a record committed with sync=True never outlives (a power cut) a block written
    before it. Here: the fsync of each block file, and of the directory, comes before the record's LevelDB write."""
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    with Store(tmp_path / "db") as s:
        blocks = [block(50_000) for _ in range(3)]
        for h, data in blocks:  # as the fetcher writes them: one batch each, not synced
            b = s.batch()
            b.put_block(h, data)
            s.write(b, sync=False)
        monkeypatch.setattr(os, "fsync", fsync)
        s._db = _Recording(s._db, events)  # type: ignore[assignment]
        b = s.batch()
        b.put(k.META + b"test", b"the document is complete")
        s.write(b, sync=True)
        s._db = s._db._db  # type: ignore[attr-defined]
        monkeypatch.undo()
        names = {bytes(h).hex() for h, _ in blocks}
        assert events[-1] == "leveldb sync=True", events
        assert {e.removeprefix("fsync ") for e in events[:-2]} == names, events
        assert events[-2] == "fsync blocks", "the directory (the renames) last, before the record"
        events.clear()
        s.write(s.batch(), sync=True)
        assert events == [], "blocks already durable are not synced again"


def test_half_written_blocks_a_crash_left_are_removed_at_open_and_other_files_kept(tmp_path: Path) -> None:
    with Store(tmp_path / "db"):
        pass
    d = tmp_path / "db" / "blocks"
    h, data = block(1000)
    (d / f".{bytes(h).hex()}.1a2b3c4d.tmp").write_bytes(data[:300])  # the rename never happened
    (d / "ghi-chu.txt").write_text("not ours")
    with Store(tmp_path / "db") as s:
        assert s.temporary_removed == 1
        assert sorted(p.name for p in d.iterdir()) == ["ghi-chu.txt"]
        assert s.get_block(h) is None


def test_a_short_block_file_reports_its_real_size(tmp_path: Path) -> None:
    """A power cut can leave a renamed file short on some file systems: the fetcher compares sizes (node/core.py)."""
    with Store(tmp_path / "db") as s:
        h, data = block(4096)
        b = s.batch()
        b.put_block(h, data)
        s.write(b, sync=False)
        os.truncate(tmp_path / "db" / "blocks" / bytes(h).hex(), 100)
        assert s.block_size(h) == 100


def test_disk_bytes_counts_block_files_once_each(tmp_path: Path) -> None:
    with Store(tmp_path / "db") as s:
        base = s.disk_bytes()
        h1, d1 = block(10_000)
        h2, d2 = block(20_000)
        b = s.batch()
        b.put_block(h1, d1)
        s.write(b, sync=False)
        assert s.disk_bytes() - base >= 10_000  # counted here (LevelDB's files may grow too: its log)
        blocks_before = s.blocks.total_bytes()
        for _ in range(2):  # the same block twice (fetched from two peers): one file
            b = s.batch()
            b.put_block(h2, d2)
            s.write(b, sync=False)
        assert s.blocks.total_bytes() == blocks_before + 20_000
        b = s.batch()
        b.delete_block(h1)
        s.write(b, sync=False)
        assert s.blocks.total_bytes() == 20_000 == sum(size for _, size in s.blocks.scan())
