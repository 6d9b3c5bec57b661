"""Persistent request streams (/truc/*/2, node/channel.py) between real py-libp2p hosts on 127.0.0.1.

First what a hostile member can try on a stream it opened (each must cost the
answering node a bounded amount of memory and time, and only that stream);
then many requests sharing one stream, a peer that goes away, and an older
node that speaks only version 1, in both directions.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

import node.channel
from identity.keys import NodeKey
from node.channel import MAX_OUTSTANDING, MAX_STREAMS_PER_PEER, V2
from node.overlay import PUSH, OverlayError
from node.p2p import P2POverlay
from simnet.cluster import free_port, wait_until
from tests.node.helpers import p2p_overlay

pytestmark = pytest.mark.slow
PUSH2 = TProtocol(V2[PUSH])
MAX_REQUEST = 64 << 10
MAX_RESPONSE = 1 << 20
Handler = Callable[[str, bytes], Awaitable[bytes]]


async def echo(peer: str, data: bytes) -> bytes:
    return b"re:" + data


@asynccontextmanager
async def pair(
    handler: Handler = echo, *, asker_v2: bool = True, answerer_v2: bool = True
) -> AsyncIterator[tuple[P2POverlay, P2POverlay]]:
    """An answering overlay with ``handler`` on PUSH and an asking overlay that dials it, both running and connected."""
    a_key, b_key = NodeKey(secrets.token_bytes(32)), NodeKey(secrets.token_bytes(32))
    pa, pb = free_port(), free_port()
    members = {a_key.peer_id, b_key.peer_id}
    a = p2p_overlay(a_key, pa, members=members, targets={}, v2=answerer_v2)
    b = p2p_overlay(b_key, pb, members=members, targets={a_key.peer_id: [f"/ip4/127.0.0.1/tcp/{pa}"]}, v2=asker_v2)
    for ov in (a, b):
        ov.set_request_handler(PUSH, handler, max_request_bytes=MAX_REQUEST, max_response_bytes=MAX_RESPONSE)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await n.start(b.run)
        await wait_until(lambda: a.peer_id in b.connected_peers() and b.peer_id in a.connected_peers(), timeout=15)
        yield a, b
        n.cancel_scope.cancel()


def run_pair(body: Callable[[P2POverlay, P2POverlay], Awaitable[None]], handler: Handler = echo, **versions: bool) -> None:
    """Run ``body(answerer, asker)`` on a fresh connected pair, within 50 s."""

    async def main() -> None:
        with trio.fail_after(50):
            async with pair(handler, **versions) as (a, b):
                await body(a, b)

    trio.run(main)


async def raw_stream(b: P2POverlay, a: P2POverlay) -> object:
    return await b.host.new_stream(ID.from_base58(a.peer_id), [PUSH2])


async def read_frames(stream: object, count: int) -> dict[int, bytes]:
    """``count`` answer frames: request id -> payload."""
    buf = b""
    out: dict[int, bytes] = {}
    while len(out) < count:
        while len(buf) < 8 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            buf += await stream.read(1 << 20)  # type: ignore[attr-defined]
        length, rid = struct.unpack(">II", buf[:8])
        out[rid] = buf[8 : 4 + length]
        buf = buf[4 + length :]
    return out


async def wait_reset(stream: object) -> None:
    """The answerer gave up on this stream: reading it fails (reset) rather than waiting."""
    with pytest.raises(Exception):  # noqa: B017 - StreamReset or StreamEOF, py-libp2p's family
        with trio.fail_after(10):
            while True:
                await stream.read(1 << 16)  # type: ignore[attr-defined]


def frame(rid: int, payload: bytes) -> bytes:
    return struct.pack(">II", 4 + len(payload), rid) + payload


# --- a hostile member ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_an_announced_length_over_the_limit_resets_the_stream_before_its_body_is_read() -> None:
    calls: list[bytes] = []

    async def handler(peer: str, data: bytes) -> bytes:
        calls.append(data)
        return b"ok"

    async def body(a: P2POverlay, b: P2POverlay) -> None:
        s = await raw_stream(b, a)
        await s.write(struct.pack(">II", 4 + (1 << 30), 1))  # type: ignore[attr-defined]  # 1 GiB announced, none sent
        await wait_reset(s)
        assert a.metrics.get("channel_refused", protocol=V2[PUSH], reason="too_large") == 1
        assert calls == []
        assert await b.request(a.peer_id, PUSH, b"still", timeout=10, max_response_bytes=MAX_RESPONSE) == b"ok"

    run_pair(body, handler)


@pytest.mark.timeout(60)
def test_a_frame_too_short_for_its_request_id_resets_the_stream() -> None:
    async def body(a: P2POverlay, b: P2POverlay) -> None:
        s = await raw_stream(b, a)
        await s.write(struct.pack(">II", 2, 0))  # type: ignore[attr-defined]
        await wait_reset(s)
        assert a.metrics.get("channel_refused", protocol=V2[PUSH], reason="bad_frame") == 1

    run_pair(body)


@pytest.mark.timeout(60)
def test_a_frame_that_stops_halfway_is_given_up_after_the_body_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node.channel, "BODY_TIMEOUT_S", 1.0)

    async def body(a: P2POverlay, b: P2POverlay) -> None:
        s = await raw_stream(b, a)
        await s.write(struct.pack(">II", 4 + 100, 1) + b"x" * 10)  # type: ignore[attr-defined]
        start = trio.current_time()
        await wait_reset(s)
        assert trio.current_time() - start < 5
        assert a.metrics.get("channel_refused", protocol=V2[PUSH], reason="slow_frame") == 1

    run_pair(body)


@pytest.mark.timeout(60)
def test_requests_past_the_outstanding_limit_wait_unread_and_are_answered_later() -> None:
    release = trio.Event()
    running = [0, 0]  # now, most at once

    async def handler(peer: str, data: bytes) -> bytes:
        running[0] += 1
        running[1] = max(running[1], running[0])
        await release.wait()
        running[0] -= 1
        return b"re:" + data

    async def body(a: P2POverlay, b: P2POverlay) -> None:
        s = await raw_stream(b, a)
        n = 3 * MAX_OUTSTANDING
        await s.write(b"".join(frame(i, b"r%d" % i) for i in range(1, n + 1)))  # type: ignore[attr-defined]
        await trio.sleep(1.0)
        assert running == [MAX_OUTSTANDING, MAX_OUTSTANDING]  # the rest stay unread in the stream
        release.set()
        answers = await read_frames(s, n)
        assert answers == {i: b"re:r%d" % i for i in range(1, n + 1)}
        assert running[1] == MAX_OUTSTANDING
        assert a.metrics.get("channel_refused", protocol=V2[PUSH], reason="too_large") == 0

    run_pair(body, handler)


@pytest.mark.timeout(60)
def test_a_peer_gets_a_bounded_number_of_streams_per_protocol() -> None:
    async def body(a: P2POverlay, b: P2POverlay) -> None:
        kept = [await raw_stream(b, a) for _ in range(MAX_STREAMS_PER_PEER)]
        await trio.sleep(0.3)  # the answerer has taken them
        try:
            extra = await raw_stream(b, a)
            await extra.write(frame(1, b"more"))  # type: ignore[attr-defined]
        except Exception:  # refused before the write could leave: the reset came first
            pass
        else:
            await wait_reset(extra)
        assert a.metrics.get("channel_refused", protocol=V2[PUSH], reason="too_many_streams") == 1
        for s in kept:  # the others still work
            await s.write(frame(7, b"x"))  # type: ignore[attr-defined]
            assert await read_frames(s, 1) == {7: b"re:x"}

    run_pair(body)


@pytest.mark.timeout(60)
def test_an_asker_that_does_not_read_its_answers_loses_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node.channel, "WRITE_TIMEOUT_S", 1.0)

    async def big(peer: str, data: bytes) -> bytes:
        return bytes(MAX_RESPONSE - 64)

    async def body(a: P2POverlay, b: P2POverlay) -> None:
        s = await raw_stream(b, a)
        # 40 MiB of answers, more than yamux's largest window (16 MiB): the answerer's writes must stop
        await s.write(b"".join(frame(i, b"q") for i in range(1, 41)))  # type: ignore[attr-defined]
        await wait_until(lambda: a.metrics.get("channel_refused", protocol=V2[PUSH], reason="not_reading") == 1, timeout=15)
        await wait_reset(s)

    run_pair(body, big)


# --- many requests, one stream ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_concurrent_requests_share_one_stream_and_each_gets_its_own_answer() -> None:
    async def slow_first(peer: str, data: bytes) -> bytes:
        await trio.sleep(0.05 * (10 - int(data)))  # answers come back in reverse order
        return b"re:" + data

    async def body(a: P2POverlay, b: P2POverlay) -> None:
        got: dict[int, bytes] = {}

        async def ask(i: int) -> None:
            got[i] = await b.request(a.peer_id, PUSH, b"%d" % i, timeout=10, max_response_bytes=MAX_RESPONSE)

        async with trio.open_nursery() as n:
            for i in range(10):
                n.start_soon(ask, i)
        assert got == {i: b"re:%d" % i for i in range(10)}
        for _ in range(50):
            assert await b.request(a.peer_id, PUSH, b"9", timeout=10, max_response_bytes=MAX_RESPONSE) == b"re:9"
        assert b.metrics.get("channels_opened", protocol=V2[PUSH]) == 1

    run_pair(body, slow_first)


@pytest.mark.timeout(60)
def test_an_answer_over_the_askers_limit_fails_that_request_only() -> None:
    async def sized(peer: str, data: bytes) -> bytes:
        return bytes(int(data))

    async def body(a: P2POverlay, b: P2POverlay) -> None:
        with pytest.raises(OverlayError, match=r"limit 100$"):
            await b.request(a.peer_id, PUSH, b"1000", timeout=10, max_response_bytes=100)
        assert await b.request(a.peer_id, PUSH, b"10", timeout=10, max_response_bytes=100) == bytes(10)
        assert b.metrics.get("channels_opened", protocol=V2[PUSH]) == 1

    run_pair(body, sized)


@pytest.mark.timeout(60)
def test_a_request_in_flight_fails_at_once_when_the_peer_disconnects_and_the_next_opens_a_new_stream() -> None:
    started = trio.Event()

    async def stuck(peer: str, data: bytes) -> bytes:
        if data == b"stuck":
            started.set()
            await trio.sleep_forever()
        return b"re:" + data

    async def body(a: P2POverlay, b: P2POverlay) -> None:
        assert await b.request(a.peer_id, PUSH, b"1", timeout=10, max_response_bytes=MAX_RESPONSE) == b"re:1"

        async def close_soon() -> None:
            await started.wait()
            await b.host.get_network().close_peer(ID.from_base58(a.peer_id))

        start = trio.current_time()
        async with trio.open_nursery() as n:
            n.start_soon(close_soon)
            with pytest.raises(OverlayError):
                await b.request(a.peer_id, PUSH, b"stuck", timeout=30, max_response_bytes=MAX_RESPONSE)
        assert trio.current_time() - start < 10
        await wait_until(lambda: a.peer_id in b.connected_peers(), timeout=20)  # redialled
        assert await b.request(a.peer_id, PUSH, b"2", timeout=10, max_response_bytes=MAX_RESPONSE) == b"re:2"
        assert b.metrics.get("channels_opened", protocol=V2[PUSH]) == 2

    run_pair(body, stuck)


# --- an older node -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("older", ["answerer", "asker"])
def test_a_node_that_speaks_only_version_1_is_asked_and_answered_in_version_1(older: str) -> None:
    async def body(answerer: P2POverlay, asker: P2POverlay) -> None:
        for i in range(3):
            got = await asker.request(answerer.peer_id, PUSH, b"%d" % i, timeout=10, max_response_bytes=MAX_RESPONSE)
            assert got == b"re:%d" % i
        assert asker.metrics.get("channels_opened", protocol=V2[PUSH]) == 0
        if older == "answerer":  # the newer asker heard "na" and fell back
            assert V2[PUSH] not in answerer.host.get_mux().handlers  # type: ignore[attr-defined]
            assert answerer.peer_id in asker.channels.v1_only

    run_pair(body, asker_v2=older != "asker", answerer_v2=older != "answerer")


@pytest.mark.timeout(60)
def test_a_peer_that_said_na_while_starting_is_asked_in_version_2_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node answers "na" until its handlers are set: that must not pin it to version 1 for the connection's life."""
    monkeypatch.setattr(node.channel, "V1_RECHECK_S", 1.0)

    async def body(late: P2POverlay, asker: P2POverlay) -> None:
        assert await asker.request(late.peer_id, PUSH, b"1", timeout=10, max_response_bytes=MAX_RESPONSE) == b"re:1"
        assert asker.metrics.get("channels_opened", protocol=V2[PUSH]) == 0
        late.v2 = True  # its handlers are set now
        late.set_request_handler(PUSH, echo, max_request_bytes=MAX_REQUEST, max_response_bytes=MAX_RESPONSE)
        await trio.sleep(1.1)
        assert await asker.request(late.peer_id, PUSH, b"2", timeout=10, max_response_bytes=MAX_RESPONSE) == b"re:2"
        assert asker.metrics.get("channels_opened", protocol=V2[PUSH]) == 1

    run_pair(body, answerer_v2=False)
