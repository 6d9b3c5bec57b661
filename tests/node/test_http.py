"""node/http.py in-process: a handler's bug is a 500 and the server keeps serving; keep-alive serves request after request."""

from __future__ import annotations

import pytest
import trio

from node.http import HttpLimits, HttpServer, Request, Response
from node.log import NullLog
from node.metrics import Metrics

pytestmark = pytest.mark.timeout(30)


async def exchange(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(65536):
                out += chunk
        return out


def test_a_handler_bug_is_answered_500_and_the_next_request_is_served() -> None:
    metrics = Metrics()

    async def handle(req: Request) -> Response:
        if req.path == "/bug":
            raise KeyError("a bug")
        return Response(200, b"fine")

    async def main() -> None:
        server = HttpServer(handle, limits=HttpLimits(), log=NullLog(), metrics=metrics, name="t")
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with trio.open_nursery() as n:
            port = await n.start(server.serve, listeners)
            bug = await exchange(port, b"GET /bug HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert bug.startswith(b"HTTP/1.1 500 ")
            two = await exchange(
                port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert two.count(b"HTTP/1.1 200 ") == 2 and two.endswith(b"fine")
            n.cancel_scope.cancel()

    trio.run(main)
    assert metrics.get("http_internal_errors", listener="t") == 1
