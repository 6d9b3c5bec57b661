"""The node's store: one LevelDB (plyvel) database and its block files, synchronous API.

Reads are methods of :class:`Store`. Every change goes through a
:class:`Batch`, and :meth:`Store.write` applies one or many batches in one
atomic ``write_batch(transaction=True)``; with ``sync=True`` that is one
fsync for all of them (group commit: the node hands every batch that queued
up during the previous fsync to a single call). Data is durable once
``write(..., sync=True)`` returns, and not before.

Sealed blocks (bodies above the inline size) are files in ``blocks/``
beside the database (store/blocks.py, format 4): a batch's blocks are
written after its records, and a ``sync`` write first makes every block
written before it durable, so a record committed with ``sync=True`` never
refers to a block that is not on disk.

Sequence numbers (inbox order, sync log order) are allocated in memory when a
batch is built, from counters loaded at open; a batch that is never written
leaves a gap, which readers tolerate. Build batches from one thread.

Damage is never read as data: LevelDB runs with ``paranoid_checks`` and
every read verifies block checksums (the cost is measured in
docs/performance.md); any error LevelDB reports on a read becomes
:class:`StoreCorruptError`, is remembered in a file beside the data
(``TRUC-DAMAGED``) so the node does not start on it again until
``truc store check`` finds the store sound, and is handed to
``on_corruption`` so the node can stop.

Why one module: the key layout (store/keys.py) is read and written only here; the reads and
the Batch that writes each keyspace stay side by side, so they are reviewed together.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path

import plyvel

from protocol.agency import AgencyCode
from protocol.errors import StoreCorruptError, StoreError, StoreForeignError, StoreLockedError, StoreNotWritableError
from protocol.ids import Digest

from . import keys as k
from .blocks import BlockFiles
from .records import Audit, Cursor, DeliveryRecord, DeliveryState, DocRecord, EdxmlRef, HistoryRecord, InboxEntry, Owner

FORMAT_VERSION = 4  # 2: M owner, W (in-flight blocks); 3: G, J (edXML), Q (SDK); 4: blocks as files. Older: migrated at open
EPOCH_BYTES = 16
PARANOID_CHECKS = True  # LevelDB stops at damage instead of skipping it (log replay, compactions, table opens)
VERIFY_CHECKSUMS = True  # every read checks the CRC of the blocks it reads from disk
# Tables carry a Bloom filter: asking for a key that is absent (is this envelope known? for every id a sync page
# lists, most of them new) reads a filter instead of an index and data block in every level and level-0 table.
BLOOM_FILTER_BITS = 10
DAMAGED_FILE = "TRUC-DAMAGED"  # written when a read met damage; the node refuses to start while it exists
LEVELDB_START_FILES = frozenset({"LOCK", "LOG", "LOG.old"})  # what LevelDB writes before any data
BLOCKS_DIR = "blocks"  # the block files (store/blocks.py), inside the store's directory; LevelDB ignores it
TRANSIENT = ("Too many open files", "Cannot allocate memory", "No space left on device")  # not damage
Rng = Callable[[int], bytes]
_TABLE = re.compile(rb"^\s*(\d+):(\d+)\[", re.M)


class Store:
    def __init__(
        self,
        path: Path | str,
        *,
        rng: Rng = os.urandom,
        create: bool = True,
        owner: Owner | None = None,
        adopt: bool = False,
        offline: bool = False,
    ) -> None:
        """Open the store, or create it in an absent or empty directory.

        ``owner`` (the node): recorded in a new store or one of an older
        format, compared otherwise; ``adopt`` records it over another.
        ``offline`` (truc store check, gc, repair): never created, opened
        despite a damage mark or a damaged table (the caller looks), nothing
        swept. Raises StoreLockedError, StoreNotWritableError,
        StoreCorruptError, StoreForeignError or StoreError.
        """
        self.path = Path(path)
        self.on_corruption: Callable[[StoreCorruptError], None] | None = None
        self.dead_blocks_removed = 0  # blocks of documents that never committed, removed since open
        self.dead_bytes_removed = 0
        self.blocks_moved = 0  # blocks a format-3 store kept in LevelDB, moved to files by this open
        self.temporary_removed = 0  # block files a crash left half-written, removed by this open
        self._inbox_seq: dict[AgencyCode, int] = {}
        self._log_seq: dict[str, int] = {}
        self._heads: dict[str, int] | None = None  # committed log heads, kept up to date by write()
        fresh = self._prepare_directory(create=create and not offline, offline=offline)
        self.fresh = fresh  # created by this open: the node's first start
        try:
            self._db = plyvel.DB(
                str(self.path),
                create_if_missing=fresh,
                paranoid_checks=PARANOID_CHECKS,
                max_open_files=256,
                bloom_filter_bits=BLOOM_FILTER_BITS,
            )
        except plyvel.Error as exc:
            raise self._open_error(exc) from None
        self._legacy_blocks = False  # blocks still in keyspace B (a format-3 store opened offline, never migrated)
        try:
            self.blocks = BlockFiles(self.path / BLOCKS_DIR, create=not offline)
            if not offline:
                damaged = self.table_damage()
                if damaged:
                    raise StoreCorruptError(damaged[0])
                self.temporary_removed = self.blocks.remove_temporary()
            self.owner = self._meta(fresh, owner, adopt, rng, write=not offline)
            epoch_raw = self._get(k.META + b"epoch")
            if epoch_raw is None:
                raise StoreCorruptError(f"{self.path} has no epoch record")
            self.epoch: bytes = epoch_raw
            if not offline:
                self.sweep_inflight_blocks()
        except BaseException:
            self._db.close()
            raise

    # --- opening -------------------------------------------------------------------

    def _prepare_directory(self, *, create: bool, offline: bool) -> bool:
        """Whether LevelDB may create the store here: only in an absent or empty directory."""
        mark = self.path / DAMAGED_FILE
        if not offline and mark.exists():
            what = mark.read_text("utf-8", errors="replace").strip().splitlines()
            raise StoreCorruptError(f"{self.path} was found damaged: {what[0] if what else '(no detail)'}")
        try:
            names = {p.name for p in self.path.iterdir()}
        except FileNotFoundError:
            names = set()
        except NotADirectoryError:
            raise StoreError(f"{self.path} is not a directory") from None
        except PermissionError:
            raise StoreNotWritableError(f"{self.path} cannot even be listed by this user") from None
        if "CURRENT" in names:
            return False
        if not names - LEVELDB_START_FILES - {DAMAGED_FILE}:
            if not create:
                raise StoreError(f"{self.path} does not exist or holds no store")
            return True
        if any(n.endswith((".ldb", ".sst", ".log")) or n.startswith("MANIFEST-") for n in names):
            raise StoreCorruptError(
                f"{self.path} holds LevelDB files but no CURRENT file (which names the manifest to read); "
                "a new store is never made over them"
            )
        raise StoreError(f"{self.path} is not empty and holds no store; a store is made only in an absent or empty directory")

    def _open_error(self, exc: plyvel.Error) -> StoreError:
        msg = _message(exc)
        low = msg.lower()
        if isinstance(exc, plyvel.IOError):
            if "already held by process" in low or "temporarily unavailable" in low:
                return StoreLockedError(str(self.path))
            if "permission denied" in low or "operation not permitted" in low or "read-only file system" in low:
                return StoreNotWritableError(f"{self.path}: {msg}")
            if "no such file" in low:
                return StoreCorruptError(f"{self.path}: {msg}")
        if isinstance(exc, plyvel.CorruptionError):
            return StoreCorruptError(f"{self.path}: {msg}")
        return StoreError(f"{self.path}: {msg}")

    def table_damage(self) -> list[str]:
        """Table files whose size differs from what LevelDB's manifest recorded (truncated, overwritten).

        O(tables): one stat per file, no reads. LevelDB itself refuses to
        open when a table is missing, but finds a shortened one only when it
        reads it.
        """
        # LevelDB compacts in the background from the moment it opens, and
        # deletes the tables a compaction replaced: a table missing from one
        # listing may simply be gone from the next. Only what is wrong in two
        # listings in a row (or in the last of a few) is damage.
        previous: list[str] | None = None
        for _ in range(5):
            out = self._table_damage_once()
            if not out or out == previous:
                return out
            previous = out
        return out

    def _table_damage_once(self) -> list[str]:
        out = []
        listing = self._db.get_property(b"leveldb.sstables") or b""
        for number, size in _TABLE.findall(listing):
            table = self.path / f"{int(number):06d}.ldb"
            if not table.exists():
                table = table.with_suffix(".sst")
            try:
                actual = table.stat().st_size
            except OSError as exc:
                out.append(f"{table}: {exc.strerror}")
                continue
            if actual != int(size):
                out.append(f"{table} is {actual} bytes, LevelDB wrote {int(size)}: the table file was cut short or overwritten")
        return out

    def _meta(self, fresh: bool, owner: Owner | None, adopt: bool, rng: Rng, *, write: bool) -> Owner | None:
        """Check the format and the owner; make a new store's metadata; migrate format 1 (when ``write``)."""
        fmt = self._get(k.META + b"format")
        b = self.batch()
        if fmt is None:
            if not fresh and self._first_key() is not None:
                raise StoreForeignError(f"{self.path} is a LevelDB database without a Trục format record")
            b.put(k.META + b"format", k.u64(FORMAT_VERSION))
            b.put(k.META + b"epoch", rng(EPOCH_BYTES))
        elif k.read_u64(fmt) in (1, 2, 3):
            # 2 and 3 only added (M owner, keyspaces W, G, J, Q); 4 moved the blocks out of keyspace B into files.
            if write:
                self.blocks_moved = self._move_blocks_out(b)
                b.put(k.META + b"format", k.u64(FORMAT_VERSION))
            else:
                self._legacy_blocks = True
        elif k.read_u64(fmt) != FORMAT_VERSION:
            raise StoreError(
                f"{self.path} has store format {k.read_u64(fmt)}; "
                f"this version reads format {FORMAT_VERSION} (and migrates 1 to 3)"
            )
        raw = self._get(k.META + b"owner")
        stored = Owner.decode(raw) if raw is not None else None
        if owner is not None and stored != owner:
            if stored is not None and not adopt:
                raise StoreForeignError(
                    f"{self.path} belongs to {stored.describe()}; this is {owner.describe()} "
                    "(if this node's key was replaced on purpose: truc store adopt)"
                )
            b.put(k.META + b"owner", owner.encode())
            stored = owner
        if len(b) and write:
            self.write(b, sync=True)
        return stored

    def _move_blocks_out(self, b: Batch) -> int:
        """Format 1–3 kept blocks in keyspace ``B``: write each as a file (durably), and delete its key in ``b``.

        ``b`` is the batch that records format 4; a crash before it lands
        leaves the keys, and the next open writes the same files again.
        """
        n = 0
        for key, value in self._scan(k.BLOCK, fill_cache=False):
            self.blocks.put(key[1:], value)
            b.delete(key)
            n += 1
        self.blocks.sync()
        return n

    def _first_key(self) -> bytes | None:
        for key, _ in self._scan(b"\x00", stop=b"\xff"):
            return key
        return None

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
        """Apply ``batches`` atomically, all or nothing; durable on return when ``sync``.

        Their block files are written after their records (an in-flight mark
        is on disk before its block, so a crash never leaves an unmarked block
        of an uncommitted document) and deleted after them. A ``sync`` write
        first makes every block written before it durable. A batch that
        writes blocks must not also commit a record that refers to them.
        """
        if sync:
            self.blocks.sync()
        try:
            with self._db.write_batch(transaction=True, sync=sync) as wb:
                for b in batches:
                    for key, value in b.ops:
                        if value is None:
                            wb.delete(key)
                        else:
                            wb.put(key, value)
        except plyvel.CorruptionError as exc:
            raise self._corrupt(exc) from None
        except plyvel.Error as exc:
            raise StoreError(f"write failed: {_message(exc)}") from None
        for b in batches:
            for h, data in b.block_puts:
                self.blocks.put(h, data)
            for h in b.block_deletes:
                self.blocks.delete(h)
        if sync and any(b.block_puts for b in batches):
            self.blocks.sync()
        if self._heads is not None:
            for b in batches:
                for shard, seq in b.log_appends:
                    if seq > self._heads.get(shard, 0):
                        self._heads[shard] = seq

    # --- small helpers ---------------------------------------------------------------

    def _corrupt(self, exc: plyvel.Error) -> StoreError:
        """A read failed: if it is damage, remember it beside the data and tell the owner. Returns the error to raise.

        A shortage of the process or the machine (file descriptors, memory,
        disk space) is not damage: it is a StoreError and leaves no mark.
        """
        if isinstance(exc, plyvel.IOError) and any(m in _message(exc) for m in TRANSIENT):
            return StoreError(f"{self.path}: {_message(exc)}")
        err = StoreCorruptError(f"{self.path}: {_message(exc)}")
        try:
            (self.path / DAMAGED_FILE).write_text(err.detail + "\n", "utf-8")
        except OSError:
            pass  # the error still stops whoever reads; the mark only keeps the node from restarting on it
        if self.on_corruption is not None:
            self.on_corruption(err)
        return err

    def _get(self, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._db.get(key, verify_checksums=VERIFY_CHECKSUMS)
        except plyvel.Error as exc:
            raise self._corrupt(exc) from None
        return value

    def _scan(
        self,
        prefix: bytes,
        *,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        fill_cache: bool = True,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Keys from ``start`` (default ``prefix``) to the end of ``prefix``, in order or reversed.

        A raw iterator, because plyvel's plain iterator ends quietly when
        LevelDB cannot read a table: damage would look like missing records.
        """
        lo = start if start is not None else prefix
        hi = stop if stop is not None else k.prefix_end(prefix)
        try:
            it = self._db.raw_iterator(verify_checksums=VERIFY_CHECKSUMS, fill_cache=fill_cache)
            try:
                if reverse:
                    it.seek(hi)
                    if it.valid():
                        it.prev()
                    else:
                        it.seek_to_last()
                    while it.valid():
                        key = it.key()
                        if key < lo:
                            break
                        if key < hi:
                            yield key, it.value()
                        it.prev()
                else:
                    it.seek(lo)
                    while it.valid():
                        key = it.key()
                        if key >= hi:
                            break
                        yield key, it.value()
                        it.next()
            finally:
                it.close()
        except plyvel.Error as exc:
            raise self._corrupt(exc) from None

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
        data = self.blocks.get(h)
        if data is None and self._legacy_blocks:
            data = self._get(k.BLOCK + h)
        return data

    def block_size(self, h: bytes) -> int | None:
        """Bytes of a stored block (None: not here), without reading it."""
        size = self.blocks.size(h)
        if size is None and self._legacy_blocks:
            raw = self._get(k.BLOCK + h)
            size = None if raw is None else len(raw)
        return size

    def has_block(self, h: bytes) -> bool:
        return self.block_size(h) is not None

    def has_doc(self, doc_id: bytes) -> bool:
        return self._get(k.DOC + doc_id) is not None

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
        raw = self._get(k.OUTBOX + k.code(sender) + k.delivery_tail(env_id, recipient))
        return DeliveryRecord.decode(raw) if raw is not None else None

    def deliveries(self, sender: AgencyCode, env_id: bytes) -> dict[AgencyCode, DeliveryRecord]:
        prefix = k.OUTBOX + k.code(sender) + env_id
        return {k.parse_code(key[46:59]): DeliveryRecord.decode(v) for key, v in self._scan(prefix)}

    def outbox(self, sender: AgencyCode) -> Iterator[tuple[Digest, AgencyCode, DeliveryRecord]]:
        for key, v in self._scan(k.OUTBOX + k.code(sender)):
            yield Digest(key[14:46]), k.parse_code(key[46:59]), DeliveryRecord.decode(v)

    def due(self, now: int, *, limit: int = 1000) -> list[tuple[int, Digest, AgencyCode, AgencyCode]]:
        """Deliveries whose next attempt is due: (due ms, envelope id, recipient, sender)."""
        return self.due_except(now, limit=limit, skip=frozenset())[0]

    def due_except(
        self, now: int, *, limit: int, skip: Container[bytes]
    ) -> tuple[list[tuple[int, Digest, AgencyCode, AgencyCode]], int]:
        """``due``, passing over slots whose ``keys.delivery_tail`` is in ``skip``; and how many were.

        The delivery worker's attempts under way stay due while they wait their
        turn: they are recognised on the key's bytes, not parsed.
        """
        out: list[tuple[int, Digest, AgencyCode, AgencyCode]] = []
        skipped = 0
        for key, sender in self._scan(k.RETRY):
            due = k.read_u64(key, 1)
            if due > now or len(out) >= limit:
                break
            if key[k.RETRY_TAIL] in skip:
                skipped += 1
                continue
            out.append((due, Digest(key[9:41]), k.parse_code(key[41:54]), k.parse_code(sender)))
        return out, skipped

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

    def status_acked(self, code: AgencyCode, status_id: bytes) -> int:
        """When hosted agency ``code``'s document system took status ``status_id`` (ms), or 0."""
        raw = self._get(k.STATUS_ACK + k.code(code) + status_id)
        return k.read_u64(raw) if raw is not None else 0

    # --- idempotency ---------------------------------------------------------------

    @staticmethod
    def idempotency_hash(key: str) -> bytes:
        return _text_hash(key)

    def idempotent(self, sender: AgencyCode, key: str) -> Digest | None:
        raw = self._get(k.IDEMPOTENCY + k.code(sender) + self.idempotency_hash(key))
        return Digest(raw) if raw is not None else None

    # --- edXML names ------------------------------------------------------------------

    def edxml_docs(self, party: AgencyCode, sender: AgencyCode, document_id: str) -> list[Digest]:
        """The documents hosted agency ``party`` holds from ``sender`` under the edXML ``document_id``.

        Usually one; a sender may use one DocumentId for several documents
        (to other recipients, or sent again): the caller picks among them.
        """
        prefix = k.EDXML_INDEX + k.code(party) + k.code(sender) + _text_hash(document_id)
        return [Digest(key[len(prefix) :]) for key, _ in self._scan(prefix)]

    def edxml_ref(self, doc_id: bytes) -> EdxmlRef | None:
        raw = self._get(k.EDXML_REF + doc_id)
        return EdxmlRef.decode(raw) if raw is not None else None

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

    # --- blocks of documents not committed yet (keyspace W) ---------------------------

    def inflight_blocks(self, write_every: int) -> InflightBlocks:
        """A writer for the blocks of a document being made (see :class:`InflightBlocks`)."""
        return InflightBlocks(self, write_every)

    def sweep_inflight_blocks(self) -> int:
        """Delete every block still marked in flight, with its mark; returns how many.

        Run at open, before anything is written: a mark left over means its
        document never committed (the node died mid-submit). O(marks), never
        a scan of the blocks.
        """
        b = self.batch()
        n = size = 0
        for key, value in self._scan(k.INFLIGHT):
            if self._delete_marked_block(b, key[1:]):
                n += 1
                size += k.read_u32(value)
            b.delete(key)
        if len(b):
            self.write(b, sync=False)  # lost in a crash: swept again next time
            self.dead_blocks_removed += n
            self.dead_bytes_removed += size
        return n

    def _delete_marked_block(self, b: Batch, h: bytes) -> bool:
        """A marked block goes before its mark (``b`` deletes the mark): a crash in between leaves a mark, swept
        at the next open, never an unmarked block of no document. False when there was no block (a crash came
        between the mark and the file)."""
        if self._legacy_blocks:
            b.delete(k.BLOCK + h)
            return self._get(k.BLOCK + h) is not None
        return self.blocks.delete(h)

    def discard_inflight(self, hashes: Iterable[bytes]) -> int:
        """Delete these in-flight blocks, those still marked, with their marks; returns how many.

        A block no longer marked was settled by its document's commit and is
        left alone. If the delete cannot be written, the marks stay and the
        next open sweeps them.
        """
        b = self.batch()
        n = size = 0
        try:
            for h in hashes:
                mark = self._get(k.INFLIGHT + h)
                if mark is not None:
                    if self._delete_marked_block(b, h):
                        n += 1
                        size += k.read_u32(mark)
                    b.delete(k.INFLIGHT + h)
            if len(b):
                self.write(b, sync=False)
        except StoreCorruptError:
            raise
        except StoreError:
            return 0
        if n:
            self.dead_blocks_removed += n
            self.dead_bytes_removed += size
        return n

    # --- size and audit ----------------------------------------------------------------

    def disk_bytes(self) -> int:
        """The database's files and the block files: one ``stat`` per file."""
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file()) + self.blocks.total_bytes()

    def audit(self) -> Audit | None:
        """What the last full check counted (``truc store check``), if one ran."""
        raw = self._get(k.META + b"audit")
        return Audit.decode(raw) if raw is not None else None


class InflightBlocks:
    """The blocks of one document being made, written as they come, each with a mark (keyspace W).

    Sealing writes blocks before the document exists (memory stays at a few
    blocks whatever its size). Each block goes to the store with a mark in
    the same atomic batch. The batch that commits the document deletes the
    marks (:meth:`settle`); a failure before that removes the blocks
    (:meth:`discard`); a crash leaves the marks, and the next open removes
    what they mark. Use from one thread at a time.
    """

    def __init__(self, store: Store, write_every: int) -> None:
        self.store = store
        self.write_every = write_every
        self.hashes: list[bytes] = []
        self.settled = False
        self._batch = store.batch()

    def put(self, h: bytes, block: bytes) -> None:
        assert not self.settled, "blocks added after the document's commit was built"
        self._batch.put_block(h, block)
        self._batch.put(k.INFLIGHT + h, k.u32(len(block)))
        self.hashes.append(bytes(h))
        if len(self._batch) >= 2 * self.write_every:
            self.flush()

    def flush(self) -> None:
        """Write the blocks not written yet (not durable: the document's commit makes them so)."""
        if len(self._batch):
            self.store.write(self._batch, sync=False)
            self._batch = self.store.batch()

    def settle(self, b: Batch) -> None:
        """Put the end of the marks into ``b``, the batch that commits the document; from here on it owns them."""
        self.flush()
        for h in self.hashes:
            b.delete(k.INFLIGHT + h)
        self.settled = True

    def discard(self) -> int:
        """The document will not be committed: remove its blocks (a no-op once settled). Returns how many."""
        self._batch = self.store.batch()
        if self.settled:
            return 0
        return self.store.discard_inflight(self.hashes)


def _message(exc: BaseException) -> str:
    """plyvel's errors carry LevelDB's status as bytes."""
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", errors="replace") if isinstance(arg, bytes) else str(arg)


class Batch:
    """A set of changes applied together by :meth:`Store.write`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ops: list[tuple[bytes, bytes | None]] = []
        self.block_puts: list[tuple[bytes, bytes]] = []  # files, written after ops (Store.write)
        self.block_deletes: list[bytes] = []
        self.log_appends: list[tuple[str, int]] = []
        self.after_write: list[Callable[[], None]] = []  # run by whoever writes the batch, once it is written

    def __len__(self) -> int:
        return len(self.ops) + len(self.block_puts) + len(self.block_deletes)

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
        self.block_puts.append((bytes(h), data))

    def delete_block(self, h: bytes) -> None:
        self.block_deletes.append(bytes(h))
        if self.store._legacy_blocks:  # a format-3 store a tool opened: the block may still be a key
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
        tail = k.delivery_tail(env_id, recipient)
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

    def ack_status(self, code: AgencyCode, status_id: bytes, at: int) -> None:
        self.put(k.STATUS_ACK + k.code(code) + status_id, k.u64(at))

    def delete_history(self, doc_id: bytes, recipient: AgencyCode, seq: int, status_id: bytes) -> None:
        self.delete(k.HISTORY + doc_id + k.code(recipient) + k.u32(seq) + status_id)

    def put_edxml(self, doc_id: bytes, ref: EdxmlRef, parties: list[AgencyCode]) -> None:
        """A document's edXML names, and the index entry for each hosted ``party`` to it."""
        self.put(k.EDXML_REF + doc_id, ref.encode())
        sender = AgencyCode.parse(ref.sender)
        for party in parties:
            self.put(k.EDXML_INDEX + k.code(party) + k.code(sender) + _text_hash(ref.document_id) + doc_id, b"")

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


def _text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()
