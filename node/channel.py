"""Persistent request streams: the version-1 requests, many per long-lived stream (docs/overlay.md §8.1).

A version-1 request costs a new yamux stream, a multistream-select
negotiation, a half-close each way and a task per stream on the answering
side; on this machine that was ~2.6 ms of CPU per round trip against
~0.8 ms on a stream kept open (docs/performance.md). So for push, blocks
and sync a node opens one stream per peer and protocol (``/truc/push/2``,
``/truc/blocks/2``, ``/truc/sync/2``) and keeps it: each request is a
frame ``u32 length ‖ u32 request id ‖ the version-1 request bytes``, each
answer the same frame with the request's id and the version-1 answer bytes
(protocol/framing.py). Up to ``MAX_OUTSTANDING`` requests are in flight per
stream, answered in any order; the messages, their limits and every check
on them are those of version 1. A peer that does not speak version 2 is
asked in version 1 (node/p2p.py).

Limits, so one peer cannot take what others need: the answering side
accepts at most ``MAX_STREAMS_PER_PEER`` streams per peer and protocol,
reads a stream's next request only while fewer than ``MAX_OUTSTANDING`` of
its requests are being answered, checks a frame's announced length before
reading its body, gives a started frame ``BODY_TIMEOUT_S`` to arrive, and
answers at most ``MAX_ANSWERING`` requests at once per protocol over all
peers (version 1's limit). A violation resets that stream only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.protocol_muxer.exceptions import MultiselectClientError, ProtocolNotSupportedError

from protocol.errors import FrameError, TooLargeError
from protocol.framing import REQUEST_ID_MAX, TAGGED_HEADER_BYTES, tagged, tagged_header
from protocol.messages import MAX_SYNC_RESPONSE_BYTES

from .log import Log
from .metrics import Metrics
from .overlay import BLOCKS, PUSH, SYNC

V2 = {PUSH: "/truc/push/2", BLOCKS: "/truc/blocks/2", SYNC: "/truc/sync/2"}
MAX_OUTSTANDING = 8  # requests in flight per stream
MAX_STREAMS_PER_PEER = 2  # per protocol, on the answering side
MAX_ANSWERING = 128  # per protocol, over all peers (version 1: RequestResponseConfig.max_concurrent_inbound)
V1_RECHECK_S = 30.0  # a peer that said "na" is asked in version 1 for this long, then in version 2 again
BODY_TIMEOUT_S = 30.0  # from a frame's header to its last byte
ANSWER_TIMEOUT_S = 120.0  # version 1's answering limit
WRITE_TIMEOUT_S = 60.0  # an answer the asker does not read
MAX_ANSWER_BYTES = MAX_SYNC_RESPONSE_BYTES  # the largest version-1 answer: what an asker's stream reads at most per frame
READ_BYTES = 1 << 20  # one read drains up to this much of what yamux buffered (one window update per read)
Handler = Callable[[str, bytes], Awaitable[bytes]]


class ChannelError(Exception):
    """The stream broke (reset, closed, or a peer broke the framing); what was in flight on it failed."""


class _Reader:
    """Exact reads over a libp2p stream, in large reads (each read sends the peer a window update)."""

    def __init__(self, stream: INetStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def exactly(self, n: int, *, eof_ok: bool = False) -> bytes | None:
        """``n`` bytes; None at a clean end of stream when ``eof_ok`` and nothing was read. Raises ChannelError."""
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        parts = [bytes(self.buf)]
        have = len(self.buf)
        self.buf = bytearray()
        while have < n:
            try:
                data = await self.stream.read(READ_BYTES)
            except Exception as exc:  # StreamEOF, StreamReset, ...: py-libp2p's StreamError family and OSError
                if eof_ok and have == 0 and isinstance(exc, StreamEOF):
                    return None
                raise ChannelError(f"stream ended: {type(exc).__name__}: {exc}") from None
            if not data:
                if eof_ok and have == 0:
                    return None
                raise ChannelError("stream ended inside a frame")
            parts.append(data)
            have += len(data)
        joined = b"".join(parts)
        if have > n:
            self.buf = bytearray(joined[n:])
            return joined[:n]
        return joined


async def _reset(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        try:
            await stream.reset()
        except Exception:
            pass


@dataclass
class _Pending:
    max_bytes: int
    done: trio.Event = field(default_factory=trio.Event)
    answer: bytes | None = None
    error: str = ""


class Channel:
    """The asker's side of one persistent stream: requests written in turn, answers matched by id."""

    def __init__(self, stream: INetStream, *, max_response_bytes: int = MAX_ANSWER_BYTES) -> None:
        """``max_response_bytes`` bounds every answer frame on the stream; each request may set a lower limit of its own
        (an answer over it fails that request only)."""
        self.stream = stream
        self.max_response_bytes = max_response_bytes
        self.broken = ""
        self._slots = trio.Semaphore(MAX_OUTSTANDING)
        self._write = trio.Lock()
        self._waiting: dict[int, _Pending] = {}
        self._next_id = 1
        # A stream reset on our side does not wake a read pending on it (py-libp2p 0.8.1): the reader is cancelled instead.
        self._reading = trio.CancelScope()

    async def run(self) -> None:
        """Read answers until the stream ends or the channel breaks; then fail whatever still waits."""
        reader = _Reader(self.stream)
        try:
            with self._reading:
                await self._read_answers(reader)
        except ChannelError as exc:
            self._break(str(exc))
        finally:
            self._break("the stream was closed")
            await _reset(self.stream)

    async def _read_answers(self, reader: _Reader) -> None:
        while True:
            header = await reader.exactly(TAGGED_HEADER_BYTES, eof_ok=True)
            if header is None:
                raise ChannelError("the peer closed the stream")
            try:
                rid, n = tagged_header(header, max_bytes=self.max_response_bytes)
            except (FrameError, TooLargeError) as exc:
                raise ChannelError(f"bad answer frame: {exc}") from None
            if rid >= self._next_id:
                raise ChannelError(f"answer to request {rid}, which was never sent")
            answer = await reader.exactly(n)
            assert answer is not None
            p = self._waiting.pop(rid, None)
            if p is None:
                continue  # its asker gave up (timeout): the late answer is dropped
            if len(answer) > p.max_bytes:
                p.error = f"answer of {len(answer)} bytes, limit {p.max_bytes}"
            else:
                p.answer = answer
            p.done.set()

    def close(self) -> None:
        """Stop using this stream (its peer is gone): whatever waits on it fails now."""
        self._break("the peer disconnected")

    def _break(self, why: str) -> None:
        if not self.broken:
            self.broken = why
        self._reading.cancel()
        for p in self._waiting.values():
            p.error = p.error or self.broken
            p.done.set()
        self._waiting.clear()

    async def request(self, data: bytes, *, max_request_bytes: int, max_response_bytes: int) -> bytes:
        """Send one request and wait for its answer; raises ChannelError (the caller bounds the wait)."""
        async with self._slots:
            if self.broken:
                raise ChannelError(self.broken)
            if self._next_id > REQUEST_ID_MAX:
                self._break("request ids used up")  # after 4 billion requests: the next request opens a new stream
                raise ChannelError(self.broken)
            rid = self._next_id
            self._next_id += 1
            frame = tagged(rid, data, max_bytes=max_request_bytes)
            p = _Pending(min(max_response_bytes, self.max_response_bytes))
            self._waiting[rid] = p
            try:
                async with self._write:
                    written = False
                    try:
                        await self.stream.write(frame)
                        written = True
                    except Exception as exc:
                        self._break(f"write failed: {type(exc).__name__}: {exc}")
                    finally:
                        if not written:  # an error, or cancelled halfway through a frame: the stream is unusable
                            self._break(self.broken or "a request was cut off while being written")
                await p.done.wait()
            finally:
                self._waiting.pop(rid, None)
            if p.answer is None:
                raise ChannelError(p.error or self.broken)
            return p.answer


class Channels:
    """The asker's streams of one overlay: one per (peer, protocol), opened on first use, dropped when the peer goes."""

    def __init__(self, host: IHost, *, log: Log, metrics: Metrics) -> None:
        self.host = host
        self.log = log
        self.metrics = metrics
        self.nursery: trio.Nursery | None = None  # the overlay's, while it runs: each stream's reader runs there
        self._channels: dict[tuple[str, str], Channel] = {}
        self._opening: dict[tuple[str, str], trio.Lock] = {}
        # Peers that answered "na" -> when to ask in version 2 again. Not for the connection's life: a node that is
        # starting answers "na" until its handlers are set, and would otherwise be asked in version 1 from then on.
        self.v1_only: dict[str, float] = {}

    async def get(self, pid: ID, peer: str, protocol: str) -> Channel | None:
        """Our stream to ``peer`` for ``protocol``, opened on first use; None if the peer speaks only version 1.

        Raises ChannelError when the stream cannot be opened (the caller does not fall back: the peer is there but
        refuses or fails, as a version-1 request would).
        """
        if peer in self.v1_only:
            if trio.current_time() < self.v1_only[peer]:
                return None
            del self.v1_only[peer]
        key = (peer, protocol)
        ch = self._channels.get(key)
        if ch is not None and not ch.broken:
            return ch
        lock = self._opening.setdefault(key, trio.Lock())
        async with lock:  # concurrent first requests share one stream
            ch = self._channels.get(key)
            if ch is not None and not ch.broken:
                return ch
            if self.nursery is None:
                raise ChannelError("overlay not running")
            try:
                stream = await self.host.new_stream(pid, [TProtocol(protocol)])
            except StreamFailure as exc:
                if _not_supported(exc):
                    self.v1_only[peer] = trio.current_time() + V1_RECHECK_S  # an older node, or one still starting
                    self.log.info("peer.speaks_v1_only", peer=peer[:16], protocol=protocol)
                    return None
                raise ChannelError(f"failed to open a stream: {exc}") from None
            except Exception as exc:  # StreamError, SwarmException, OSError...: never a library exception upwards
                raise ChannelError(f"failed to open a stream: {type(exc).__name__}: {exc}") from None
            ch = self._channels[key] = Channel(stream)
            self.metrics.inc("channels_opened", protocol=protocol)
            self.nursery.start_soon(self._run, key, ch)
            return ch

    async def _run(self, key: tuple[str, str], ch: Channel) -> None:
        try:
            await ch.run()
        finally:
            if self._channels.get(key) is ch:
                del self._channels[key]
                self._opening.pop(key, None)

    def forget(self, peer: str) -> None:
        """The peer is gone: its streams went with the connection; ask it afresh (in version 2 first) next time."""
        self.v1_only.pop(peer, None)
        for key in [k for k in self._channels if k[0] == peer]:
            self._channels.pop(key).close()
            self._opening.pop(key, None)


def _not_supported(exc: StreamFailure) -> bool:
    """Whether opening a stream failed because the peer does not speak the protocol (multistream-select's "na")."""
    cause = exc.__cause__  # RequestResponse._map_stream_failure reads it the same way
    return isinstance(cause, ProtocolNotSupportedError) or (
        isinstance(cause, MultiselectClientError) and "protocol not supported" in str(cause)
    )


class Answerer:
    """The answering side of a version-2 protocol: every stream peers open for it, with the limits above."""

    def __init__(
        self,
        protocol: str,
        handler: Handler,
        limits: tuple[int, int],
        is_member: Callable[[str], bool],
        log: Log,
        metrics: Metrics,
    ) -> None:
        """``limits``: the version-1 (request, answer) size limits of the protocol, which version 2 keeps."""
        self.protocol = protocol
        self.handler = handler
        self.max_request_bytes, self.max_response_bytes = limits
        self.is_member = is_member
        self.log = log
        self.metrics = metrics
        self.answering = trio.Semaphore(MAX_ANSWERING)
        self.streams: dict[str, int] = {}  # peer -> streams open now

    async def serve(self, stream: INetStream) -> None:
        """A peer opened a stream: answer its requests until it closes the stream or breaks a rule."""
        peer = str(stream.muxed_conn.peer_id.to_base58())
        if not self.is_member(peer):
            await _reset(stream)
            return
        if self.streams.get(peer, 0) >= MAX_STREAMS_PER_PEER:
            self.metrics.inc("channel_refused", protocol=self.protocol, reason="too_many_streams")
            await _reset(stream)
            return
        self.streams[peer] = self.streams.get(peer, 0) + 1
        try:
            await self._serve(stream, peer)
        finally:
            self.streams[peer] -= 1
            if not self.streams[peer]:
                del self.streams[peer]

    async def _serve(self, stream: INetStream, peer: str) -> None:
        reader = _Reader(stream)
        slots = trio.Semaphore(MAX_OUTSTANDING)
        write = trio.Lock()
        # A reset on our side does not wake a read pending on the stream (py-libp2p 0.8.1): reading is cancelled instead.
        reading = trio.CancelScope()
        why = ""

        def refuse(reason: str, detail: str = "") -> None:
            """Stop reading this stream; it is reset once reading stopped. Answers being made are not cancelled:
            their handlers finish (an ingest half done would skip its follow-ups), only their writes fail."""
            nonlocal why
            if not why:
                why = reason
                if reason != "stream_error":
                    self.metrics.inc("channel_refused", protocol=self.protocol, reason=reason)
                    self.log.warning(
                        "request.stream_refused", protocol=self.protocol, peer=peer[:16], reason=reason, detail=detail[:200]
                    )
            reading.cancel()

        async def answer(rid: int, request: bytes) -> None:
            try:
                with trio.move_on_after(ANSWER_TIMEOUT_S) as cs:
                    response = await self.handler(peer, request)
            except Exception as exc:  # a bug in a handler: this stream fails, the node carries on
                self.log.error("request.handler_failed", protocol=self.protocol, reason=f"{type(exc).__name__}: {exc}"[:300])
                refuse("handler_failed")
                return
            finally:
                self.answering.release()
            if cs.cancelled_caught:
                refuse("answer_timeout")
                return
            try:
                frame = tagged(rid, response, max_bytes=self.max_response_bytes)
            except TooLargeError:
                refuse("answer_too_large", f"{len(response)} bytes")
                return
            try:
                with trio.fail_after(WRITE_TIMEOUT_S):
                    async with write:
                        await stream.write(frame)
            except trio.TooSlowError:
                refuse("not_reading")  # the asker does not read its answers
                return
            except Exception:
                refuse("stream_error")
                return
            slots.release()

        async with trio.open_nursery() as answers:
            with reading:
                try:
                    while True:
                        await slots.acquire()
                        header = await reader.exactly(TAGGED_HEADER_BYTES, eof_ok=True)  # an idle stream waits here
                        if header is None:
                            break  # the asker closed its side: finish the answers under way, then close
                        try:
                            rid, n = tagged_header(header, max_bytes=self.max_request_bytes)
                        except TooLargeError as exc:
                            refuse("too_large", str(exc))
                            break
                        except FrameError as exc:
                            refuse("bad_frame", str(exc))
                            break
                        await self.answering.acquire()
                        try:
                            with trio.fail_after(BODY_TIMEOUT_S):
                                request = await reader.exactly(n)
                        except BaseException:
                            self.answering.release()
                            raise
                        assert request is not None
                        answers.start_soon(answer, rid, request)
                except trio.TooSlowError:
                    refuse("slow_frame", f"a frame took over {BODY_TIMEOUT_S:.0f} s to arrive")
                except ChannelError as exc:
                    refuse("stream_error", str(exc))
            if why:
                await _reset(stream)
        if not why:
            with trio.move_on_after(5):
                try:
                    await stream.close()
                except Exception:
                    pass
