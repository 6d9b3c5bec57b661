"""The node's store: one LevelDB (plyvel) database, synchronous API.

Reads are methods of :class:`Store`. Every change goes through a
:class:`Batch`, and :meth:`Store.write` applies one or many batches in one
atomic ``write_batch(transaction=True)``; with ``sync=True`` that is one
fsync for all of them (group commit: the node hands every batch that queued
up during the previous fsync to a single call). Data is durable once
``write(..., sync=True)`` returns, and not before.

Sequence numbers (inbox order, sync log order) are allocated in memory when a
batch is built, from counters loaded at open; a batch that is never written
leaves a gap, which readers tolerate. Build batches from one thread.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import plyvel

from protocol.agency import AgencyCode
from protocol.errors import StoreError, StoreLockedError
from protocol.ids import Digest

from . import keys as k
from .records import Cursor, DeliveryRecord, DeliveryState, DocRecord, HistoryRecord, InboxEntry

FORMAT_VERSION = 1
EPOCH_BYTES = 16
Rng = Callable[[int], bytes]


class Store:
    def __init__(self, path: Path | str, *, rng: Rng = os.urandom, create: bool = True) -> None:
        """Open (or create) the store; raises StoreLockedError if another process has it."""
        self.path = Path(path)
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=create, max_open_files=256)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise StoreLockedError(str(self.path)) from None
            raise StoreError(f"{self.path}: {exc}") from None
        except plyvel.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        fmt = self._db.get(k.META + b"format")
        if fmt is None:
            epoch = rng(EPOCH_BYTES)
            with self._db.write_batch(transaction=True, sync=True) as wb:
                wb.put(k.META + b"format", k.u64(FORMAT_VERSION))
                wb.put(k.META + b"epoch", epoch)
        elif k.read_u64(fmt) != FORMAT_VERSION:
            self._db.close()
            raise StoreError(f"{self.path} has store format {k.read_u64(fmt)}; this version reads format {FORMAT_VERSION}")
        epoch_raw = self._db.get(k.META + b"epoch")
        assert epoch_raw is not None
        self.epoch: bytes = epoch_raw
        self._inbox_seq: dict[AgencyCode, int] = {}
        self._log_seq: dict[str, int] = {}
        self._heads: dict[str, int] | None = None  # committed log heads, kept up to date by write()

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------

    def batch(self) -> Batch:
        return Batch(self)

    def write(self, *batches: Batch, sync: bool = True) -> None:
        """Apply ``batches`` atomically, all or nothing; durable on return when ``sync``."""
        try:
            with self._db.write_batch(transaction=True, sync=sync) as wb:
                for b in batches:
                    for key, value in b.ops:
                        if value is None:
                            wb.delete(key)
                        else:
                            wb.put(key, value)
        except plyvel.Error as exc:
            raise StoreError(f"write failed: {exc}") from None
        if self._heads is not None:
            for b in batches:
                for shard, seq in b.log_appends:
                    if seq > self._heads.get(shard, 0):
                        self._heads[shard] = seq

    # --- small helpers ---------------------------------------------------------------

    def _get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def _scan(self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iterator(
            start=start if start is not None else prefix,
            stop=k.prefix_end(prefix),
            reverse=reverse,
        )
        with it:
            yield from it

    def _last_key(self, prefix: bytes) -> bytes | None:
        for key, _ in self._scan(prefix, reverse=True):
            return key
        return None

    def next_inbox_seq(self, code: AgencyCode) -> int:
        if code not in self._inbox_seq:
            last = self._last_key(k.INBOX + k.code(code))
            self._inbox_seq[code] = k.read_u64(last, 1 + 13) if last else 0
        self._inbox_seq[code] += 1
        return self._inbox_seq[code]

    def next_log_seq(self, shard: str) -> int:
        if shard not in self._log_seq:
            self._log_seq[shard] = self.log_head(shard)
        self._log_seq[shard] += 1
        return self._log_seq[shard]

    # --- envelopes and blocks ------------------------------------------------------

    def get_envelope(self, env_id: bytes) -> bytes | None:
        return self._get(k.ENVELOPE + env_id)

    def has_envelope(self, env_id: bytes) -> bool:
        return self._get(k.ENVELOPE + env_id) is not None

    def known(self, env_id: bytes) -> bool:
        """Stored now, or stored once and dropped: either way a copy is a duplicate."""
        return self.has_envelope(env_id) or self._get(k.TOMBSTONE + env_id) is not None

    def get_block(self, h: bytes) -> bytes | None:
        return self._get(k.BLOCK + h)

    def has_block(self, h: bytes) -> bool:
        return self._get(k.BLOCK + h) is not None

    def doc(self, doc_id: bytes) -> DocRecord | None:
        raw = self._get(k.DOC + doc_id)
        return DocRecord.decode(raw) if raw is not None else None

    def docs(self) -> Iterator[tuple[Digest, DocRecord]]:
        for key, value in self._scan(k.DOC):
            yield Digest(key[1:]), DocRecord.decode(value)

    def awaiting(self) -> list[Digest]:
        """Documents stored whose blocks are not all here yet (resume after restart)."""
        return [Digest(key[1:]) for key, _ in self._scan(k.AWAITING)]

    def parked(self, doc_id: bytes) -> list[Digest]:
        """Statuses that arrived before the document they are about."""
        return [Digest(key[33:65]) for key, _ in self._scan(k.PARKED + doc_id)]

    def parked_all(self) -> Iterator[tuple[Digest, Digest]]:
        """Every parked status: (document id, status id), for expiry and per-sender bounds."""
        for key, _ in self._scan(k.PARKED):
            yield Digest(key[1:33]), Digest(key[33:65])

    # --- inbox ---------------------------------------------------------------------

    def inbox(self, code: AgencyCode, *, after: int = 0, limit: int = 100) -> list[tuple[int, InboxEntry]]:
        prefix = k.INBOX + k.code(code)
        out = []
        for key, value in self._scan(prefix, start=prefix + k.u64(after + 1)):
            out.append((k.read_u64(key, 14), InboxEntry.decode(value)))
            if len(out) >= limit:
                break
        return out

    def inbox_entry(self, code: AgencyCode, doc_id: bytes) -> tuple[int, InboxEntry] | None:
        raw = self._get(k.INBOX_BY_ID + k.code(code) + doc_id)
        if raw is None:
            return None
        seq = k.read_u64(raw)
        value = self._get(k.INBOX + k.code(code) + raw)
        if value is None:
            raise StoreError(f"inbox index of {code} points at a missing entry")
        return seq, InboxEntry.decode(value)

    def inbox_count(self, code: AgencyCode) -> int:
        return sum(1 for _ in self._scan(k.INBOX_BY_ID + k.code(code)))

    # --- outbox --------------------------------------------------------------------

    def delivery(self, sender: AgencyCode, env_id: bytes, recipient: AgencyCode) -> DeliveryRecord | None:
        raw = self._get(k.OUTBOX + k.code(sender) + env_id + k.code(recipient))
        return DeliveryRecord.decode(raw) if raw is not None else None

    def deliveries(self, sender: AgencyCode, env_id: bytes) -> dict[AgencyCode, DeliveryRecord]:
        prefix = k.OUTBOX + k.code(sender) + env_id
        return {k.parse_code(key[46:59]): DeliveryRecord.decode(v) for key, v in self._scan(prefix)}

    def outbox(self, sender: AgencyCode) -> Iterator[tuple[Digest, AgencyCode, DeliveryRecord]]:
        for key, v in self._scan(k.OUTBOX + k.code(sender)):
            yield Digest(key[14:46]), k.parse_code(key[46:59]), DeliveryRecord.decode(v)

    def due(self, now: int, *, limit: int = 1000) -> list[tuple[int, Digest, AgencyCode, AgencyCode]]:
        """Deliveries whose next attempt is due: (due ms, envelope id, recipient, sender)."""
        out: list[tuple[int, Digest, AgencyCode, AgencyCode]] = []
        for key, sender in self._scan(k.RETRY):
            due = k.read_u64(key, 1)
            if due > now or len(out) >= limit:
                break
            out.append((due, Digest(key[9:41]), k.parse_code(key[41:54]), k.parse_code(sender)))
        return out

    def next_due(self) -> int | None:
        for key, _ in self._scan(k.RETRY):
            return k.read_u64(key, 1)
        return None

    def pending(self, recipient: AgencyCode | None = None) -> Iterator[tuple[AgencyCode, Digest, AgencyCode]]:
        """Pending deliveries: (recipient, envelope id, sender), grouped by recipient."""
        prefix = k.PENDING + (k.code(recipient) if recipient is not None else b"")
        for key, sender in self._scan(prefix):
            yield k.parse_code(key[1:14]), Digest(key[14:46]), k.parse_code(sender)

    # --- statuses ------------------------------------------------------------------

    def history(self, doc_id: bytes, recipient: AgencyCode | None = None) -> list[tuple[AgencyCode, Digest, HistoryRecord]]:
        prefix = k.HISTORY + doc_id + (k.code(recipient) if recipient is not None else b"")
        return [(k.parse_code(key[33:46]), Digest(key[50:82]), HistoryRecord.decode(v)) for key, v in self._scan(prefix)]

    # --- idempotency ---------------------------------------------------------------

    @staticmethod
    def idempotency_hash(key: str) -> bytes:
        return hashlib.sha256(key.encode("utf-8")).digest()

    def idempotent(self, sender: AgencyCode, key: str) -> Digest | None:
        raw = self._get(k.IDEMPOTENCY + k.code(sender) + self.idempotency_hash(key))
        return Digest(raw) if raw is not None else None

    # --- sync log and cursors --------------------------------------------------------

    def log_head(self, shard: str) -> int:
        if self._heads is not None:
            return self._heads.get(shard, 0)
        last = self._last_key(k.LOG + k.shard(shard))
        return k.read_u64(last, 4) if last else 0

    def log_range(self, shard: str, *, after: int, limit: int) -> list[tuple[int, Digest]]:
        prefix = k.LOG + k.shard(shard)
        out = []
        for key, value in self._scan(prefix, start=prefix + k.u64(after + 1)):
            out.append((k.read_u64(key, 4), Digest(value)))
            if len(out) >= limit:
                break
        return out

    def log_shards(self) -> dict[str, int]:
        """Every shard with a log here, and its head (only what is written: never an allocated, unwritten seq)."""
        if self._heads is None:
            self._heads = self._scan_heads()
        return dict(self._heads)

    def _scan_heads(self) -> dict[str, int]:
        heads: dict[str, int] = {}
        start = k.LOG
        while True:
            key = next((key for key, _ in self._scan(k.LOG, start=start)), None)
            if key is None:
                return heads
            shard = key[1:4].decode("ascii")
            heads[shard] = self.log_head(shard)
            start = k.prefix_end(k.LOG + key[1:4])

    def cursor(self, shard: str, peer: bytes) -> Cursor | None:
        raw = self._get(k.CURSOR + k.shard(shard) + k.peer(peer))
        return Cursor.decode(raw) if raw is not None else None

    # --- directory -----------------------------------------------------------------

    def directory_links(self) -> list[bytes]:
        return [v for _, v in self._scan(k.DIRECTORY)]

    # --- size ----------------------------------------------------------------------

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


class Batch:
    """A set of changes applied together by :meth:`Store.write`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ops: list[tuple[bytes, bytes | None]] = []
        self.log_appends: list[tuple[str, int]] = []
        self.after_write: list[Callable[[], None]] = []  # run by whoever writes the batch, once it is written

    def __len__(self) -> int:
        return len(self.ops)

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None))

    def put_envelope(self, env_id: bytes, data: bytes) -> None:
        self.put(k.ENVELOPE + env_id, data)

    def drop_envelope(self, env_id: bytes, at: int) -> None:
        """Remove a stored envelope, keeping a tombstone so copies stay duplicates."""
        self.delete(k.ENVELOPE + env_id)
        self.put(k.TOMBSTONE + env_id, k.u64(at))

    def put_block(self, h: bytes, data: bytes) -> None:
        self.put(k.BLOCK + h, data)

    def delete_block(self, h: bytes) -> None:
        self.delete(k.BLOCK + h)

    def put_doc(self, doc_id: bytes, rec: DocRecord) -> None:
        self.put(k.DOC + doc_id, rec.encode())

    def set_awaiting(self, doc_id: bytes, waiting: bool) -> None:
        if waiting:
            self.put(k.AWAITING + doc_id, b"")
        else:
            self.delete(k.AWAITING + doc_id)

    def park(self, doc_id: bytes, status_id: bytes) -> None:
        self.put(k.PARKED + doc_id + status_id, b"")

    def unpark(self, doc_id: bytes, status_id: bytes) -> None:
        self.delete(k.PARKED + doc_id + status_id)

    def delete_doc(self, doc_id: bytes) -> None:
        self.delete(k.DOC + doc_id)

    def add_inbox(self, code: AgencyCode, entry: InboxEntry) -> int:
        seq = self.store.next_inbox_seq(code)
        self.put(k.INBOX + k.code(code) + k.u64(seq), entry.encode())
        self.put(k.INBOX_BY_ID + k.code(code) + entry.id, k.u64(seq))
        return seq

    def update_inbox(self, code: AgencyCode, seq: int, entry: InboxEntry) -> None:
        self.put(k.INBOX + k.code(code) + k.u64(seq), entry.encode())

    def put_delivery(
        self,
        sender: AgencyCode,
        env_id: bytes,
        recipient: AgencyCode,
        rec: DeliveryRecord,
        old: DeliveryRecord | None,
    ) -> None:
        """Write an outbox record and keep the pending and retry indexes in step with it."""
        tail = env_id + k.code(recipient)
        self.put(k.OUTBOX + k.code(sender) + tail, rec.encode())
        if old is not None and old.state is DeliveryState.PENDING:
            self.delete(k.RETRY + k.u64(old.next_at) + tail)
        if rec.state is DeliveryState.PENDING:
            self.put(k.RETRY + k.u64(rec.next_at) + tail, k.code(sender))
            self.put(k.PENDING + k.code(recipient) + env_id, k.code(sender))
        else:
            self.delete(k.PENDING + k.code(recipient) + env_id)

    def add_history(self, doc_id: bytes, recipient: AgencyCode, status_id: bytes, rec: HistoryRecord) -> None:
        self.put(k.HISTORY + doc_id + k.code(recipient) + k.u32(rec.seq) + status_id, rec.encode())

    def delete_history(self, doc_id: bytes, recipient: AgencyCode, seq: int, status_id: bytes) -> None:
        self.delete(k.HISTORY + doc_id + k.code(recipient) + k.u32(seq) + status_id)

    def put_idempotency(self, sender: AgencyCode, key: str, doc_id: bytes) -> None:
        self.put(k.IDEMPOTENCY + k.code(sender) + Store.idempotency_hash(key), doc_id)

    def append_log(self, shard: str, env_id: bytes) -> int:
        seq = self.store.next_log_seq(shard)
        self.put(k.LOG + k.shard(shard) + k.u64(seq), env_id)
        self.log_appends.append((shard, seq))
        return seq

    def put_cursor(self, shard: str, peer: bytes, cursor: Cursor) -> None:
        self.put(k.CURSOR + k.shard(shard) + k.peer(peer), cursor.encode())

    def put_directory_link(self, serial: int, data: bytes) -> None:
        self.put(k.DIRECTORY + k.u64(serial), data)
