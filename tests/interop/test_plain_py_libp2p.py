"""A host of unpatched py-libp2p 0.8.1 and a Trục overlay talk both ways over one connection.

Pitfalls 35 and 36 (docs/overlay.md) change what a node writes: multistream-
select's header and proposal in one write, a stream's SYN and ACK on its first
DATA frame. Both are allowed by the specifications, and js-libp2p reads them
(tests/interop/test_js_peer.py); this checks that the library itself, without
the fixes, still does: its host opens a stream to the overlay (our ACK rides
on our first frame) and the overlay opens one to it (our SYN rides on the
pipelined proposal). The plain host runs in its own interpreter, which never
imports the node, so none of node/libp2p_fixes.py applies to it.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from identity.keys import NodeKey
from simnet.cluster import free_port, wait_until
from tests.node.helpers import p2p_overlay
from tests.procs import ROOT

pytestmark = pytest.mark.slow
ECHO = "/truc/test-echo/1"

PLAIN_PEER = """
import sys, trio, multiaddr
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE, Transport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX, Yamux

assert "node" not in sys.modules and "node.libp2p_fixes" not in sys.modules
address, node_id, seed, echo = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), TProtocol(sys.argv[4])

async def main():
    kp = create_new_key_pair(seed)
    noise = Transport(kp, noise_privkey=x25519().private_key)
    host = new_host(key_pair=kp, sec_opt={TProtocol(NOISE): noise}, muxer_opt={TProtocol(YAMUX): Yamux})
    answered = trio.Event()

    async def handler(stream):
        await stream.write(b"plain: " + await stream.read(100))
        await stream.close()
        answered.set()

    host.set_stream_handler(echo, handler)
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        with trio.fail_after(40):
            await host.connect(PeerInfo(ID.from_base58(node_id), [multiaddr.Multiaddr(address)]))
            stream = await host.new_stream(ID.from_base58(node_id), [echo])
            await stream.write(b"from the plain host")
            print("node answered:", (await stream.read(100)).decode(), flush=True)
            await stream.close()
            await answered.wait()
            print("plain host answered", flush=True)

trio.run(main)
"""


@pytest.mark.timeout(90)
def test_an_unpatched_py_libp2p_host_and_an_overlay_open_streams_to_each_other() -> None:
    ours, theirs = NodeKey(secrets.token_bytes(32)), NodeKey(secrets.token_bytes(32))
    port = free_port()
    address = f"/ip4/127.0.0.1/tcp/{port}"
    node = p2p_overlay(ours, port, members={ours.peer_id, theirs.peer_id}, targets={}, restarted=True)
    got: list[bytes] = []

    async def echo(stream: INetStream) -> None:
        await stream.write(b"node: " + await stream.read(100))
        await stream.close()

    async def main() -> None:
        with trio.fail_after(80):
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                node.host.set_stream_handler(TProtocol(ECHO), echo)
                plain = await trio.lowlevel.open_process(
                    [sys.executable, "-c", PLAIN_PEER, address, ours.peer_id, theirs.seed.hex(), ECHO],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                try:
                    await wait_until(lambda: node.connected_peers() == {theirs.peer_id}, timeout=40)
                    stream = await node.host.new_stream(ID.from_base58(theirs.peer_id), [TProtocol(ECHO)])
                    await stream.write(b"from the overlay")
                    got.append(await stream.read(100))
                    await stream.close()
                    with trio.fail_after(40):
                        await plain.wait()
                    assert plain.stdout is not None and plain.stderr is not None
                    out, err = await plain.stdout.receive_some(65536), await plain.stderr.receive_some(1 << 20)
                    assert plain.returncode == 0, err.decode()[-3000:]
                    got.append(out)
                finally:
                    if plain.returncode is None:
                        plain.kill()
                nursery.cancel_scope.cancel()

    trio.run(main)
    assert got[0] == b"plain: from the overlay"
    assert got[1].decode().splitlines() == ["node answered: node: from the plain host", "plain host answered"]
