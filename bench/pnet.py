"""Bulk transfer over the overlay with and without the private network (node/pnet.py).

    python -m bench.pnet [--mb 64] [--rounds 3]

Two bare overlays (node/p2p.py, real py-libp2p hosts on 127.0.0.1) connect;
one writes MB mebibytes on a single yamux stream in 1 MiB writes, the other
reads until the end. Rounds alternate without and with a PSK so the machine's
load hits both alike. Also: the XSalsa20 keystream alone (the cipher's cost
with no network), and the time to refuse a wrong key.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from bench.common import report
from identity.keys import NodeKey
from node.log import NullLog
from node.metrics import Metrics
from node.p2p import P2POverlay
from node.pnet import XSalsa20
from simnet.processes import free_port

BULK = TProtocol("/bench/bulk/1")
CHUNK = 1 << 20


def overlay(key: NodeKey, port: int, members: set[str], psk: bytes | None) -> P2POverlay:
    return P2POverlay(
        key=key,
        listen=[f"/ip4/127.0.0.1/tcp/{port}"],
        is_member=lambda p: p in members,
        targets=dict,
        log=NullLog(),
        metrics=Metrics(),
        psk=psk,
    )


async def transfer(mb: int, psk: bytes | None) -> float:
    """Seconds to move ``mb`` MiB from one overlay to another on one stream."""
    ka, kb = NodeKey(secrets.token_bytes(32)), NodeKey(secrets.token_bytes(32))
    members = {ka.peer_id, kb.peer_id}
    pb = free_port()
    a, b = overlay(ka, free_port(), members, psk), overlay(kb, pb, members, psk)
    done = trio.Event()
    got = 0

    async def sink(stream: object) -> None:
        nonlocal got
        try:
            while True:
                got += len(await stream.read(CHUNK))  # type: ignore[attr-defined]
        except StreamError:
            pass
        done.set()

    b.host.set_stream_handler(BULK, sink)
    with trio.fail_after(300):
        async with trio.open_nursery() as n:
            await n.start(a.run)
            await n.start(b.run)
            await a.host.connect(PeerInfo(ID.from_base58(kb.peer_id), [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{pb}")]))
            stream = await a.host.new_stream(ID.from_base58(kb.peer_id), [BULK])
            block = os.urandom(CHUNK)
            start = time.perf_counter()
            for _ in range(mb):
                await stream.write(block)
            await stream.close()
            await done.wait()
            took = time.perf_counter() - start
            assert got == mb * CHUNK, (got, mb * CHUNK)
            n.cancel_scope.cancel()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"no private network": [], "private network (XSalsa20)": []}
    for _ in range(args.rounds):
        times["no private network"].append(trio.run(transfer, args.mb, None))
        times["private network (XSalsa20)"].append(trio.run(transfer, args.mb, secrets.token_bytes(32)))
    rows = [
        {
            "transfer": name,
            "MiB": args.mb,
            "median_s": statistics.median(ts),
            "MB_per_s": args.mb * CHUNK / 1e6 / statistics.median(ts),
            "runs_s": " ".join(f"{t:.2f}" for t in ts),
        }
        for name, ts in times.items()
    ]
    x = XSalsa20(secrets.token_bytes(32), secrets.token_bytes(24))
    block = bytes(CHUNK)
    start = time.perf_counter()
    for _ in range(256):
        x.xor(block)
    rows.append({"transfer": "XSalsa20 keystream alone", "MiB": 256, "median_s": time.perf_counter() - start, "MB_per_s": None})
    rows[-1]["MB_per_s"] = 256 * CHUNK / 1e6 / rows[-1]["median_s"]
    report("pnet", rows)


if __name__ == "__main__":
    main()
