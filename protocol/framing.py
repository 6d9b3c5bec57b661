"""Length-prefixed frames: ``u32 big-endian length ‖ payload``.

Used on the IPC socket and on node-to-node streams. The decoder is
incremental (bytes in, frames out) so callers can feed whatever the socket
returned, one byte at a time if need be.
"""

from __future__ import annotations

import struct

from .errors import FrameError, TooLargeError

PREFIX_BYTES = 4


def frame(payload: bytes, *, max_bytes: int) -> bytes:
    if len(payload) > max_bytes:
        raise TooLargeError(f"frame of {len(payload)} bytes, limit {max_bytes}")
    return struct.pack(">I", len(payload)) + payload


class FrameDecoder:
    """Feed bytes with :meth:`feed`; take complete payloads with :meth:`next_frame`."""

    def __init__(self, *, max_bytes: int) -> None:
        self._buf = bytearray()
        self._max = max_bytes
        self._need: int | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete payload, or None; raises TooLargeError for an oversize prefix."""
        need = self.announced()
        if need is None or len(self._buf) < need:
            return None
        payload = bytes(self._buf[:need])
        del self._buf[:need]
        self._need = None
        return payload

    def announced(self) -> int | None:
        """The length the next frame's prefix announces, once its 4 bytes are here; raises TooLargeError."""
        if self._need is None and len(self._buf) >= PREFIX_BYTES:
            (self._need,) = struct.unpack(">I", self._buf[:PREFIX_BYTES])
            del self._buf[:PREFIX_BYTES]
        if self._need is not None and self._need > self._max:
            raise TooLargeError(f"frame announces {self._need} bytes, limit {self._max}")
        return self._need

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def close(self) -> None:
        """At end of input: raise FrameError if a frame was cut short."""
        if self._buf or self._need is not None:
            raise FrameError(f"input ended inside a frame ({len(self._buf)} bytes buffered)")


# --- persistent request streams (docs/overlay.md §8.1) ---------------------------------------
# ``u32 length ‖ u32 request id ‖ payload``, length = 4 + len(payload): the frame above, its
# payload opened by the id the asker chose. The answer to a request carries the request's id.

TAGGED_HEADER_BYTES = 8
REQUEST_ID_MAX = (1 << 32) - 1


def tagged(request_id: int, payload: bytes, *, max_bytes: int) -> bytes:
    """One frame of a persistent request stream; raises TooLargeError when ``payload`` exceeds ``max_bytes``."""
    if len(payload) > max_bytes:
        raise TooLargeError(f"frame of {len(payload)} bytes, limit {max_bytes}")
    return struct.pack(">II", 4 + len(payload), request_id) + payload


def tagged_header(header: bytes, *, max_bytes: int) -> tuple[int, int]:
    """(request id, payload length) from a frame's first 8 bytes.

    Raises FrameError when the length cannot hold the id, TooLargeError when
    the payload would exceed ``max_bytes`` (checked before any of it is read).
    """
    length, request_id = struct.unpack(">II", header)
    if length < 4:
        raise FrameError(f"frame of {length} bytes cannot hold its request id")
    if length - 4 > max_bytes:
        raise TooLargeError(f"frame announces {length - 4} bytes, limit {max_bytes}")
    return request_id, length - 4
