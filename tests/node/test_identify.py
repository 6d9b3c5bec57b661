"""Identify says who we are, and announces exactly the protocols docs/overlay.md documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
from libp2p.identity.identify.identify import ID as IDENTIFY
from libp2p.identity.identify.identify import parse_identify_response
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID

from node.libp2p_fixes import agent_version
from simnet.cluster import Cluster, wait_until
from tests.interop.test_js_peer import documented_protocols
from tests.node.helpers import G22, H01

pytestmark = pytest.mark.slow


def test_the_documented_table_is_found() -> None:
    assert len(documented_protocols()) == 10 and "/truc/sync/2" in documented_protocols()


@pytest.mark.timeout(60)
def test_identify_says_who_we_are_and_announces_exactly_the_documented_protocols(tmp_path: Path) -> None:
    c = Cluster(tmp_path, {"a": [G22], "b": [H01]}, network=None)

    async def main() -> None:
        with trio.fail_after(50):
            async with trio.open_nursery() as n:
                await c.start_all(n)
                a = c.node("a").e()
                await wait_until(lambda: len(a.overlay.connected_peers()) == 1, timeout=20)
                host = a.overlay.host  # type: ignore[attr-defined]
                stream = await host.new_stream(ID.from_base58(c.node("b").peer_id), [IDENTIFY])
                data = b""
                try:
                    while True:
                        data += await stream.read(65536)
                except StreamError:  # the answerer closes after one message
                    pass
                answer = parse_identify_response(data)
                assert answer.agent_version == agent_version()
                assert re.fullmatch(r"truc/\S+ \(py-libp2p/0\.8\.1\)", answer.agent_version)
                assert set(answer.protocols) == documented_protocols() and len(answer.protocols) == 10
                n.cancel_scope.cancel()

    trio.run(main)
