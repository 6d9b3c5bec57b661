"""The libp2p-mode delay shim on real hosts: a request round trip pays the delay on both reads; the library is restored after."""

from __future__ import annotations

import secrets

import pytest
import trio
from libp2p.io.trio import TrioTCPStream

from identity.keys import NodeKey
from simnet.cluster import free_port, wait_until
from simnet.shim import LinkDelay
from tests.node.helpers import p2p_overlay

pytestmark = pytest.mark.slow
ECHO = "/truc/test-echo/1"


@pytest.mark.timeout(60)
def test_the_delay_shim_slows_every_read_on_real_connections_and_turns_off() -> None:
    a_key, b_key = (NodeKey(secrets.token_bytes(32)) for _ in range(2))
    pa, pb = free_port(), free_port()
    members = {a_key.peer_id, b_key.peer_id}
    a = p2p_overlay(a_key, pa, members=members, targets={b_key.peer_id: [f"/ip4/127.0.0.1/tcp/{pb}"]})
    b = p2p_overlay(b_key, pb, members=members, targets={})

    async def echo(peer: str, data: bytes) -> bytes:
        return data

    async def round_trip() -> float:
        t0 = trio.current_time()
        assert await a.request(b_key.peer_id, ECHO, b"ping", timeout=10, max_response_bytes=1024) == b"ping"
        return trio.current_time() - t0

    async def main() -> None:
        with trio.fail_after(50):
            async with trio.open_nursery() as n:
                for ov in (a, b):
                    await n.start(ov.run)
                b.set_request_handler(ECHO, echo, max_request_bytes=1024, max_response_bytes=1024)
                await wait_until(lambda: b_key.peer_id in a.connected_peers(), timeout=15)
                await round_trip()  # warm: the first stream negotiates protocols
                before = min([await round_trip() for _ in range(3)])
                delay.set(200)
                assert TrioTCPStream.read is not library_read  # patched on first use, inside the run only
                delayed = min([await round_trip() for _ in range(3)])
                delay.set(0)
                after = min([await round_trip() for _ in range(3)])
                assert delayed >= 0.4, delayed  # the request read at b, the response read at a
                assert delayed >= before + 0.3 and delayed >= after + 0.3, (before, delayed, after)
                n.cancel_scope.cancel()

    library_read = TrioTCPStream.read
    with LinkDelay() as delay:
        assert TrioTCPStream.read is library_read  # nothing patched until a delay is set
        trio.run(main)
    assert TrioTCPStream.read is library_read  # the run is over: the library is as it was


def test_the_shim_refuses_a_read_it_does_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    """A py-libp2p update that reshapes TrioTCPStream.read fails the run loudly instead of delaying nothing."""

    def read(self: TrioTCPStream, size: int) -> bytes:
        return b""

    monkeypatch.setattr(TrioTCPStream, "read", read)
    with LinkDelay() as delay, pytest.raises(RuntimeError, match=r"TrioTCPStream\.read"):
        delay.set(100)
    assert TrioTCPStream.read is read
