"""Sealed blocks as files beside the LevelDB database: ``<store>/blocks/<sha256 hex>``.

Why not LevelDB (store format 4; formats 1–3 kept blocks under keyspace
``B``): a 1 MiB block written to LevelDB is written again and again, to its
log, to a level-0 table, then by compactions to level 1 and 2. For 100 MiB
of blocks LevelDB wrote 400 MiB and spent 0.34–0.40 s of CPU, where one
file per block writes 100 MiB in 0.23 s (docs/performance.md, "Blocks as
files"). Blocks are immutable and named by their hash, which is all a file
system needs to hold them safely:

* a block is written to a temporary name (``.<hex>.<random>.tmp``) and
  renamed into place, so a name always holds a whole block; temporary files
  a crash left are removed at open;
* a block is durable once a later ``sync`` ran (fsync of each file written
  since, then of the directory): ``Store.write(..., sync=True)`` runs it
  first, so a committed record never refers to a block a power cut can take
  back, the same promise LevelDB's log gave;
* a block's name is its SHA-256: readers that need it whole check it (every
  opening does; a peer checks what it fetches; ``truc store check`` reads
  them all).

Thread-safe: the node writes blocks from the event loop (fetched blocks)
and from worker threads (sealing, commits).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from protocol.errors import StoreError

TMP_SUFFIX = ".tmp"
HEX_NAME = 64  # a block's file name: its SHA-256, lower-case hex


class BlockFiles:
    def __init__(self, root: Path, *, create: bool = True) -> None:
        """``create`` false (the offline tools): a missing directory is an empty one, and nothing is made."""
        self.root = root
        self._lock = threading.Lock()
        self._unsynced: set[str] = set()
        self._bytes: int | None = None  # total size, counted at the first total_bytes() and kept up to date after
        if create:
            try:
                root.mkdir(mode=0o700, exist_ok=True)
            except OSError as exc:
                raise _error(f"cannot create {root}", exc) from None

    def path(self, h: bytes) -> Path:
        return self.root / bytes(h).hex()

    def put(self, h: bytes, data: bytes) -> None:
        """Write a block (not durable until the next :meth:`sync`)."""
        name = bytes(h).hex()
        tmp = self.root / f".{name}.{os.urandom(4).hex()}{TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            final = self.root / name
            try:
                before = os.stat(final).st_size  # the same block again (fetched twice): the rename replaces it
            except FileNotFoundError:
                before = 0
            os.rename(tmp, final)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise _error(f"cannot write block {name[:12]}", exc) from None
        with self._lock:
            self._unsynced.add(name)
            if self._bytes is not None:
                self._bytes += len(data) - before

    def get(self, h: bytes) -> bytes | None:
        try:
            with open(self.path(h), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _error(f"cannot read block {bytes(h).hex()[:12]}", exc) from None

    def size(self, h: bytes) -> int | None:
        """Bytes of a stored block, None when it is not here: one ``stat``, no read."""
        try:
            return os.stat(self.path(h)).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _error(f"cannot stat block {bytes(h).hex()[:12]}", exc) from None

    def delete(self, h: bytes) -> bool:
        """Remove a block; False if it was not there."""
        name = bytes(h).hex()
        with self._lock:
            self._unsynced.discard(name)
        try:
            size = os.stat(self.root / name).st_size
            os.unlink(self.root / name)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _error(f"cannot delete block {name[:12]}", exc) from None
        with self._lock:
            if self._bytes is not None:
                self._bytes -= size
        return True

    def sync(self) -> None:
        """Make every block written so far durable: fsync each one not synced yet, then the directory."""
        with self._lock:
            names, self._unsynced = self._unsynced, set()
        if not names:
            return
        try:
            for name in names:
                try:
                    fd = os.open(self.root / name, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # deleted meanwhile
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with self._lock:
                self._unsynced |= names  # the next sync tries them again
            raise _error("cannot make blocks durable", exc) from None

    def scan(self) -> Iterator[tuple[bytes, int]]:
        """Every stored block as (hash, size); names that are not a block's are skipped."""
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return
        with entries:
            for e in entries:
                h = _hash_of(e.name)
                if h is not None and e.is_file(follow_symlinks=False):
                    yield h, e.stat(follow_symlinks=False).st_size

    def strays(self) -> list[str]:
        """Names in the directory that are not blocks (temporary files a crash left, anything else)."""
        try:
            return sorted(n for n in os.listdir(self.root) if _hash_of(n) is None)
        except FileNotFoundError:
            return []

    def remove_temporary(self) -> int:
        """Delete the temporary files of writes a crash cut short; returns how many."""
        n = 0
        for name in self.strays():
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                (self.root / name).unlink(missing_ok=True)
                n += 1
        return n

    def total_bytes(self) -> int:
        """Bytes of all blocks: a scan of the directory the first time, then kept up to date by put and delete."""
        if self._bytes is None:
            total = sum(size for _, size in self.scan())
            with self._lock:
                if self._bytes is None:
                    self._bytes = total
        return self._bytes


def _hash_of(name: str) -> bytes | None:
    if len(name) != HEX_NAME:
        return None
    try:
        h = bytes.fromhex(name)
    except ValueError:
        return None
    return h if h.hex() == name else None  # lower case only: one name per block


def _error(what: str, exc: OSError) -> StoreError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "No space left on device"
    return StoreError(f"{what}: {reason}")
