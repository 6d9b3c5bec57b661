"""A tiny HTTP endpoint for Prometheus: GET /metrics (and /healthz), nothing else."""

from __future__ import annotations

import errno
from collections.abc import Callable

import trio

from protocol.errors import ConfigError

from .tasks import TaskStatus

MAX_REQUEST_BYTES = 8192


async def open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Bind the metrics address now (before the node serves anything); raises ConfigError naming it."""
    try:
        return list(await trio.open_tcp_listeners(port, host=host))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "the address is already in use (another node or program listens there)"
        raise ConfigError(f"metrics_listen {host}:{port}: {reason}") from None


async def serve(
    listeners: list[trio.SocketListener],
    render: Callable[[], str],
    healthy: Callable[[], bool],
    *,
    task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer on ``listeners`` (from :func:`open_listeners`); ``task_status`` gets the bound port."""
    bound = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        try:
            data = b""
            with trio.move_on_after(5):
                while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST_BYTES:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    data += chunk
            line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace").split()
            path = line[1] if len(line) >= 2 else ""
            if len(line) >= 2 and line[0] == "GET" and path == "/metrics":
                status, body, ctype = "200 OK", render().encode(), "text/plain; version=0.0.4"
            elif len(line) >= 2 and line[0] == "GET" and path == "/healthz":
                ok = healthy()
                status, body, ctype = (
                    ("200 OK" if ok else "503 Service Unavailable"),
                    (b"ok\n" if ok else b"unhealthy\n"),
                    "text/plain",
                )
            else:
                status, body, ctype = "404 Not Found", b"not found: try /metrics\n", "text/plain"
            head = f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            await stream.send_all(head.encode() + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    task_status.started(bound)
    await trio.serve_listeners(handle, listeners)
