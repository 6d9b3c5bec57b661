"""Offline check, garbage collection and repair of a stopped node's store.

:func:`check` reads every key with checksums verified (without filling the
cache), decodes every record with the store's own decoders, checks that each
block hashes to its key and each envelope to its id, and follows every
reference: a document's envelope and blocks, inbox entries and their index,
outbox records and their pending and retry indexes, statuses, the sync log,
idempotency keys. It sorts what it finds into

* damage: what LevelDB could not read, records that do not decode, broken
  indexes, documents marked complete without their blocks (the node cannot
  work right on these; :func:`repair` fixes what it can);
* lost: references to envelopes that are no longer stored (after a repair:
  the node asks its peers for them again);
* garbage: blocks no stored document lists (space only; :func:`collect_garbage`).

:func:`repair` runs LevelDB's ``RepairDB`` (which keeps every record it can
read and drops the rest), then makes the records consistent again and resets
the sync cursors so the node re-reads its peers' logs. Memory: about 100
bytes per envelope and per document, for the reference sets.

Why one module: check, gc and repair walk the same references in the same order; repair acts
on what check finds, so the two are read side by side.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plyvel

from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, DirectoryHeader, Envelope, Kind, MessageHeader
from protocol.errors import StoreCorruptError, StoreError, StoreForeignError, TrucError
from protocol.ids import Digest

from . import keys as k
from .records import Audit, Cursor, DeliveryRecord, DeliveryState, DocRecord, DocRole, EdxmlRef, HistoryRecord, InboxEntry, Owner
from .store import DAMAGED_FILE, Batch, Store, _message

SHOWN = 20  # findings listed per kind; the rest are counted
REPAIR_ROUNDS = 4
CODE = 13
ID = 32


@dataclass
class Report:
    """What a check found. ``to_dict`` is what ``truc store check --json`` prints."""

    path: str
    opened: bool = False
    format: int | None = None
    owner: str = ""
    records: Counter[str] = field(default_factory=Counter)  # keyspace name -> records
    record_bytes: Counter[str] = field(default_factory=Counter)
    damage: list[str] = field(default_factory=list)
    damage_count: int = 0
    lost: list[str] = field(default_factory=list)
    lost_count: int = 0
    garbage_blocks: int = 0
    garbage_bytes: int = 0
    inflight_blocks: int = 0  # marks a crash left; the node removes them at its next start
    awaiting_blocks: int = 0  # documents still waiting for blocks (normal)
    fixes: dict[str, list[bytes]] = field(default_factory=dict)  # what repair and gc act on (keys)
    unreadable: set[bytes] = field(default_factory=set)  # keyspaces a read error cut short
    errors: set[str] = field(default_factory=set)

    @property
    def sound(self) -> bool:
        """Nothing damaged: the node works right on it (lost references are its peers' to fill)."""
        return self.opened and not self.damage_count

    @property
    def clean(self) -> bool:
        """Sound, and every reference found what it refers to."""
        return self.sound and not self.lost_count

    def damaged(self, text: str, fix: str = "", key: bytes = b"") -> None:
        self.damage_count += 1
        if len(self.damage) < SHOWN:
            self.damage.append(text)
        if fix:
            self.fixes.setdefault(fix, []).append(key)

    def missing(self, text: str) -> None:
        self.lost_count += 1
        if len(self.lost) < SHOWN:
            self.lost.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "opened": self.opened,
            "format": self.format,
            "owner": self.owner,
            "sound": self.sound,
            "clean": self.clean,
            "records": dict(self.records),
            "record_bytes": dict(self.record_bytes),
            "damage": self.damage,
            "damage_count": self.damage_count,
            "lost": self.lost,
            "lost_count": self.lost_count,
            "garbage_blocks": self.garbage_blocks,
            "garbage_bytes": self.garbage_bytes,
            "inflight_blocks": self.inflight_blocks,
            "awaiting_blocks": self.awaiting_blocks,
        }


def open_offline(path: Path) -> Store:
    """The store for a tool: never created, opened despite a damage mark; raises StoreLockedError if a node runs."""
    return Store(path, create=False, offline=True)


def check(path: Path, *, now: int, mark: bool = True) -> Report:
    """Check the stopped store at ``path``; records an audit if it is sound (``mark``: and the damage mark)."""
    report = Report(str(path))
    try:
        store = open_offline(path)
    except (StoreCorruptError, StoreForeignError) as exc:
        report.damaged(exc.detail or exc.message)
        return report
    try:
        _check_open(store, report)
        if mark:
            _mark(store, report, now)
    finally:
        store.close()
    return report


def _mark(store: Store, report: Report, now: int) -> None:
    """Sound: record the audit and clear a damage mark. Damaged: mark it, so the node does not start on it."""
    damaged = store.path / DAMAGED_FILE
    if report.damage_count:
        damaged.write_text(f"truc store check found {report.damage_count} problems; first: {report.damage[0]}\n", "utf-8")
        return
    b = store.batch()
    b.put(
        k.META + b"audit",
        Audit(
            at=now,
            blocks=report.records["blocks"],
            block_bytes=report.record_bytes["blocks"],
            garbage_blocks=report.garbage_blocks,
            garbage_bytes=report.garbage_bytes,
        ).encode(),
    )
    store.write(b, sync=True)
    damaged.unlink(missing_ok=True)


def _keyspace(store: Store, tag: bytes, report: Report) -> Iterator[tuple[bytes, bytes]]:
    """Every key of one keyspace, checksums verified; a read error is damage and ends this keyspace."""
    name = k.KEYSPACES.get(tag, f"keyspace {tag!r}")
    last = b""
    it = store._db.raw_iterator(verify_checksums=True, fill_cache=False)
    try:
        it.seek(tag)
        while it.valid():
            key = it.key()
            if not key.startswith(tag):
                break
            last = key
            value = it.value()
            report.records[name] += 1
            report.record_bytes[name] += len(key) + len(value)
            yield key, value
            it.next()
    except plyvel.Error as exc:
        report.unreadable.add(tag)
        msg = _message(exc)
        if msg not in report.errors:  # one damaged table stops every scan that seeks into it: say it once
            report.errors.add(msg)
            where = f"after {_show(last)}" if last else "from its start"
            report.damaged(f"{name}: cannot read {where}: {msg}")
    finally:
        it.close()


def _check_block_files(store: Store, report: Report, blocks: dict[bytes, int]) -> None:
    """Every block file read whole and hashed (its name is its SHA-256); found ones are added to ``blocks``."""
    for h, _ in store.blocks.scan():
        data = store.blocks.get(h)
        if data is None:
            continue  # removed meanwhile (only a tool runs on a stopped store; nothing should)
        report.records["blocks"] += 1
        report.record_bytes["blocks"] += len(data)
        if bytes(Digest.of(data)) != h:
            report.damaged(f"block file {h.hex()[:12]} does not match its name (its hash)", "bad_block", h)
            continue
        blocks[h] = len(data)


def _show(key: bytes) -> str:
    return f"{key[:1].decode('ascii', 'replace')} {key[1:9].hex()}…" if len(key) > 9 else repr(key)


def _check_open(store: Store, report: Report) -> None:
    report.opened = True
    for problem in store.table_damage():
        report.damaged(problem)
    meta = dict(_keyspace(store, k.META, report))
    fmt = meta.get(k.META + b"format")
    report.format = k.read_u64(fmt) if fmt is not None and len(fmt) == 8 else None
    if report.format is None:
        report.damaged("metadata: no format record")
    if len(meta.get(k.META + b"epoch", b"")) != 16:
        report.damaged("metadata: no epoch record")
    try:
        owner = meta.get(k.META + b"owner")
        report.owner = Owner.decode(owner).describe() if owner is not None else "(not recorded yet)"
        if k.META + b"audit" in meta:
            Audit.decode(meta[k.META + b"audit"])
    except StoreError as exc:
        report.damaged(f"metadata: {exc.detail}")

    envelopes: set[bytes] = set()
    doc_blocks: dict[bytes, tuple[bytes, ...]] = {}
    referenced: set[bytes] = set()
    for key, raw in _keyspace(store, k.ENVELOPE, report):
        if not _length(report, key, 1 + ID):
            continue
        try:
            env = Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
        except TrucError as exc:
            report.damaged(f"envelope {key[1:].hex()[:12]} does not decode: {exc.message}", "bad_record", key)
            continue
        if bytes(env.id) != key[1:]:
            report.damaged(f"envelope {key[1:].hex()[:12]} is stored under the wrong id", "bad_record", key)
            continue
        envelopes.add(key[1:])
        header = env.header
        if isinstance(header, MessageHeader) and header.kind is Kind.DOCUMENT and not env.inline:
            hashes = tuple(bytes(d) for d in header.body.blocks)
            doc_blocks[key[1:]] = hashes
            referenced.update(hashes)
    tombstones = {key[1:] for key, v in _keyspace(store, k.TOMBSTONE, report) if _length(report, key, 1 + ID, v, 8)}
    # Envelopes a reference may point at; None when they could not all be read (then nothing is called lost).
    known: set[bytes] | None = None if report.unreadable & {k.ENVELOPE, k.TOMBSTONE} else envelopes | tombstones

    blocks: dict[bytes, int] = {}
    for key, value in _keyspace(store, k.BLOCK, report):  # a format 1-3 store no node has opened since (no files yet)
        if not _length(report, key, 1 + ID):
            continue
        if bytes(Digest.of(value)) != key[1:]:
            report.damaged(f"block {key[1:].hex()[:12]} does not match its hash", "bad_block", key[1:])
            continue
        blocks[key[1:]] = len(value)
    _check_block_files(store, report, blocks)
    marks: dict[bytes, int] = {}
    for key, value in _keyspace(store, k.INFLIGHT, report):
        if _length(report, key, 1 + ID, value, 4):
            marks[key[1:]] = k.read_u32(value)
    for h in marks:
        if h in referenced:
            report.damaged(f"block {h.hex()[:12]} of a stored document is still marked in flight", "stale_mark", h)
        else:
            report.inflight_blocks += 1
    complete_view = not report.unreadable & {k.ENVELOPE, k.BLOCK, k.INFLIGHT}
    for h, size in blocks.items() if complete_view else ():  # garbage only when every reference was read
        if h not in referenced and h not in marks:
            report.garbage_blocks += 1
            report.garbage_bytes += size
            report.fixes.setdefault("garbage", []).append(h)

    docs: dict[bytes, DocRecord] = {}
    for key, value in _keyspace(store, k.DOC, report):
        rec = _decode(report, DocRecord, key, value)
        if rec is None or not _length(report, key, 1 + ID):
            continue
        doc_id = key[1:]
        docs[doc_id] = rec
        if doc_id not in envelopes:
            if k.ENVELOPE not in report.unreadable:
                report.damaged(f"document {doc_id.hex()[:12]}: its envelope is not stored", "doc_without_envelope", doc_id)
            continue
        have = sum(1 for h in doc_blocks.get(doc_id, ()) if h in blocks)
        want = len(doc_blocks.get(doc_id, ()))
        if rec.complete and have < want and not rec.problem and k.BLOCK not in report.unreadable:
            report.damaged(
                f"document {doc_id.hex()[:12]}: marked complete, {want - have} of its {want} blocks are missing",
                "refetch",
                doc_id,
            )
    awaiting = set()
    for key, value in _keyspace(store, k.AWAITING, report):
        if not _length(report, key, 1 + ID, value, 0):
            continue
        awaiting.add(key[1:])
        rec = docs.get(key[1:])
        if (rec is None or rec.complete) and k.DOC not in report.unreadable:
            report.damaged(f"awaiting blocks of {key[1:].hex()[:12]}: no such incomplete document", "stray_awaiting", key[1:])
    report.awaiting_blocks = len(awaiting)
    for doc_id, rec in docs.items():
        if not rec.complete and rec.role is not DocRole.RELAYED and doc_id not in awaiting and doc_id in envelopes:
            report.damaged(f"document {doc_id.hex()[:12]}: incomplete and not waiting for its blocks", "refetch", doc_id)

    _check_inbox(store, report, known)
    _check_outbox(store, report, known)
    for key, value in _keyspace(store, k.HISTORY, report):
        ok = _decode(report, HistoryRecord, key, value) is not None and _length(report, key, 1 + ID + CODE + 4 + ID)
        if ok and _gone(known, key[-ID:]):
            report.missing(f"status {key[-ID:].hex()[:12]} in the history of {key[1:33].hex()[:12]}")
    for key, value in _keyspace(store, k.IDEMPOTENCY, report):
        if _length(report, key, 1 + CODE + ID, value, ID) and _gone(known, value):
            report.missing(f"document {value.hex()[:12]} named by an idempotency key")
    for key, value in _keyspace(store, k.LOG, report):
        if _length(report, key, 1 + 3 + 8, value, ID) and _gone(known, value):
            report.missing(
                f"envelope {value.hex()[:12]} at {key[1:4].decode('ascii', 'replace')} {k.read_u64(key, 4)} of the sync log"
            )
    for key, value in _keyspace(store, k.PARKED, report):
        if _length(report, key, 1 + ID + ID, value, 0) and _gone(known, key[-ID:]):
            report.missing(f"parked status {key[-ID:].hex()[:12]}")
    for key, value in _keyspace(store, k.EDXML_INDEX, report):
        if _length(report, key, 1 + CODE + CODE + ID + ID, value, 0) and _gone(known, key[-ID:]):
            report.missing(f"document {key[-ID:].hex()[:12]} named by an edXML DocumentId")
    for key, value in _keyspace(store, k.EDXML_REF, report):
        if _length(report, key, 1 + ID) and _decode(report, EdxmlRef, key, value) is not None and _gone(known, key[1:]):
            report.missing(f"document {key[1:].hex()[:12]} with edXML names")
    for key, value in _keyspace(store, k.STATUS_ACK, report):
        _length(report, key, 1 + CODE + ID, value, 8)  # the status itself may be gone with its document (retention)
    for key, value in _keyspace(store, k.CURSOR, report):
        if _length(report, key, 1 + 3 + k.PEER_BYTES):
            _decode(report, Cursor, key, value)
    for key, value in _keyspace(store, k.DIRECTORY, report):
        if not _length(report, key, 1 + 8):
            continue
        try:
            env = Envelope.decode(value, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
            if not isinstance(env.header, DirectoryHeader):
                raise StoreError("not a directory link")
        except TrucError as exc:
            report.damaged(f"directory link {k.read_u64(key, 1)}: {exc.message}", "bad_record", key)
    _unknown_keyspaces(store, report)


def _check_inbox(store: Store, report: Report, known: set[bytes] | None) -> None:
    entries: dict[tuple[bytes, bytes], bytes] = {}  # (code, id) -> seq8
    for key, value in _keyspace(store, k.INBOX, report):
        entry = _decode(report, InboxEntry, key, value)
        if entry is None or not _length(report, key, 1 + CODE + 8):
            continue
        entries[(key[1 : 1 + CODE], bytes(entry.id))] = key[1 + CODE :]
        if _gone(known, bytes(entry.id)):
            report.missing(
                f"document {bytes(entry.id).hex()[:12]} in the inbox of {key[1 : 1 + CODE].decode('ascii', 'replace')}"
            )
    indexed: dict[tuple[bytes, bytes], bytes] = {}
    for key, value in _keyspace(store, k.INBOX_BY_ID, report):
        if _length(report, key, 1 + CODE + ID, value, 8):
            indexed[(key[1 : 1 + CODE], key[1 + CODE :])] = value
    for slot, seq in entries.items():
        if indexed.get(slot) != seq:
            report.damaged(
                f"inbox of {slot[0].decode('ascii', 'replace')}: {slot[1].hex()[:12]} is not indexed",
                "inbox_index",
                k.INBOX_BY_ID + slot[0] + slot[1] + seq,
            )
    for slot in indexed.keys() - entries.keys():
        report.damaged(
            f"inbox index of {slot[0].decode('ascii', 'replace')}: {slot[1].hex()[:12]} has no entry",
            "delete",
            k.INBOX_BY_ID + slot[0] + slot[1],
        )


def _check_outbox(store: Store, report: Report, known: set[bytes] | None) -> None:
    pending: dict[bytes, tuple[bytes, int]] = {}  # id32 recipient13 -> (sender13, next_at)
    for key, value in _keyspace(store, k.OUTBOX, report):
        rec = _decode(report, DeliveryRecord, key, value)
        if rec is None or not _length(report, key, 1 + CODE + ID + CODE):
            continue
        env_id = key[1 + CODE : 1 + CODE + ID]
        if _gone(known, env_id):
            report.damaged(f"outbox: {env_id.hex()[:12]} is not stored, it cannot be delivered", "delete_delivery", key)
            continue
        if rec.state is DeliveryState.PENDING:
            pending[key[1 + CODE :]] = (key[1 : 1 + CODE], rec.next_at)
    seen_p: set[bytes] = set()
    for key, value in _keyspace(store, k.PENDING, report):
        if not _length(report, key, 1 + CODE + ID, value, CODE):
            continue
        tail = key[1 + CODE :] + key[1 : 1 + CODE]
        if pending.get(tail, (b"", 0))[0] != value:
            report.damaged(f"pending index: {key[1 + CODE :].hex()[:12]} is not pending", "delete", key)
        seen_p.add(tail)
    seen_r: set[bytes] = set()
    for key, value in _keyspace(store, k.RETRY, report):
        if not _length(report, key, 1 + 8 + ID + CODE, value, CODE):
            continue
        tail = key[9:]
        if pending.get(tail) != (value, k.read_u64(key, 1)):
            report.damaged(f"retry schedule: {tail[:ID].hex()[:12]} is not due then", "delete", key)
        seen_r.add(tail)
    for tail, (sender, _) in pending.items():
        if tail not in seen_p or tail not in seen_r:
            report.damaged(f"outbox: {tail[:ID].hex()[:12]} is pending but not scheduled", "reschedule", k.OUTBOX + sender + tail)


def _unknown_keyspaces(store: Store, report: Report) -> None:
    """Keys under a tag this version does not know: one seek per gap between the known keyspaces."""
    starts = [b"\x00"] + [k.prefix_end(tag) for tag in sorted(k.KEYSPACES)]
    it = store._db.raw_iterator(verify_checksums=True, fill_cache=False)
    seen: set[bytes] = set()
    try:
        for start in starts:
            it.seek(start)
            if it.valid() and it.key()[:1] not in k.KEYSPACES and it.key()[:1] not in seen:
                seen.add(it.key()[:1])
                report.damaged(f"unknown keyspace {it.key()[:1]!r} (first key {_show(it.key())})", "unknown", it.key()[:1])
    except plyvel.Error as exc:
        if _message(exc) not in report.errors:
            report.errors.add(_message(exc))
            report.damaged(f"cannot read: {_message(exc)}")
    finally:
        it.close()


def _gone(known: set[bytes] | None, env_id: bytes) -> bool:
    return known is not None and env_id not in known


def _length(report: Report, key: bytes, size: int, value: bytes | None = None, value_size: int | None = None) -> bool:
    if len(key) != size or (value is not None and value_size is not None and len(value) != value_size):
        report.damaged(f"{k.KEYSPACES.get(key[:1], '?')}: a key or value of the wrong length ({_show(key)})", "delete", key)
        return False
    return True


def _decode(report: Report, cls: Any, key: bytes, value: bytes) -> Any:
    try:
        return cls.decode(value)
    except StoreError as exc:
        report.damaged(f"{k.KEYSPACES.get(key[:1], '?')} {_show(key)}: {exc.detail}", "delete", key)
        return None


# --- garbage collection ------------------------------------------------------------


def collect_garbage(path: Path, *, now: int) -> tuple[Report, int, int]:
    """Remove blocks no stored document lists, and marks a crash left; returns (check, blocks, bytes removed).

    Refuses a damaged store (StoreCorruptError): with envelopes unreadable,
    blocks of their documents would look unreferenced.
    """
    report = check(path, now=now, mark=False)
    if not report.opened or report.damage_count:
        raise StoreCorruptError(f"{path}: {report.damage_count} problems; repair it first (truc store repair)")
    store = open_offline(path)
    try:
        removed, size = _remove_garbage(store, report)
    finally:
        store.close()
    return check(path, now=now), removed, size


def _remove_garbage(store: Store, report: Report) -> tuple[int, int]:
    """Delete unreferenced blocks, blocks a crash left marked in flight, and marks of stored blocks."""
    b = store.batch()
    removed, size = len(report.fixes.get("garbage", [])), report.garbage_bytes
    for h in report.fixes.get("garbage", []):
        b.delete_block(h)
    stale = set(report.fixes.get("stale_mark", []))
    for key, value in store._scan(k.INFLIGHT):
        b.delete(key)
        if key[1:] not in stale:
            b.delete_block(key[1:])
            removed += 1
            size += k.read_u32(value) if len(value) == 4 else 0
    store.write(b, sync=True)
    return removed, size


# --- repair --------------------------------------------------------------------------


@dataclass
class Repaired:
    """What ``truc store repair`` did and what it cost."""

    before: Report
    after: Report | None = None
    backup: str = ""
    repaired: bool = False  # RepairDB ran
    lost_records: dict[str, int] = field(default_factory=dict)  # keyspace -> records readable before, gone after
    uncounted: list[str] = field(default_factory=list)  # keyspaces not fully readable before: their losses are unknown
    fixed: dict[str, int] = field(default_factory=dict)  # what was made consistent again
    archived: list[str] = field(default_factory=list)  # files LevelDB moved to lost/
    cursors_reset: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict() if self.after else None,
            "backup": self.backup,
            "repaired": self.repaired,
            "lost_records": self.lost_records,
            "uncounted": self.uncounted,
            "fixed": self.fixed,
            "archived": self.archived,
            "cursors_reset": self.cursors_reset,
            "error": self.error,
        }


def repair(path: Path, *, now: int, backup: Path | None) -> Repaired:
    """Repair the stopped store at ``path``: copy it to ``backup`` first (unless None), RepairDB, make it consistent.

    A store that checks clean is left alone. Raises StoreLockedError while
    a node runs on it, StoreError if the backup cannot be made.
    """
    before = check(path, now=now, mark=False)
    out = Repaired(before)
    if before.clean:
        out.after = check(path, now=now)
        return out
    if backup is not None:
        _backup(path, backup)
        out.backup = str(backup)
    lost_dir = path / "lost"
    archived_before = {p.name for p in lost_dir.iterdir()} if lost_dir.exists() else set()
    try:
        plyvel.repair_db(str(path), paranoid_checks=True)  # checksums on: bad blocks are dropped, not copied
    except plyvel.Error as exc:
        out.error = f"LevelDB could not repair {path}: {_message(exc)}"
        return out
    out.repaired = True
    if lost_dir.exists():
        out.archived = sorted({p.name for p in lost_dir.iterdir()} - archived_before)
    lost_any = False
    for _ in range(REPAIR_ROUNDS):  # a fix can reveal the next (a bad block: its document is incomplete)
        mid = check(path, now=now, mark=False)
        if not mid.opened:
            out.after = mid
            out.error = "the store still does not open after LevelDB's repair"
            return out
        lost_any = lost_any or bool(mid.lost_count) or any(before.records[n] > mid.records[n] for n in before.records)
        if not mid.fixes and not mid.inflight_blocks:
            break
        store = open_offline(path)
        try:
            for fix, count in _make_consistent(store, mid).items():
                out.fixed[fix] = out.fixed.get(fix, 0) + count
        finally:
            store.close()
    if lost_any or out.fixed:
        store = open_offline(path)
        try:
            b = store.batch()
            for key, _ in store._scan(k.CURSOR):
                b.delete(key)
            store.write(b, sync=True)
        finally:
            store.close()
        out.cursors_reset = True
    out.after = check(path, now=now)
    out.uncounted = sorted(k.KEYSPACES[tag] for tag in before.unreadable if tag in k.KEYSPACES)
    out.lost_records = {
        name: before.records[name] - out.after.records[name]
        for name in before.records
        if before.records[name] > out.after.records[name] and name not in out.uncounted
    }
    return out


def _backup(path: Path, backup: Path) -> None:
    need = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    parent = backup.parent
    free = shutil.disk_usage(parent).free if parent.exists() else 0
    if free < need * 1.05 + (64 << 20):
        raise StoreError(
            f"not enough space in {parent} for a backup of {path} ({need >> 20} MiB needed, {free >> 20} MiB free): "
            "free some space, give --backup DIR elsewhere, or --no-backup"
        )
    if backup.exists():
        raise StoreError(f"{backup} already exists; give another --backup")
    shutil.copytree(path, backup, symlinks=True)


def _make_consistent(store: Store, report: Report) -> dict[str, int]:
    """Apply what a check marked fixable; returns counts per fix."""
    fixed: dict[str, int] = {}
    if report.fixes.get("garbage") or report.fixes.get("stale_mark") or report.inflight_blocks:
        removed, _ = _remove_garbage(store, report)
        if removed:
            fixed["garbage"] = removed
        if report.fixes.get("stale_mark"):
            fixed["stale_mark"] = len(report.fixes["stale_mark"])
    b = store.batch()
    for fix, keys in report.fixes.items():
        if fix in ("unreadable", "garbage", "stale_mark"):
            continue
        count = sum(_fix_one(store, b, fix, key) for key in keys)
        if count:
            fixed[fix] = count
    store.write(b, sync=True)
    return fixed


def _fix_one(store: Store, b: Batch, fix: str, key: bytes) -> int:
    if fix == "refetch":
        rec = store.doc(key)
        if rec is None:
            return 0
        b.put_doc(key, dataclasses.replace(rec, complete=False))
        b.set_awaiting(key, True)
    elif fix == "doc_without_envelope":
        b.delete_doc(key)
        b.set_awaiting(key, False)
    elif fix == "stray_awaiting":
        b.set_awaiting(key, False)
    elif fix == "inbox_index":
        b.put(key[: 1 + CODE + ID], key[1 + CODE + ID :])
    elif fix in ("delete", "bad_record"):
        b.delete(key)
    elif fix == "unknown":  # a format-2 store has no other keyspaces (a newer format is refused at open)
        for junk, _ in store._scan(key):
            b.delete(junk)
    elif fix == "bad_block":
        b.delete_block(key)  # its document shows up as incomplete at the next round: refetched
    elif fix == "delete_delivery":
        raw = store._get(key)
        if raw is not None:
            delivery = DeliveryRecord.decode(raw)
            tail = key[1 + CODE :]
            b.delete(key)
            if delivery.state is DeliveryState.PENDING:
                b.delete(k.RETRY + k.u64(delivery.next_at) + tail)
                b.delete(k.PENDING + tail[ID:] + tail[:ID])
    elif fix == "reschedule":
        raw = store._get(key)
        if raw is None:
            return 0
        tail = key[1 + CODE :]
        b.put(k.RETRY + k.u64(DeliveryRecord.decode(raw).next_at) + tail, key[1 : 1 + CODE])
        b.put(k.PENDING + tail[ID:] + tail[:ID], key[1 : 1 + CODE])
    else:
        return 0
    return 1
