"""store/check.py: what `truc store check`, `gc` and `repair` find and fix, on real stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from identity.provision import DeterministicRng
from identity.sealing import FileSource, seal_document
from protocol.agency import AgencyCode
from protocol.document import DocumentMeta
from protocol.envelope import MessageHeader
from protocol.errors import StoreCorruptError
from protocol.ids import Digest
from store import check as sc
from store import keys as k
from store.records import DeliveryKind, DeliveryRecord, DeliveryState, DocRecord, DocRole, InboxEntry
from store.store import DAMAGED_FILE, Store
from tests.conftest import NET, NOW, Net

G22, H01 = AgencyCode.parse("000.00.00.G22"), AgencyCode.parse("000.00.00.H01")


def stored_document(store: Store, net: Net, n: int) -> tuple[Digest, list[Digest]]:
    """A received document with blocks, stored as the engine stores it (envelope, record, log, inbox)."""
    blocks: dict[Digest, bytes] = {}
    env, _ = seal_document(
        DocumentMeta(subject=f"Văn bản {n}"),
        [FileSource("a.bin", "application/octet-stream", data=os.urandom(2_200_000))],
        net=NET,
        sender=net.k(str(G22)),
        recipients=[net.trust.recipient(H01)],
        at=NOW,
        rng=DeterministicRng(f"doc-{n}".encode()),
        on_block=blocks.__setitem__,
    )
    h = env.header
    assert isinstance(h, MessageHeader) and len(h.body.blocks) > 1
    b = store.batch()
    b.put_envelope(env.id, env.encode())
    b.append_log("H01", env.id)
    for d, block in blocks.items():
        b.put_block(d, block)
    b.put_doc(env.id, DocRecord(DocRole.RECEIVED, str(G22), (str(H01),), NOW, NOW, h.body.length, len(blocks), True))
    b.add_inbox(H01, InboxEntry(env.id, str(G22), NOW))
    store.write(b)
    return env.id, list(h.body.blocks)


def sent_document(store: Store, net: Net, n: int) -> Digest:
    """A document authored here, pending towards H01 (outbox and its two indexes)."""
    doc, _ = stored_document(store, net, 100 + n)
    b = store.batch()
    b.put_delivery(G22, doc, H01, DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.PENDING, next_at=NOW + 1000), None)
    store.write(b)
    return doc


def test_a_sound_store_checks_clean_and_records_the_audit(tmp_path: Path, net: Net) -> None:
    with Store(tmp_path / "db") as s:
        stored_document(s, net, 1)
        sent_document(s, net, 2)
    r = sc.check(tmp_path / "db", now=NOW)
    assert r.clean and r.opened and r.format == 4, r.damage + r.lost
    assert r.records["documents"] == 2 and r.records["blocks"] == 6 and r.records["outbox"] == 1
    with Store(tmp_path / "db") as s:
        audit = s.audit()
        assert audit is not None and (audit.at, audit.blocks, audit.garbage_blocks) == (NOW, 6, 0)


def test_garbage_is_counted_not_called_damage_and_gc_removes_it(tmp_path: Path, net: Net) -> None:
    with Store(tmp_path / "db") as s:
        doc, blocks = stored_document(s, net, 1)
        b = s.batch()
        b.put_block(Digest.of(b"left by an old failed submit"), b"left by an old failed submit")
        s.write(b)
        cut = s.inflight_blocks(1)
        cut.put(Digest.of(b"a crash mid-seal"), b"a crash mid-seal")
    r = sc.check(tmp_path / "db", now=NOW)
    assert r.clean and (r.garbage_blocks, r.garbage_bytes, r.inflight_blocks) == (1, 28, 1)
    with Store(tmp_path / "db", offline=True) as s:  # offline: opening does not sweep the mark
        audit = s.audit()
        assert audit is not None and audit.garbage_blocks == 1
    after, removed, size = sc.collect_garbage(tmp_path / "db", now=NOW + 1)
    assert (removed, size) == (2, 28 + 16)
    assert after.clean and after.garbage_blocks == 0 and after.inflight_blocks == 0
    with Store(tmp_path / "db") as s:
        assert all(s.has_block(d) for d in blocks) and s.doc(doc) is not None


def test_inconsistencies_are_found_and_repair_makes_the_store_consistent(tmp_path: Path, net: Net) -> None:
    db = tmp_path / "db"
    with Store(db) as s:
        gone, _ = stored_document(s, net, 1)
        short, short_blocks = stored_document(s, net, 2)
        sent = sent_document(s, net, 3)
        b = s.batch()
        b.delete(k.ENVELOPE + gone)  # a document record without its envelope
        b.delete_block(short_blocks[0])  # a complete document missing a block
        b.delete(k.INBOX_BY_ID + k.code(H01) + short)  # an inbox entry without its index
        b.delete(k.RETRY + k.u64(NOW + 1000) + sent + k.code(H01))  # pending, never retried
        b.set_awaiting(Digest.of(b"nothing"), True)  # waiting for a document that does not exist
        b.put(k.DOC + Digest.of(b"junk"), b"\xa1\x00")  # a record that does not decode
        b.put(b"Z" + bytes(8), b"")  # a keyspace this version does not know
        b.put(k.STATUS_ACK + k.code(H01) + bytes(32), b"\x01")  # an SDK status acknowledgement of the wrong length
        s.write(b)
    r = sc.check(db, now=NOW)
    assert not r.clean
    text = "\n".join(r.damage)
    for what in (
        "its envelope is not stored",
        "1 of its",
        "is not indexed",
        "pending but not scheduled",
        "no such incomplete document",
        "corrupt DocRecord",
        "unknown keyspace b'Z'",
        "status acknowledgements: a key or value of the wrong length",
    ):
        assert what in text, f"{what!r} not found in:\n{text}"
    assert r.lost_count == 2, r.lost  # the envelope gone: its sync log entry and inbox entry point nowhere
    assert (db / DAMAGED_FILE).exists(), "a damaged store is marked, so the node does not start on it"

    out = sc.repair(db, now=NOW, backup=tmp_path / "backup")
    assert (tmp_path / "backup" / "CURRENT").exists()
    assert out.repaired and out.after is not None and out.cursors_reset
    assert out.after.damage_count == 0 and out.after.sound, out.after.damage
    assert out.after.lost_count == 2 and not out.after.clean, "what the store does not have, repair cannot invent"
    assert not (db / DAMAGED_FILE).exists(), "sound after the repair: the node may start (and fetch what is lost)"
    fixes = {"refetch", "doc_without_envelope", "inbox_index", "reschedule", "stray_awaiting", "delete", "unknown"}
    assert fixes <= set(out.fixed), out.fixed
    with Store(db, offline=True) as s:
        rec = s.doc(short)
        assert rec is not None and not rec.complete and short in s.awaiting()  # the fetcher gets it again
        assert s.doc(gone) is None and s.inbox_entry(H01, short) is not None
        assert [d for _, d, _, _ in s.due(NOW + 1000)] == [sent]


def test_gc_refuses_a_damaged_store(tmp_path: Path, net: Net) -> None:
    with Store(tmp_path / "db") as s:
        doc, _ = stored_document(s, net, 1)
        b = s.batch()
        b.delete(k.ENVELOPE + doc)  # its blocks now look unreferenced: they are not garbage
        s.write(b)
    with pytest.raises(StoreCorruptError, match="repair it first"):
        sc.collect_garbage(tmp_path / "db", now=NOW)


def test_a_store_whose_current_is_gone_is_reported_and_repaired(tmp_path: Path, net: Net) -> None:
    db = tmp_path / "db"
    with Store(db) as s:
        doc, blocks = stored_document(s, net, 1)
    with Store(db):
        pass  # the data into a table
    (db / "CURRENT").unlink()
    r = sc.check(db, now=NOW)
    assert not r.opened and not r.clean and "CURRENT" in r.damage[0]
    out = sc.repair(db, now=NOW, backup=None)
    assert out.after is not None and out.after.clean, out.after
    assert not out.lost_records
    with Store(db) as s:
        assert s.doc(doc) is not None and all(s.has_block(d) for d in blocks)


def test_a_store_that_checks_sound_is_not_touched_by_repair(tmp_path: Path, net: Net) -> None:
    with Store(tmp_path / "db") as s:
        stored_document(s, net, 1)
    (tmp_path / "db" / DAMAGED_FILE).write_text("a transient read error\n")
    out = sc.repair(tmp_path / "db", now=NOW, backup=tmp_path / "backup")
    assert out.before.clean and not out.repaired and not (tmp_path / "backup").exists()
    assert not (tmp_path / "db" / DAMAGED_FILE).exists(), "a sound check clears the damage mark"
