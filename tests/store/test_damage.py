"""A damaged store, a foreign store, an unwritable store (issue 10, item 5 and item 10).

Real LevelDB files damaged the way disks and people damage them: CURRENT
deleted, a table truncated, a bit flipped in a value or in a table's index,
the directory of another node, a directory this user may not write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import plyvel
import pytest

from protocol.agency import AgencyCode
from protocol.errors import StoreCorruptError, StoreError, StoreForeignError, StoreLockedError, StoreNotWritableError
from protocol.ids import Digest
from store import keys as k
from store.records import DocRecord, DocRole, InboxEntry
from store.store import FORMAT_VERSION, Owner, Store

ROOT = Path(__file__).resolve().parents[2]
G22, H01 = AgencyCode.parse("G22"), AgencyCode.parse("H01")
ME = Owner(network="truc-test", peer_id="12D3KooWMe")


def filled(path: Path, docs: int = 300) -> dict[Digest, bytes]:
    """A store whose data sits in table files (.ldb), not only in the log, as in a store that has lived.

    Each open turns the previous run's log into a table: the metadata and an
    inbox end up in one table, large values (as envelopes, raw bytes the
    store does not decode; blocks are files since format 4) and document
    records in another. Returns the large values by key.
    """
    blocks = {}
    ids = [Digest.of(i.to_bytes(4, "big")) for i in range(docs)]
    with Store(path) as s:
        b = s.batch()
        for i, doc in enumerate(ids):
            b.add_inbox(H01, InboxEntry(doc, str(G22), i))
        s.write(b)
    with Store(path) as s:
        b = s.batch()
        for _ in range(8):
            value = os.urandom(64 << 10)
            blocks[Digest.of(value)] = value
            b.put_envelope(Digest.of(value), value)
        for i, doc in enumerate(ids):
            b.put_doc(doc, DocRecord(DocRole.RECEIVED, str(G22), (str(H01),), i, i, 10, 0, True, subject="Về việc " * 8))
        s.write(b)
    with Store(path):
        pass
    return blocks


def tables(path: Path) -> list[Path]:
    """The table files, the one holding the data first."""
    found = sorted(path.glob("*.ldb"), key=lambda p: -p.stat().st_size)
    assert len(found) >= 2, "the data is not in its own table file; the test would prove nothing"
    return found


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))


def test_a_store_without_current_is_refused_and_its_data_kept(tmp_path: Path) -> None:
    db = tmp_path / "store"
    blocks = filled(db)
    before = {p.name: p.stat().st_size for p in tables(db)}
    current = (db / "CURRENT").read_bytes()
    (db / "CURRENT").unlink()
    with pytest.raises(StoreCorruptError, match="CURRENT"):
        Store(db)
    assert {p.name: p.stat().st_size for p in tables(db)} == before, "the old tables were deleted"
    (db / "CURRENT").write_bytes(current)  # what truc store repair (or a backup) gives back
    with Store(db) as s:
        assert all(s.get_envelope(h) == v for h, v in blocks.items())
        assert s.inbox_count(H01) == 300


def test_a_directory_with_other_files_is_not_taken_over(tmp_path: Path) -> None:
    db = tmp_path / "store"
    db.mkdir()
    (db / "ghi-chu.txt").write_text("không phải kho dữ liệu")
    with pytest.raises(StoreError, match="not empty"):
        Store(db)
    assert sorted(p.name for p in db.iterdir()) == ["ghi-chu.txt"]


def test_a_store_is_created_in_an_absent_or_empty_directory(tmp_path: Path) -> None:
    with Store(tmp_path / "absent") as s:
        assert s.inbox_count(H01) == 0
    (tmp_path / "empty").mkdir()
    with Store(tmp_path / "empty"):
        pass
    # A creation cut short before LevelDB wrote CURRENT leaves only its lock and info log.
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "LOCK").write_bytes(b"")
    (tmp_path / "cut" / "LOG").write_text("leveldb info log\n")
    with Store(tmp_path / "cut"):
        pass
    with pytest.raises(StoreError, match="does not exist"), Store(tmp_path / "nowhere", create=False):
        pass


def test_a_truncated_table_is_refused_at_open(tmp_path: Path) -> None:
    db = tmp_path / "store"
    filled(db)
    table = tables(db)[0]
    os.truncate(table, table.stat().st_size - 4096)
    with pytest.raises(StoreCorruptError, match=table.name):
        Store(db)


def test_a_flipped_bit_in_a_value_is_caught_when_read_and_remembered(tmp_path: Path) -> None:
    db = tmp_path / "store"
    blocks = filled(db)
    h, value = next(iter(blocks.items()))
    for table in tables(db):
        at = table.read_bytes().find(value[:64])
        if at >= 0:
            flip(table, at + 1000)
            break
    else:
        raise AssertionError("the value's bytes are not in any table")
    s = Store(db)  # a flip inside a value cannot be seen without reading it
    try:
        with pytest.raises(StoreCorruptError, match="checksum"):
            s.get_envelope(h)
    finally:
        s.close()
    # Once seen, the damage is remembered: the node does not start on it again.
    with pytest.raises(StoreCorruptError, match="found damaged"):
        Store(db)


def test_a_table_that_cannot_be_opened_is_not_read_as_missing_records(tmp_path: Path) -> None:
    """Plain plyvel iterators end quietly where a table cannot be opened: a keyspace would look empty."""
    db = tmp_path / "store"
    filled(db)
    table = tables(db)[0]
    flip(table, table.stat().st_size - 4)  # the footer's magic number: the table no longer opens
    with pytest.raises(StoreCorruptError, match="not an sstable"), Store(db) as s:  # at open, or at the first read
        n = sum(1 for _ in s.docs())
        raise AssertionError(f"read {n} of 300 documents without an error")


def test_another_nodes_store_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "store"
    with Store(db, owner=ME):
        pass
    with pytest.raises(StoreForeignError, match="12D3KooWOther") as raised, Store(db, owner=Owner("truc-test", "12D3KooWOther")):
        pass
    assert "12D3KooWMe" in raised.value.message
    with pytest.raises(StoreForeignError, match="truc-other"), Store(db, owner=Owner("truc-other", ME.peer_id)):
        pass
    with Store(db, owner=ME), Store(tmp_path / "offline-tool-elsewhere"):
        pass


@pytest.mark.parametrize("old", [1, 2, 3])
def test_a_store_of_a_previous_format_is_migrated_in_place(tmp_path: Path, old: int) -> None:
    db = tmp_path / "store"
    filled(db)
    # As an older version wrote it: format 1 had no owner; format 2 had no edXML keyspaces (G, J);
    # formats 1-3 kept blocks in LevelDB (keyspace B), and had no block files.
    raw = plyvel.DB(str(db))
    raw.put(k.META + b"format", k.u64(old))
    if old == 1:
        raw.delete(k.META + b"owner")
    epoch = raw.get(k.META + b"epoch")
    legacy = {Digest.of(v): v for v in (os.urandom(70_000) for _ in range(5))}
    for h, v in legacy.items():
        raw.put(k.BLOCK + h, v)
    raw.close()
    shutil.rmtree(db / "blocks")
    with Store(db, create=False, offline=True) as s:  # a tool on a store no node has opened since: reads keyspace B
        assert all(s.get_block(h) == v for h, v in legacy.items())
    assert not (db / "blocks").exists(), "an offline tool created the block directory"
    with Store(db, owner=ME) as s:
        assert s.epoch == epoch and s.inbox_count(H01) == 300
        assert s.owner == ME
        assert s.blocks_moved == 5
        assert all(s.get_block(h) == v and s.block_size(h) == len(v) for h, v in legacy.items())
    assert sorted(p.name for p in (db / "blocks").iterdir()) == sorted(bytes(h).hex() for h in legacy)
    raw = plyvel.DB(str(db))
    assert k.read_u64(raw.get(k.META + b"format")) == FORMAT_VERSION == 4
    assert list(raw.iterator(prefix=k.BLOCK)) == [], "the blocks are files now, not keys"
    raw.close()
    with pytest.raises(StoreForeignError), Store(db, owner=Owner("truc-test", "12D3KooWOther")):
        pass


def test_one_process_per_store_still_says_so(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    code = f"from store.store import Store\ntry:\n    Store({db!r})\nexcept Exception as e:\n    print(type(e).__name__)"
    with Store(tmp_path / "db"):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "StoreLockedError", out.stderr
    with Store(tmp_path / "db"), pytest.raises(StoreLockedError):
        Store(tmp_path / "db")


def _nobody() -> list[str] | None:
    """A command prefix that runs a child as an unprivileged user, when this test runs as root."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.timeout(60)
def test_an_unwritable_store_is_not_reported_as_in_use(tmp_path: Path) -> None:
    """A store owned by another user (or chmod 0555) says so, not "in use by another process"."""
    probe = "from store.store import Store\ntry:\n    Store({path!r})\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    if os.geteuid() != 0:
        db = tmp_path / "store"
        filled(db, docs=1)
        db.chmod(0o555)
        try:
            with pytest.raises(StoreNotWritableError, match="not writable"):
                Store(db)
        finally:
            db.chmod(0o755)
        return
    # Root writes anywhere: run the opener as "nobody" on a store root owns, in a directory nobody can reach.
    prefix = _nobody()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot open a store as another user here")
    base = Path(tempfile.mkdtemp(prefix="truc-unwritable-"))
    try:
        base.chmod(0o755)
        db = base / "store"
        filled(db, docs=1)
        out = subprocess.run(
            [*prefix, sys.executable, "-c", probe.format(path=str(db))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("StoreNotWritableError "), out.stdout
        assert "not writable" in out.stdout and str(db) in out.stdout
    finally:
        shutil.rmtree(base)


def test_running_out_of_file_descriptors_is_not_called_damage(tmp_path: Path) -> None:
    """Damage stops the node and keeps it stopped; a shortage of the process must not do that."""
    with Store(tmp_path / "db") as s:
        err = s._corrupt(plyvel.IOError(b"IO error: /x/000012.ldb: Too many open files"))
        assert type(err) is StoreError and not (tmp_path / "db" / "TRUC-DAMAGED").exists()
        err = s._corrupt(plyvel.IOError(b"IO error: /x/000012.ldb: Input/output error"))
        assert isinstance(err, StoreCorruptError) and (tmp_path / "db" / "TRUC-DAMAGED").exists()
