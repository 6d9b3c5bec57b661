"""Real py-libp2p hosts on 127.0.0.1: a taken port."""

from __future__ import annotations

import secrets

import multiaddr
import pytest
import trio

from identity.keys import NodeKey
from protocol.errors import ConfigError
from simnet.cluster import free_port, wait_until
from tests.node.helpers import p2p_overlay

pytestmark = pytest.mark.slow


@pytest.mark.timeout(60)
def test_a_second_overlay_on_a_taken_port_is_a_config_error_and_the_first_keeps_it() -> None:
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

    first_key, second_key, dialer_key = (NodeKey(secrets.token_bytes(32)) for _ in range(3))
    port = free_port()
    members = {first_key.peer_id, second_key.peer_id, dialer_key.peer_id}
    first = p2p_overlay(first_key, port, members=members, targets={})
    second = p2p_overlay(second_key, port, members=members, targets={})
    dialer = p2p_overlay(dialer_key, free_port(), members=members, targets={})

    async def main() -> None:
        with trio.fail_after(50):
            async with trio.open_nursery() as n:
                await n.start(first.run)
                with pytest.RaisesGroup(
                    pytest.RaisesExc(ConfigError, match=f"/tcp/{port}: the address is already in use"), flatten_subgroups=True
                ):
                    await n.start(second.run)
                # Every connection to the port reaches the first node (the kernel does not split them).
                await n.start(dialer.run)
                for _ in range(6):
                    await dialer.host.connect(
                        PeerInfo(ID.from_base58(first_key.peer_id), [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")])
                    )
                    await wait_until(lambda: dialer_key.peer_id in first.connected_peers(), timeout=10)
                    await dialer.host.get_network().close_peer(ID.from_base58(first_key.peer_id))
                    await wait_until(lambda: dialer_key.peer_id not in first.connected_peers(), timeout=10)
                n.cancel_scope.cancel()

    trio.run(main)
