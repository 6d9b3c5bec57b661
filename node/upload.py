"""Attachments on their way in: streamed over the socket, or read from a directory the operator allows.

Streamed ones land in the node's spool (``HOME/spool``, 0700) as files the
node alone writes, with their size and SHA-256 computed on the way. A file
named by path is opened once under the rules below and hashed; sealing reads
it again through that same descriptor (never the path) and refuses it if it
no longer hashes the same, so a 100 MB file is not written to disk a second
time (docs/performance.md, "Large documents"). What this module guarantees:

* a client's path is opened only below a directory listed in ``[ipc]
  read_paths``, one component at a time with ``O_NOFOLLOW`` (no symbolic
  link anywhere below the listed directory), non-blocking (a FIFO cannot
  hang the open), and read only if it is a regular file, not one of this
  node's key files, and readable by the client's own account;
* sizes are enforced while reading (a file that grows, ``/proc`` files that
  claim 0 bytes, a client that sends more than it declared), never trusted;
* file I/O runs in worker threads drawn from a small limiter of its own, one
  chunk per call, so slow disks or many clients cannot take the threads the
  store's commits need, and cancellation (SIGTERM) reaches every read;
* the spool has a total size; a submit that would overflow it is answered
  ``busy`` before any byte is received; leftovers of a crash are removed at start.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from protocol.errors import BusyError, ConfigError, FileError, HashMismatchError, TooLargeError

from .access import PeerCred
from .committer import Offload

READ_BYTES = 1 << 20
IO_THREADS = 4  # worker threads for attachment I/O, apart from trio's default pool the store uses


@dataclass
class SpooledFile:
    path: Path
    size: int
    sha256: bytes

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class Spool:
    def __init__(self, directory: Path, max_bytes: int, *, offload: Offload | None = None) -> None:
        """``offload`` runs the file writes instead of worker threads (simnet's virtual time: node/committer.py)."""
        self.dir = directory
        self.max_bytes = max_bytes
        self._offload = offload
        self.reserved = 0
        self.limiter = trio.CapacityLimiter(IO_THREADS)
        self._serial = 0

    def prepare(self) -> int:
        """Create the spool (0700) and remove what a previous run left; returns how many files were removed."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        removed = 0
        for leftover in self.dir.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    @contextmanager
    def reserve(self, n: int) -> Iterator[None]:
        """Room for ``n`` bytes for as long as the block runs; raises BusyError when the spool is full."""
        with self.reservation() as r:
            r.add(n)
            yield

    @contextmanager
    def reservation(self) -> Iterator[Reservation]:
        """Room taken as it is needed (``add``), for bytes whose total is known only at the end; freed on exit."""
        r = Reservation(self)
        try:
            yield r
        finally:
            self.reserved -= r.taken

    def _new(self) -> tuple[Path, int]:
        self._serial += 1
        path = self.dir / f"{os.getpid()}-{self._serial}-{os.urandom(4).hex()}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        return path, fd

    async def _io(self, fn: object, *args: object) -> object:
        if self._offload is not None:
            return await self._offload(fn, *args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)  # type: ignore[arg-type]

    def writer(self) -> SpoolWriter:
        """A new spool file to write in pieces (the caller closes or discards it)."""
        path, fd = self._new()
        return SpoolWriter(self, path, fd)

    async def receive(self, chunks: AsyncIterator[bytes], *, name: str, size: int, sha256: bytes | None) -> SpooledFile:
        """Write exactly ``size`` streamed bytes to a spool file; checks ``sha256`` when the client gave one."""
        w = self.writer()
        try:
            async for data in chunks:
                await w.write(data)
            if w.size != size:  # the uploader enforces this; a short stream means the client went away
                raise FileError(f"{name}: the client sent {w.size} of {size} bytes")
            done = w.close()
            if sha256 is not None and done.sha256 != sha256:
                raise HashMismatchError(f"{name}: the bytes received do not match the sha256 the client declared")
            return done
        except BaseException:
            w.discard()
            raise

    async def measure(self, fd: int, *, name: str, size: int, limit: int) -> bytes:
        """SHA-256 of an opened client file of ``size`` bytes (from fstat), checking the size while reading.

        One chunk read and hashed per worker-thread call, from this spool's
        own limiter, so a slow disk holds none of the store's threads and
        cancellation reaches every read.
        """
        os.lseek(fd, 0, os.SEEK_SET)
        h = hashlib.sha256()
        got = 0
        while True:
            n = await self._io(_read_hashed, fd, h)
            assert isinstance(n, int)
            if not n:
                break
            got += n
            if got > size:
                raise FileError(f"{name}: the file grew while it was read (it said {size} bytes); send it when it is complete")
            if got > limit:
                raise TooLargeError(f"{name}: over the {limit}-byte document limit")
        if got != size:
            raise FileError(f"{name}: the file shrank while it was read ({got} of {size} bytes)")
        return h.digest()


class Reservation:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.taken = 0

    def add(self, n: int) -> None:
        """Take ``n`` more bytes of the spool; BusyError when it is full."""
        s = self.spool
        if s.reserved + n > s.max_bytes:
            raise BusyError(
                f"the node is already receiving {s.reserved >> 20} MiB of attachments "
                f"(limit [ipc] spool_mb = {s.max_bytes >> 20}); send again in a moment"
            )
        s.reserved += n
        self.taken += n


class SpoolWriter:
    """One spool file being written: its size and SHA-256 computed on the way."""

    def __init__(self, spool: Spool, path: Path, fd: int) -> None:
        self.spool = spool
        self.path = path
        self._fd: int | None = fd
        self._h = hashlib.sha256()
        self.size = 0

    async def write(self, data: bytes) -> None:
        assert self._fd is not None
        self.size += len(data)
        await self.spool._io(_write_all, self._fd, data, self._h)

    def close(self) -> SpooledFile:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return SpooledFile(self.path, self.size, self._h.digest())

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


async def hashed(chunks: AsyncIterator[bytes], check: Callable[[bytes], None]) -> AsyncIterator[bytes]:
    """The chunks, then ``check(their SHA-256)``, which raises if they are not the bytes declared.

    The reader sees the error where it would see the end: an edXML package
    is refused before it is acted on.
    """
    h = hashlib.sha256()
    async for data in chunks:
        h.update(data)
        yield data
    check(h.digest())


def _read_hashed(fd: int, h: hashlib._Hash) -> int:
    """Read one chunk of ``fd`` into ``h``; returns its length (0 at the end)."""
    data = os.read(fd, READ_BYTES)
    h.update(data)
    return len(data)


def _write_all(fd: int, data: bytes, h: hashlib._Hash) -> None:
    h.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class ReadPaths:
    """The directories whose files ``submit`` may name by path (``[ipc] read_paths``), and the checks on each open."""

    def __init__(self, dirs: tuple[str, ...], *, home: Path, secrets: list[Path]) -> None:
        home = home.resolve()
        self.dirs: list[tuple[str, ...]] = []
        for d in dirs:
            real = Path(d).resolve()
            if not real.is_dir():
                raise ConfigError(f"[ipc] read_paths: {d} is not a directory")
            if real == home or home in real.parents or real in home.parents:
                raise ConfigError(
                    f"[ipc] read_paths: {d} overlaps the node's home {home}; clients could make the node send its keys"
                )
            self.dirs.append(_parts(d))
        self.secrets: set[tuple[int, int]] = set()
        for s in secrets:
            try:
                st = os.stat(s)
            except OSError:
                continue
            self.secrets.add((st.st_dev, st.st_ino))

    @property
    def enabled(self) -> bool:
        return bool(self.dirs)

    def open(self, path: str, cred: PeerCred | None) -> tuple[int, int]:
        """Open ``path`` for reading under the rules above; returns (fd, size). Raises FileError. Blocking: run in a thread."""
        if not self.dirs:
            raise FileError(
                f"{path}: this node does not read files by path; stream the bytes (files[].size and upload frames), "
                "or ask the operator to list a directory in [ipc] read_paths"
            )
        if not path.startswith("/") or "\0" in path:
            raise FileError(f"{path!r}: give an absolute path (the node does not share your working directory)")
        parts = _parts(path)
        if any(p in ("", ".", "..") for p in parts):
            raise FileError(f"{path}: . and .. and empty components are not allowed")
        base = next((d for d in self.dirs if len(parts) > len(d) and parts[: len(d)] == d), None)
        if base is None:
            allowed = ", ".join("/" + "/".join(d) for d in self.dirs)
            raise FileError(f"{path}: not below a directory this node reads from ({allowed})")
        fd = _os_open("/" + "/".join(base), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, path)
        try:
            for comp in parts[len(base) : -1]:
                nfd = _os_open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, path, dir_fd=fd)
                os.close(fd)
                fd = nfd
            ffd = _os_open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, path, dir_fd=fd)
        finally:
            os.close(fd)
        try:
            st = os.fstat(ffd)
            if not stat.S_ISREG(st.st_mode):
                raise FileError(f"{path}: not a regular file (FIFOs, devices and directories are never read)")
            if (st.st_dev, st.st_ino) in self.secrets:
                raise FileError(f"{path}: this is one of the node's key files")
            if cred is not None and not _readable_by(st, cred):
                raise FileError(f"{path}: your account ({cred.describe()}) cannot read this file, so the node will not either")
            return ffd, st.st_size
        except BaseException:
            os.close(ffd)
            raise


def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.rstrip("/").split("/")[1:])


def _os_open(name: str, flags: int, shown: str, dir_fd: int | None = None) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and flags & os.O_NOFOLLOW:
            raise FileError(f"{shown}: a symbolic link (or not a directory) on the way; links are never followed") from None
        raise FileError(f"{shown}: {exc.strerror}") from None


def _readable_by(st: os.stat_result, cred: PeerCred) -> bool:
    """Whether the client's own account could read this file (mode bits; ACLs are not consulted, so stricter)."""
    if cred.uid == 0:
        return True
    if st.st_uid == cred.uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in cred.groups():
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)
