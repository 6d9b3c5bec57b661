"""The node's HTTP listeners: h11 (python-hyper's sans-I/O HTTP/1.1) on trio sockets.

Two listeners use it: Prometheus' ``GET /metrics`` and ``/healthz``
(``[node] metrics_listen``) and the national SDK's calls (``[sdk] listen``,
node/sdk.py). Everything from outside is hostile, so the server bounds what
one client can hold: connections at once (more are answered 503 and
closed), the request line and headers (h11's ``max_incomplete_event_size``;
431), the time to send them (``header_timeout_s``), each piece of a body
(``read_timeout_s``) and a body's average rate (``MIN_BODY_BYTES_PER_S``
after the first ``read_timeout_s``), the time a client may take to read an
answer (``SEND_TIMEOUT_S``), and an idle keep-alive connection. Each
connection is its own task: a slow one never holds up another.

A handler gets a :class:`Request` whose body it reads as a stream
(:meth:`Request.chunks`) and returns a :class:`Response`; errors of the
transport reach it as :class:`BodyTimeoutError` / :class:`BodyTooLargeError`.
"""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import h11
import trio

from protocol.errors import ConfigError

from .log import Log
from .metrics import Metrics
from .tasks import TaskStatus

MAX_HEADER_BYTES = 16384
MIN_BODY_BYTES_PER_S = 16384
SEND_TIMEOUT_S = 60.0
IDLE_TIMEOUT_S = 30.0
RECEIVE_BYTES = 65536
DRAIN_BYTES = 1 << 20  # of a refused request's body, read and dropped so the client reads the answer
DRAIN_S = 2.0
DRAIN_PAUSE_S = 0.2


class BodyTimeoutError(Exception):
    """The client stopped sending its request body, or sends it too slowly."""


class BodyTooLargeError(Exception):
    """The request body is larger than the handler accepts."""


class _ClientGone(Exception):
    pass


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 64
    header_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    max_header_bytes: int = MAX_HEADER_BYTES


@dataclass
class Response:
    status: int
    body: bytes | Iterable[bytes] = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


ErrorPage = Callable[[int, str], Response]  # (HTTP status, why) -> the answer for a request the server itself refuses


def text_page(status: int, why: str) -> Response:
    return Response(status, (why + "\n").encode())


class Request:
    """One request: its head, and its body read on demand (with the server's timeouts)."""

    def __init__(self, conn: h11.Connection, stream: trio.SocketStream, head: h11.Request, limits: HttpLimits) -> None:
        self._conn = conn
        self._stream = stream
        self._limits = limits
        self.method = head.method.decode("ascii", "replace")
        target = head.target.decode("ascii", "replace")
        self.path, _, self.query = target.partition("?")
        self.headers: dict[str, str] = {}
        self.repeated: set[str] = set()  # header names sent more than once
        for name, value in head.headers:
            key = name.decode("ascii", "replace").lower()
            if key in self.headers:
                self.repeated.add(key)
            self.headers[key] = value.decode("latin-1")
        length = self.headers.get("content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self.body_read = False

    async def chunks(self, limit: int) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive; BodyTooLargeError past ``limit``, BodyTimeoutError for a stalled or slow client."""
        if self.content_length is not None and self.content_length > limit:
            raise BodyTooLargeError(f"the body is {self.content_length} bytes, this call accepts up to {limit}")
        start = time.monotonic()
        total = 0
        while True:
            ev = self._conn.next_event()
            if ev is h11.NEED_DATA:
                allowed = start + self._limits.read_timeout_s + total / MIN_BODY_BYTES_PER_S
                wait = min(self._limits.read_timeout_s, allowed - time.monotonic())
                data = b""
                with trio.move_on_after(max(wait, 0)):
                    data = await _receive(self._stream)
                    if not data:
                        raise _ClientGone
                if not data:
                    raise BodyTimeoutError(f"no body bytes for {wait:.0f} s, or under {MIN_BODY_BYTES_PER_S} bytes/s")
                self._conn.receive_data(data)
            elif isinstance(ev, h11.Data):
                total += len(ev.data)
                if total > limit:
                    raise BodyTooLargeError(f"the body passes {limit} bytes, this call accepts up to {limit}")
                yield bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                self.body_read = True
                return
            else:
                raise _ClientGone

    async def drain(self, limit: int) -> bytes:
        """The whole (small) body."""
        return b"".join([c async for c in self.chunks(limit)])


Handler = Callable[[Request], Awaitable[Response]]


async def _receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some(RECEIVE_BYTES)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _ClientGone from None


async def open_listeners(host: str, port: int, what: str = "metrics_listen") -> list[trio.SocketListener]:
    """Bind an address now (before the node serves anything); raises ConfigError naming it (``what``)."""
    try:
        return list(await trio.open_tcp_listeners(port, host=host))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "the address is already in use (another node or program listens there)"
        raise ConfigError(f"{what} {host}:{port}: {reason}") from None


class HttpServer:
    """Serves ``handler`` on listeners with :class:`HttpLimits`; ``error_page`` answers what the server refuses."""

    def __init__(
        self, handler: Handler, *, limits: HttpLimits, log: Log, metrics: Metrics, name: str, error_page: ErrorPage = text_page
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.log = log
        self.metrics = metrics
        self.name = name
        self.error_page = error_page
        self.active = 0

    async def serve(
        self, listeners: list[trio.SocketListener], *, task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Answer on ``listeners`` (from :func:`open_listeners`); ``task_status`` gets the bound port."""
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._connection, listeners)

    def _refused(self, why: str) -> None:
        self.metrics.inc("http_refused", listener=self.name, reason=why)
        self.log.info("http.refused", listener=self.name, reason=why)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        try:
            if self.active >= self.limits.max_connections:
                self._refused("connections")
                await self._send_error(conn, stream, 503, f"more than {self.limits.max_connections} connections at once")
                return
            self.active += 1
            try:
                await self._requests(conn, stream)
            finally:
                self.active -= 1
        except (_ClientGone, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    async def _requests(self, conn: h11.Connection, stream: trio.SocketStream) -> None:
        first = True
        while True:
            head = await self._head(conn, stream, first)
            if head is None:
                return
            first = False
            size = len(head.target) + sum(len(k) + len(v) + 4 for k, v in head.headers)
            if size > self.limits.max_header_bytes:  # h11 bounds only heads that arrive in pieces
                self._refused("headers_too_large")
                await self._send_error(conn, stream, 431, f"the request's headers pass {self.limits.max_header_bytes} bytes")
                return
            req = Request(conn, stream, head, self.limits)
            try:
                resp = await self.handler(req)
            except BodyTimeoutError as exc:
                self._refused("slow_body")
                resp = self.error_page(408, str(exc))
            except BodyTooLargeError as exc:
                self._refused("body_too_large")
                resp = self.error_page(413, str(exc))
            except h11.RemoteProtocolError as exc:
                self._refused("bad_http")
                resp = self.error_page(400, f"not HTTP/1.1: {exc}")
            except _ClientGone:
                raise
            except Exception as exc:  # a bug in a handler: answer 500 and keep serving, as the IPC server does
                self.metrics.inc("http_internal_errors", listener=self.name)
                self.log.error("http.internal_error", listener=self.name, path=req.path[:100], error=repr(exc)[:500])
                resp = self.error_page(500, "internal error in the node; it is logged")
            if not req.body_read:
                await self._drain(conn, stream)
            keep = req.body_read or (req.method in ("GET", "HEAD") and not req.content_length)
            if not keep:  # the rest of an unread body would be read as the next request: close after this answer
                resp.headers.append(("Connection", "close"))
            await self._send(conn, stream, resp)
            if conn.our_state is h11.MUST_CLOSE or not keep or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _drain(self, conn: h11.Connection, stream: trio.SocketStream) -> None:
        """Read and drop what is left of a refused request's body, a little of it: a client still sending when the
        socket closes gets a reset instead of the answer that says why."""
        left = DRAIN_BYTES
        with trio.move_on_after(DRAIN_S):
            while left > 0:
                try:
                    ev = conn.next_event()
                except h11.RemoteProtocolError:
                    return
                if ev is h11.NEED_DATA:
                    data = b""
                    with trio.move_on_after(DRAIN_PAUSE_S):  # a client that paused is not sending: answer now
                        data = await _receive(stream)
                    if not data:
                        return
                    left -= len(data)
                    conn.receive_data(data)
                elif not isinstance(ev, h11.Data):
                    return

    async def _head(self, conn: h11.Connection, stream: trio.SocketStream, first: bool) -> h11.Request | None:
        """The next request's head; None when the client is done (or idle too long between requests)."""
        timeout = self.limits.header_timeout_s if first else IDLE_TIMEOUT_S
        head = None
        with trio.move_on_after(timeout) as scope:
            head = await self._read_head(conn, stream)
        if not scope.cancelled_caught:
            return head
        if conn.their_state is h11.IDLE and not first:
            return None  # an idle keep-alive connection: close it quietly
        self._refused("slow_headers")
        await self._send_error(conn, stream, 408, f"the request's headers did not arrive within {timeout:g} s")
        return None

    async def _read_head(self, conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                self._refused("headers_too_large" if status == 431 else "bad_http")
                await self._send_error(conn, stream, status, f"not a request this server reads: {exc}")
                return None
            if ev is h11.NEED_DATA:
                data = await _receive(stream)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None
                continue
            return ev if isinstance(ev, h11.Request) else None  # else ConnectionClosed, PAUSED

    async def _send_error(self, conn: h11.Connection, stream: trio.SocketStream, status: int, why: str) -> None:
        resp = self.error_page(status, why)
        resp.headers.append(("Connection", "close"))
        try:
            await self._send(conn, stream, resp)
        except h11.LocalProtocolError:
            pass  # h11 cannot answer in this state: just close

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, resp: Response) -> None:
        headers = [("Content-Type", resp.content_type), ("Server", "truc"), *resp.headers]
        pieces: Iterable[bytes]
        if isinstance(resp.body, bytes):
            headers.append(("Content-Length", str(len(resp.body))))
            pieces = [resp.body] if resp.body else []
        else:
            pieces = resp.body
        with trio.fail_after(SEND_TIMEOUT_S):
            await stream.send_all(conn.send(h11.Response(status_code=resp.status, headers=headers)) or b"")
            for piece in pieces:
                if piece:
                    await stream.send_all(conn.send(h11.Data(data=piece)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def serve(
    listeners: list[trio.SocketListener],
    render: Callable[[], str],
    healthy: Callable[[], bool],
    *,
    log: Log,
    metrics: Metrics,
    task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prometheus' ``GET /metrics`` and ``GET /healthz`` on ``listeners``; ``task_status`` gets the bound port."""

    async def handle(req: Request) -> Response:
        if req.method == "GET" and req.path == "/metrics":
            return Response(200, render().encode(), "text/plain; version=0.0.4")
        if req.method == "GET" and req.path == "/healthz":
            ok = healthy()
            return Response(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n")
        return Response(404, b"not found: try /metrics\n")

    limits = HttpLimits(max_connections=16, header_timeout_s=5.0)
    server = HttpServer(handle, limits=limits, log=log, metrics=metrics, name="metrics")
    await server.serve(listeners, task_status=task_status)
