"""Real py-libp2p hosts on 127.0.0.1: a taken port, and a refused peer that keeps coming back."""

from __future__ import annotations

import io
import json
import secrets

import multiaddr
import pytest
import trio

import node.p2p
from identity.keys import NodeKey
from node.log import Log
from node.metrics import Metrics
from node.p2p import P2POverlay
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


@pytest.mark.timeout(60)
def test_a_refused_peer_redialling_is_logged_once_then_rate_limited_with_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

    monkeypatch.setattr(node.p2p, "REFUSED_LOG_EVERY_S", 2.0)
    a_key, out_key = NodeKey(secrets.token_bytes(32)), NodeKey(secrets.token_bytes(32))
    pa = free_port()
    stream = io.StringIO()
    metrics = Metrics()
    a = P2POverlay(
        key=a_key,
        listen=[f"/ip4/127.0.0.1/tcp/{pa}"],
        is_member=lambda p: p == a_key.peer_id,
        targets=dict,
        log=Log(stream=stream, fmt="json"),
        metrics=metrics,
    )
    outsider = p2p_overlay(out_key, free_port(), members={a_key.peer_id, out_key.peer_id}, targets={})
    a_addr = PeerInfo(ID.from_base58(a_key.peer_id), [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{pa}")])

    def refused_lines() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [x for x in lines if x["event"] == "peer.refused"]

    async def redial(times: int) -> None:
        for _ in range(times):
            before = metrics.get("connections_refused", reason="not_in_directory")
            with trio.move_on_after(5):
                try:
                    await outsider.host.connect(a_addr)
                except Exception:
                    pass  # refused: what we want
            await wait_until(lambda b=before: metrics.get("connections_refused", reason="not_in_directory") > b, timeout=10)
            await outsider.host.get_network().close_peer(a_addr.peer_id)  # its half of the refused connection
            await trio.sleep(0.05)

    async def main() -> None:
        with trio.fail_after(50):
            async with trio.open_nursery() as n:
                await n.start(a.run)
                await n.start(outsider.run)
                await redial(8)
                await wait_until(lambda: metrics.get("connections_refused", reason="not_in_directory") >= 8, timeout=10)
                lines = refused_lines()
                assert len(lines) == 1, lines  # the first refusal is logged, the next ones only counted
                assert lines[0]["peer"] == out_key.peer_id[:16] and lines[0]["level"] == "warning"
                await trio.sleep(2.1)
                await redial(1)
                await wait_until(lambda: len(refused_lines()) == 2, timeout=10)
                later = refused_lines()[1]
                refusals = metrics.get("connections_refused", reason="not_in_directory")
                assert later["suppressed"] == refusals - 2, (later, refusals)
                n.cancel_scope.cancel()

    trio.run(main)
