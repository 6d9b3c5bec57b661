"""The integrator IPC server: a Unix socket speaking ``protocol.ipc`` (docs/ipc.md).

This module is the transport: connections, frames, limits, uploads and
dispatch; what each method does is in ``node/methods.py``.

Every client is hostile until proven otherwise, and none may stall the
others. Per connection: its account is checked (``SO_PEERCRED``, node/access.py);
frames from it are at most 4 MiB, and each must arrive whole within
``frame_timeout_s``; while it has nothing in flight it is closed after
``idle_timeout_s``; a client that stops reading its answers is dropped after
``send_timeout_s``; it has at most ``MAX_INFLIGHT`` requests and
``CONN_BUFFER_BYTES`` of frames in memory at once. In total: at most
``max_connections`` clients and ``BUFFER_BYTES`` of frames held, so the
node's memory does not grow with what clients send.

A frame that is not a request or an upload (``malformed``), a frame cut short
by a half-close, or a frame too slow or too large, is a connection fault: the
node answers it with id 0, stops reading, answers the requests already in
flight, and closes that connection only.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import trio

from protocol import ipc
from protocol.config import IpcSettings
from protocol.errors import (
    AccessDeniedError,
    BusyError,
    ConfigError,
    DecodeError,
    InternalError,
    IpcTimeoutError,
    SchemaError,
    TrucError,
)
from protocol.framing import FrameDecoder, frame

from .access import Access, AccessPolicy, PeerCred
from .log import Log
from .metrics import Metrics
from .tasks import TaskStatus

READ_BYTES = 1 << 16
BUFFER_BYTES = 64 << 20  # frames held in memory, all connections together
CONN_BUFFER_BYTES = 16 << 20  # and per connection (pipelined requests with inline data)
MAX_INFLIGHT = 128  # requests in flight per connection; the node stops reading until one finishes
CLOSE_GRACE_S = 10.0  # after a fault or half-close: how long requests in flight get to answer

Handler = Callable[["Connection", int, dict[str, Any]], Awaitable[Any]]


class Admission(Protocol):
    """Whether the node takes new work, and how it counts work in flight (the engine; SIGTERM's grace)."""

    def check_accepting(self) -> None: ...  # raises ShuttingDownError once the node is stopping

    def work(self) -> AbstractContextManager[None]: ...


class _AlwaysOpen:
    def check_accepting(self) -> None:
        return None

    def work(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


class ByteBudget:
    """Bytes of frames held in memory; a reader waits for room before it reads a frame in."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._changed = trio.Event()

    async def acquire(self, n: int) -> None:
        while self.used + n > self.total and self.used > 0:
            await self._changed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._changed.set()
        self._changed = trio.Event()


class IncomingUpload:
    """The streamed files a request declared, as its upload frames arrive (docs/ipc.md §2.2)."""

    def __init__(self, rid: int, sizes: dict[int, int]) -> None:
        self.rid = rid
        self.left = dict(sorted(sizes.items()))  # file index -> bytes still to come, in upload order
        self._send, self._recv = trio.open_memory_channel[tuple[int, bytes]](1)
        self.abandoned = False
        for index in [i for i, n in self.left.items() if n == 0]:
            del self.left[index]  # an empty file sends no frame

    @property
    def complete(self) -> bool:
        return not self.left

    def check(self, up: ipc.Upload) -> None:
        """Raise DecodeError if this upload frame is out of order or more than was declared."""
        if not self.left:
            raise DecodeError(f"upload for id {up.id}: every declared byte has already arrived")
        expected = next(iter(self.left))
        if up.file != expected:
            raise DecodeError(f"upload for id {up.id}: file {up.file} arrived while file {expected} is still incomplete")
        if len(up.data) > self.left[expected]:
            raise DecodeError(f"upload for id {up.id}: file {up.file} is longer than its declared size")
        self.left[expected] -= len(up.data)
        if not self.left[expected]:
            del self.left[expected]

    async def deliver(self, up: ipc.Upload) -> None:
        if self.abandoned:
            return  # the request already failed: its remaining bytes are read and dropped
        try:
            await self._send.send((up.file, up.data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.abandoned = True

    def finish(self) -> None:
        self._send.close()

    def abandon(self) -> None:
        self.abandoned = True
        self._recv.close()

    async def chunks(self, index: int, size: int, timeout_s: float) -> AsyncIterator[bytes]:
        """The bytes of file ``index``; raises IpcTimeoutError if the next chunk is late, FileError-style short stream ends."""
        got = 0
        while got < size:
            with trio.move_on_after(timeout_s) as cs:
                try:
                    file, data = await self._recv.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return  # the client went away; the consumer sees the short count
            if cs.cancelled_caught:
                raise IpcTimeoutError(f"file {index}: no upload frame for {timeout_s:g} s ({got} of {size} bytes arrived)")
            assert file == index  # check() keeps the order
            got += len(data)
            yield data


class Connection:
    def __init__(self, server: IpcServer, stream: trio.SocketStream, access: Access) -> None:
        self.server = server
        self.stream = stream
        self.access = access
        self.lock = trio.Lock()
        self.inflight = 0
        self.held = 0
        self.subscriptions: list[trio.CancelScope] = []
        self.uploads: dict[int, IncomingUpload] = {}  # routing: requests whose upload frames are still to come
        self.upload_of: dict[int, IncomingUpload] = {}  # the handler's view, until the request is answered
        self.changed = trio.Event()  # a request finished or released bytes
        self.scope = trio.CancelScope()

    @property
    def busy(self) -> bool:
        return bool(self.inflight or self.subscriptions or self.uploads)

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def send(self, payload: bytes) -> None:
        await self.send_many([payload])

    async def send_many(self, payloads: list[bytes]) -> None:
        """Frames in one write (events that queued meanwhile): fewer system calls, on both sides."""
        # TooLargeError: answered as an error instead
        data = b"".join([frame(p, max_bytes=ipc.MAX_ANSWER_BYTES) for p in payloads])
        async with self.lock:
            with trio.move_on_after(self.server.settings.send_timeout_s) as cs:
                await self.stream.send_all(data)
        if cs.cancelled_caught:
            self.server.metrics.inc("ipc_clients_dropped", reason="not_reading")
            self.server.log.warning("ipc.client_not_reading", who=self.access.who, seconds=self.server.settings.send_timeout_s)
            self.scope.cancel()
            raise trio.ClosedResourceError("client does not read")


class IpcServer:
    def __init__(
        self,
        path: Path,
        *,
        settings: IpcSettings,
        handlers: dict[str, Handler],
        log: Log,
        metrics: Metrics,
        policy: AccessPolicy | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.handlers = handlers
        self.log = log
        self.metrics = metrics
        self.policy = policy or AccessPolicy(settings.clients)
        self.admission: Admission = admission or _AlwaysOpen()
        self.budget = ByteBudget(BUFFER_BYTES)
        self.connections = 0
        assert set(handlers) == set(ipc.METHODS), set(handlers) ^ set(ipc.METHODS)

    # --- socket ------------------------------------------------------------------------

    def _bind(self) -> trio.socket.SocketType:
        if self.path.exists() or self.path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # stale socket from a node that died
            else:
                raise ConfigError(f"{self.path}: another node is already answering on this socket")
            finally:
                probe.close()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.path.parent}: cannot create the IPC socket's directory: {exc.strerror}") from None
        return trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = self._bind()
        old = os.umask(0o117)  # socket created 0660: the truc user and its group (integrators)
        try:
            await sock.bind(str(self.path))
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot create the IPC socket: {exc.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        sock.listen(128)
        listener = trio.SocketListener(sock)
        self.log.info("ipc.listening", path=str(self.path), clients="any" if self.policy.open else len(self.policy.rules))
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(self._serve, [listener], handler_nursery=nursery)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
            try:
                self.path.unlink()
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise

    async def _refuse(self, stream: trio.SocketStream, exc: TrucError, reason: str) -> None:
        self.metrics.inc("ipc_connections_refused", reason=reason)
        with trio.move_on_after(1):
            try:
                await stream.send_all(frame(ipc.error_response(0, exc), max_bytes=ipc.MAX_ANSWER_BYTES))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _serve(self, stream: trio.SocketStream) -> None:
        """One client connection. Nothing that happens on it may stop the node or stall another client."""
        try:
            if self.connections >= self.settings.max_connections:
                self.log.warning("ipc.too_many_connections", limit=self.settings.max_connections)
                await self._refuse(stream, BusyError(f"{self.connections} clients are connected, the limit"), "busy")
                return
            try:
                cred = PeerCred.of(stream.socket)  # type: ignore[arg-type]
                access = self.policy.for_peer(cred)
            except AccessDeniedError as exc:
                self.log.warning("ipc.access_denied", detail=exc.detail)
                await self._refuse(stream, exc, "access_denied")
                return
            conn = Connection(self, stream, access)
            self.connections += 1
            try:
                with conn.scope:
                    await self._run_connection(conn)
            finally:
                self.connections -= 1
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _run_connection(self, conn: Connection) -> None:
        try:
            async with trio.open_nursery() as nursery:
                fault: TrucError | None = None
                try:
                    await self._read_frames(conn, nursery)
                except (DecodeError, IpcTimeoutError) as exc:
                    fault = exc
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    nursery.cancel_scope.cancel()  # the client went away: nothing to answer
                # No more input: uploads end short, subscriptions end, requests in flight still answer.
                for up in conn.uploads.values():
                    up.finish()
                for scope in conn.subscriptions:
                    scope.cancel()
                if fault is not None:
                    self.metrics.inc("ipc_bad_frames", reason=fault.code)
                    self.log.warning("ipc.bad_frame", reason=fault.code, detail=fault.detail[:200], who=conn.access.who)
                    await conn.send(ipc.error_response(0, fault))
                nursery.cancel_scope.deadline = trio.current_time() + CLOSE_GRACE_S
        except Exception as exc:  # includes exception groups from this connection's tasks
            if not _only_disconnects(exc):
                self.log.error("ipc.connection_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _read_frames(self, conn: Connection, nursery: trio.Nursery) -> None:
        """Read frames until end of input; raises DecodeError/IpcTimeoutError for a connection fault."""
        s = self.settings
        decoder = FrameDecoder(max_bytes=ipc.MAX_FRAME_BYTES)
        reserved = 0  # budget held for the frame being read
        while True:
            # Every complete frame in the buffer, each with room reserved before it is taken.
            while (announced := decoder.announced()) is not None:  # TooLargeError for an oversize prefix
                if not reserved:
                    reserved = announced + 4
                    await self._reserve(conn, reserved)
                payload = decoder.next_frame()
                if payload is None:
                    break
                size, reserved = reserved, 0
                await self._frame(conn, payload, size, nursery)
            partial = announced is not None or decoder.buffered > 0
            # A frame under way must finish; a connection with nothing under way may idle only so long.
            idle = math.inf if conn.busy else s.idle_timeout_s
            timeout = s.frame_timeout_s if partial else idle
            with trio.move_on_after(timeout) as cs:
                data = await conn.stream.receive_some(READ_BYTES)
            if cs.cancelled_caught:
                if partial:
                    raise IpcTimeoutError(f"a frame is still incomplete after {s.frame_timeout_s:g} s")
                if conn.busy:
                    continue
                self.metrics.inc("ipc_clients_dropped", reason="idle")
                self.log.info("ipc.idle_closed", who=conn.access.who, seconds=s.idle_timeout_s)
                return
            if not data:
                if partial:
                    raise DecodeError(f"the connection was closed in the middle of a frame ({decoder.buffered} bytes buffered)")
                return
            decoder.feed(data)

    async def _reserve(self, conn: Connection, n: int) -> None:
        """Wait until this connection may hold ``n`` more bytes of frames (its own cap, then the node's)."""
        timeout = self.settings.frame_timeout_s
        with trio.move_on_after(timeout) as cs:
            while conn.inflight >= MAX_INFLIGHT or (conn.held and conn.held + n > CONN_BUFFER_BYTES):
                await conn.changed.wait()
            await self.budget.acquire(n)
        if cs.cancelled_caught:
            raise IpcTimeoutError(f"the node had no room for a {n}-byte frame for {timeout:g} s")
        conn.held += n

    def _release(self, conn: Connection, size: int) -> None:
        conn.held -= size
        self.budget.release(size)
        conn.wake()

    async def _frame(self, conn: Connection, payload: bytes, size: int, nursery: trio.Nursery) -> None:
        try:
            msg = ipc.decode_client_frame(payload)
        except DecodeError:
            self._release(conn, size)
            raise
        if isinstance(msg, ipc.Upload):
            try:
                up = conn.uploads.get(msg.id)
                if up is None:
                    raise DecodeError(f"upload for id {msg.id}, which has no streamed file pending")
                up.check(msg)
                await up.deliver(msg)
                if up.complete:
                    up.finish()
                    del conn.uploads[msg.id]
            finally:
                self._release(conn, size)
            return
        if msg.v != ipc.VERSION:
            self._release(conn, size)
            exc = SchemaError(f"request.v: this node speaks IPC version {ipc.VERSION}, the client sent {msg.v}")
            exc.code = "unsupported_version"
            await conn.send(ipc.error_response(msg.id, exc))
            return
        if msg.id in conn.uploads:
            self._release(conn, size)
            raise DecodeError(f"id {msg.id} is already used by a request whose files are still arriving")
        try:
            sizes = ipc.declared_uploads(msg.method, msg.params)
        except TrucError as exc:
            self._release(conn, size)
            await conn.send(ipc.error_response(msg.id, exc))
            return
        if sizes:
            up = IncomingUpload(msg.id, sizes)
            conn.upload_of[msg.id] = up
            if up.complete:
                up.finish()
            else:
                conn.uploads[msg.id] = up
        conn.inflight += 1
        nursery.start_soon(self._dispatch, conn, msg, size)

    async def _dispatch(self, conn: Connection, req: ipc.Request, size: int) -> None:
        handler = self.handlers.get(req.method)
        self.metrics.inc("ipc_requests", method=req.method if handler else "unknown")
        try:
            if handler is None:
                raise SchemaError(f"unknown method {req.method!r}; methods: {', '.join(ipc.METHODS)}")
            self.admission.check_accepting()  # ShuttingDownError once SIGTERM came
            # In flight until answered: SIGTERM waits for it (a subscription is not work, it just ends).
            with contextlib.nullcontext() if req.method == "events.subscribe" else self.admission.work():
                result = await handler(conn, req.id, req.params)
                await conn.send(ipc.response(req.id, result))
        except TrucError as exc:
            await self._answer_error(conn, req.id, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as exc:  # a bug: answer, log, keep serving
            self.log.error("ipc.internal_error", method=req.method, error=f"{type(exc).__name__}: {exc}")
            await self._answer_error(conn, req.id, InternalError(f"{type(exc).__name__} in {req.method}"))
        finally:
            up = conn.upload_of.pop(req.id, None)
            if up is not None:
                up.abandon()  # the rest of its bytes, if any, are read and dropped
            conn.inflight -= 1
            self._release(conn, size)

    async def _answer_error(self, conn: Connection, rid: int, exc: TrucError) -> None:
        try:
            await conn.send(ipc.error_response(rid, exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _only_disconnects(exc: BaseException) -> bool:
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_disconnects(e) for e in exc.exceptions)
    return False
