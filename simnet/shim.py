"""A delay shim in py-libp2p's TCP path, for simnet's in-process libp2p mode.

Every chunk a host receives from a TCP connection is handed on ``delay_s``
after it arrived (once per arrival: the library's many small reads of one
chunk are served from a buffer), so each message (Noise handshake, Yamux
frame, gossip, request, response) takes that much longer to cross a link.
It patches the library's ``TrioTCPStream.read`` for the whole process, which
is why only simnet installs it (all hosts of a libp2p-mode run share one
process and one setting: "delay on every link").

It is an approximation, stated: arrivals on one connection are serialized,
so a connection carries at most one chunk (up to 64 KiB) per ``delay_s``
while the delay is on, and chatty exchanges pay more than one link delay
each way: a request on a new stream took 2.0 s at 200 ms (about 10
arrivals, tests/simnet/test_shim.py). Loss is not shimmed: TCP retransmits,
so loss on a real connection shows up as delay; the virtual mode models loss.
"""

from __future__ import annotations

from typing import Any

import trio
from libp2p.io.trio import TrioTCPStream

CHUNK = 65536


def _serve(stream: TrioTCPStream, buf: bytes, n: int | None) -> bytes:
    out, rest = (buf, b"") if n is None else (buf[:n], buf[n:])
    stream._shim_buf = rest  # type: ignore[attr-defined]
    return out


class LinkDelay:
    delay_s: float = 0.0
    _installed = False

    @classmethod
    def install(cls) -> None:
        if cls._installed:
            return
        original = TrioTCPStream.read

        async def read(self: TrioTCPStream, n: int | None = None) -> Any:
            # What arrived in one receive is delayed once, then served from a
            # buffer: a Yamux header and its body, read separately, are one arrival.
            if n == 0:
                return b""
            buf: bytes = getattr(self, "_shim_buf", b"")
            if not buf:
                data = await original(self, max(n or 0, CHUNK))
                if not data or cls.delay_s <= 0:
                    return _serve(self, data, n)
                await trio.sleep(cls.delay_s)
                buf = data
            return _serve(self, buf, n)

        TrioTCPStream.read = read  # type: ignore[method-assign]
        cls._installed = True

    @classmethod
    def set(cls, delay_ms: float) -> None:
        cls.install()
        cls.delay_s = max(0.0, delay_ms) / 1000
