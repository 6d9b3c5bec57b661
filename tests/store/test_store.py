from __future__ import annotations

from pathlib import Path

import pytest

from protocol.agency import AgencyCode
from protocol.errors import StoreError, StoreLockedError
from protocol.ids import Digest
from store import keys as k
from store.records import Cursor, DeliveryKind, DeliveryRecord, DeliveryState, DocRecord, DocRole, HistoryRecord, InboxEntry
from store.store import Store

G22, H01, H29 = (AgencyCode.parse(c) for c in ("G22", "H01", "H29"))


def did(n: int) -> Digest:
    return Digest.of(n.to_bytes(4, "big"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "db")
    yield s  # type: ignore[misc]
    s.close()


def test_one_process_per_store(tmp_path: Path) -> None:
    with Store(tmp_path / "db"), pytest.raises(StoreLockedError, match="already running"):
        Store(tmp_path / "db")


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    b = s.batch()
    b.put(k.META + b"format", k.u64(99))
    s.write(b)
    s.close()
    with pytest.raises(StoreError, match="format 99"):
        Store(tmp_path / "db")


def test_inbox_keeps_arrival_order_across_restarts(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    for n in (5, 3, 9):
        b = s.batch()
        b.add_inbox(H01, InboxEntry(did(n), str(G22), n))
        s.write(b)
    s.close()
    s = Store(tmp_path / "db")
    b = s.batch()
    b.add_inbox(H01, InboxEntry(did(1), str(G22), 1))
    s.write(b)
    assert [e.id for _, e in s.inbox(H01)] == [did(5), did(3), did(9), did(1)]
    page = s.inbox(H01, after=2, limit=1)
    assert [(seq, e.id) for seq, e in page] == [(3, did(9))]
    seq, entry = s.inbox_entry(H01, did(9))  # type: ignore[misc]
    b = s.batch()
    b.update_inbox(H01, seq, InboxEntry(entry.id, entry.sender, entry.received_at, acked_at=77))
    s.write(b)
    assert s.inbox_entry(H01, did(9))[1].acked_at == 77  # type: ignore[index]
    assert s.inbox(H29) == [] and s.inbox_count(H01) == 4
    s.close()


def test_outbox_indexes_follow_the_record(store: Store) -> None:
    pending = DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.PENDING, attempts=1, next_at=1000)
    b = store.batch()
    b.put_delivery(G22, did(1), H01, pending, None)
    b.put_delivery(G22, did(1), H29, DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.PENDING, next_at=500), None)
    b.put_delivery(G22, did(2), H01, DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.PENDING, next_at=3000), None)
    store.write(b)
    assert [(d, i, r) for d, i, r, _ in store.due(1000)] == [(500, did(1), H29), (1000, did(1), H01)]
    assert store.next_due() == 500
    assert sorted((str(r), i.short()) for r, i, _ in store.pending()) == sorted(
        [(str(H01), did(1).short()), (str(H01), did(2).short()), (str(H29), did(1).short())]
    )
    # Rescheduled: the old retry slot disappears.
    later = DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.PENDING, attempts=2, next_at=5000)
    b = store.batch()
    b.put_delivery(G22, did(1), H01, later, pending)
    store.write(b)
    assert [i for _, i, r, _ in store.due(4000)] == [did(1), did(2)]
    # Delivered: leaves both indexes, keeps the record.
    done = DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.DELIVERED, attempts=2, delivered_at=6000, receipt=bytes(did(9)))
    b = store.batch()
    b.put_delivery(G22, did(1), H01, done, later)
    store.write(b)
    assert [i for _, i, r, _ in store.due(10_000)] == [did(1), did(2)]  # H29's and did(2)'s remain
    assert [(r, i) for r, i, _ in store.pending(H01)] == [(H01, did(2))]
    still = DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.PENDING, next_at=500)
    assert store.deliveries(G22, did(1)) == {H01: done, H29: still}
    # Key order: id bytes, then recipient.
    expected = sorted([(did(1), H01), (did(1), H29), (did(2), H01)], key=lambda p: (bytes(p[0]), str(p[1])))
    assert [(i, r) for i, r, _ in store.outbox(G22)] == expected


def test_due_passes_over_attempts_under_way_by_their_key_bytes(store: Store) -> None:
    """The delivery worker's claims stay due while they wait their turn: skipped, counted, and not in the limit."""
    b = store.batch()
    for i in range(1, 6):
        b.put_delivery(G22, did(i), H29, DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.PENDING, next_at=100 * i), None)
    store.write(b)
    under_way = {k.delivery_tail(did(1), H29), k.delivery_tail(did(3), H29)}
    due, skipped = store.due_except(1000, limit=2, skip=under_way)
    assert [i for _, i, _, _ in due] == [did(2), did(4)] and skipped == 2
    due, skipped = store.due_except(250, limit=10, skip=under_way)
    assert [i for _, i, _, _ in due] == [did(2)] and skipped == 1
    assert store.due_except(1000, limit=10, skip=frozenset())[0] == store.due(1000)


def test_history_idempotency_cursors_and_logs(store: Store) -> None:
    b = store.batch()
    for seq, code in [(2, 3), (1, 1), (3, 4)]:
        b.add_history(did(1), H01, did(100 + seq), HistoryRecord(code, "recipient", str(H01), seq, seq, seq))
    b.add_history(did(1), H29, did(200), HistoryRecord(1, "recipient", str(H29), 1, 1, 1))
    b.put_idempotency(G22, "integrator-key-1", did(1))
    for n in range(5):
        b.append_log("H01", did(n))
    b.append_log("G22", did(7))
    peer = bytes(38)
    b.put_cursor("H01", peer, Cursor(b"e" * 16, 4))
    store.write(b)
    assert [h.code for _, _, h in store.history(did(1), H01)] == [1, 3, 4]  # ordered by seq
    assert len(store.history(did(1))) == 4
    assert store.idempotent(G22, "integrator-key-1") == did(1)
    assert store.idempotent(G22, "other") is None and store.idempotent(H01, "integrator-key-1") is None
    assert store.log_range("H01", after=2, limit=2) == [(3, did(2)), (4, did(3))]
    assert store.log_shards() == {"G22": 1, "H01": 5}
    assert store.cursor("H01", peer) == Cursor(b"e" * 16, 4)


def test_envelopes_blocks_tombstones(store: Store) -> None:
    b = store.batch()
    b.put_envelope(did(1), b"env")
    b.put_block(did(2), b"block")
    b.put_doc(did(1), DocRecord(DocRole.RELAYED, str(G22), (str(H01),), 1, 2, 10, 1, False))
    b.set_awaiting(did(1), True)
    store.write(b)
    assert store.get_envelope(did(1)) == b"env" and store.get_block(did(2)) == b"block"
    assert store.awaiting() == [did(1)] and store.doc(did(1)).role is DocRole.RELAYED  # type: ignore[union-attr]
    b = store.batch()
    b.drop_envelope(did(1), 99)
    b.set_awaiting(did(1), False)
    store.write(b)
    assert not store.has_envelope(did(1)) and store.known(did(1)) and not store.known(did(3))
    assert store.awaiting() == []


def test_many_batches_one_atomic_write(store: Store) -> None:
    batches = []
    for n in range(50):
        b = store.batch()
        b.put_envelope(did(n), b"x")
        b.append_log("H01", did(n))
        batches.append(b)
    store.write(*batches, sync=True)
    assert store.log_head("H01") == 50 and all(store.has_envelope(did(n)) for n in range(50))


def test_a_failed_write_applies_nothing(store: Store) -> None:
    b = store.batch()
    b.put_envelope(did(1), b"x")
    b.ops.append((b"bad", "not bytes"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.write(b)
    assert not store.has_envelope(did(1))


def test_corrupt_records_are_store_errors(store: Store) -> None:
    b = store.batch()
    b.put(k.DOC + did(1), b"\xff\x00")
    store.write(b)
    with pytest.raises(StoreError, match="corrupt DocRecord"):
        store.doc(did(1))


def test_log_heads_show_only_written_entries(store: Store) -> None:
    """A peer reads a log up to its head: an allocated but unwritten seq must never be announced."""
    b = store.batch()
    b.append_log("H01", did(1))
    store.write(b)
    assert store.log_shards() == {"H01": 1}
    pending = store.batch()
    pending.append_log("H01", did(2))  # allocated, not written
    pending.append_log("G22", did(3))
    assert store.log_shards() == {"H01": 1} and store.log_head("H01") == 1
    store.write(pending)
    assert store.log_shards() == {"H01": 2, "G22": 1} and store.log_head("G22") == 1


def test_inflight_blocks_are_settled_by_their_commit_or_discarded(store: Store) -> None:
    made = store.inflight_blocks(2)
    for n in range(5):
        made.put(did(n), bytes([n]) * 100)
    made.flush()
    assert all(store.has_block(did(n)) for n in range(5)) and len(list(store._scan(k.INFLIGHT))) == 5
    b = store.batch()
    b.put_envelope(did(99), b"the document")
    made.settle(b)
    store.write(b)
    assert made.discard() == 0, "settled blocks belong to their document"
    assert all(store.has_block(did(n)) for n in range(5)) and not list(store._scan(k.INFLIGHT))

    failed = store.inflight_blocks(2)
    for n in range(10, 13):
        failed.put(did(n), b"x" * 10)
    assert store.has_block(did(11)) and not store.has_block(did(12)), "written two at a time"
    assert failed.discard() == 2, "the third never reached the store"
    assert not any(store.has_block(did(n)) for n in range(10, 13)) and not list(store._scan(k.INFLIGHT))
    assert store.dead_blocks_removed == 2 and store.dead_bytes_removed == 20


def test_marks_left_by_a_crash_are_swept_at_open(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    kept = s.inflight_blocks(1)
    kept.put(did(1), b"committed")
    b = s.batch()
    kept.settle(b)
    s.write(b)
    cut = s.inflight_blocks(1)
    cut.put(did(2), b"never committed")
    s.close()  # as if the process died here
    with Store(tmp_path / "db") as s:
        assert s.has_block(did(1)) and not s.has_block(did(2))
        assert (s.dead_blocks_removed, s.dead_bytes_removed) == (1, 15)
        assert not list(s._scan(k.INFLIGHT))


def test_tables_carry_a_bloom_filter_and_known_answers_through_it(tmp_path: Path) -> None:
    """Absent ids (most of what a sync page lists) are answered from each table's filter, not its blocks."""
    ids = [Digest.of(i.to_bytes(4, "big")) for i in range(2000)]
    with Store(tmp_path / "s") as s:
        b = s.batch()
        for eid in ids:
            b.put_envelope(eid, b"x" * 200)
        s.write(b, sync=False)
        s._db.compact_range()  # into table files, each written with the store's options
        assert all(s.known(eid) for eid in ids[::97])
        assert not any(s.known(Digest.of(b"absent %d" % i)) for i in range(100))
    tables = list((tmp_path / "s").glob("*.ldb"))
    assert tables and all(b"filter.leveldb.BuiltinBloomFilter2" in t.read_bytes() for t in tables)
