"""A delay shim in py-libp2p's TCP path, for simnet's in-process libp2p mode.

Every chunk a host receives from a TCP connection is handed on ``delay_s``
after it arrived (once per arrival: the library's many small reads of one
chunk are served from a buffer), so each message (Noise handshake, Yamux
frame, gossip, request, response) takes that much longer to cross a link.
All hosts of a libp2p-mode run share one process and one setting ("delay on
every link"), so the shim patches the library's ``TrioTCPStream.read`` for
the whole process, but only inside a run: a :class:`LinkDelay` is a context
manager, it patches on the first ``set`` and puts the library's own method
back when the ``with`` block ends. Nothing else in the process sees it.

It is an approximation, stated: arrivals on one connection are serialized,
so a connection carries at most one chunk (up to 64 KiB) per ``delay_s``
while the delay is on, and chatty exchanges pay more than one link delay
each way: a request on a new stream took 2.0 s at 200 ms (about 10
arrivals, tests/simnet/test_shim.py). Loss is not shimmed: TCP retransmits,
so loss on a real connection shows up as delay; the virtual mode models loss.
"""

from __future__ import annotations

import inspect
from types import TracebackType
from typing import Any

import trio
from libp2p.io.trio import TrioTCPStream

CHUNK = 65536


def _serve(stream: TrioTCPStream, buf: bytes, n: int | None) -> bytes:
    out, rest = (buf, b"") if n is None else (buf[:n], buf[n:])
    stream._shim_buf = rest  # type: ignore[attr-defined]
    return out


class LinkDelay:
    """The delay on every link of one run: ``with LinkDelay() as delay: delay.set(200) ...``."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self._original: Any = None  # the library's read while patched
        self._patched: Any = None

    def __enter__(self) -> LinkDelay:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.restore()

    def set(self, delay_ms: float) -> None:
        self.delay_s = max(0.0, delay_ms) / 1000
        if self.delay_s > 0 and self._original is None:
            self._install()

    def _install(self) -> None:
        original = getattr(TrioTCPStream, "read", None)
        if not inspect.iscoroutinefunction(original) or list(inspect.signature(original).parameters)[:2] != ["self", "n"]:
            # a py-libp2p update moved or reshaped it: say so rather than delay nothing
            raise RuntimeError(
                f"libp2p's TrioTCPStream.read is not the coroutine read(self, n) the delay shim wraps: {original!r}"
            )
        shim = self

        async def read(self: TrioTCPStream, n: int | None = None) -> Any:
            # What arrived in one receive is delayed once, then served from a
            # buffer: a Yamux header and its body, read separately, are one arrival.
            if n == 0:
                return b""
            buf: bytes = getattr(self, "_shim_buf", b"")
            if not buf:
                data = await original(self, max(n or 0, CHUNK))
                if not data or shim.delay_s <= 0:
                    return _serve(self, data, n)
                await trio.sleep(shim.delay_s)
                buf = data
            return _serve(self, buf, n)

        self._original, self._patched = original, read
        TrioTCPStream.read = read  # type: ignore[method-assign]

    def restore(self) -> None:
        """Put the library's read back (once the run's hosts are gone: a buffered chunk would be lost)."""
        if self._original is None:
            return
        if TrioTCPStream.read is not self._patched:
            raise RuntimeError("TrioTCPStream.read was patched again during the run; not restoring over it")
        TrioTCPStream.read = self._original  # type: ignore[method-assign]
        self._original = self._patched = None
        self.delay_s = 0.0
