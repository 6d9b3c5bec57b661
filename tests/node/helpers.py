from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from identity.keys import NodeKey
from identity.sealing import FileSource
from node import views
from node.log import NullLog
from node.metrics import Metrics
from node.p2p import P2POverlay
from protocol.agency import AgencyCode
from protocol.document import DocumentMeta, FileBytes
from protocol.ids import Digest
from simnet.cluster import Cluster
from simnet.virtual import VirtualNetwork

G22, SUB, H01, H29, H31 = "000.00.00.G22", "000.00.01.G22", "000.00.00.H01", "000.00.00.H29", "000.00.00.H31"
C = AgencyCode.parse


def run_virtual(fn: Callable[[], Awaitable[Any]], *, limit_s: float = 3600) -> Any:
    """Run ``fn`` under a MockClock that jumps over idle time, with a virtual-time limit."""

    async def main() -> Any:
        with trio.fail_after(limit_s):
            return await fn()

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def cluster(tmp: Path, nodes: dict[str, list[str]] | None = None, **kw: Any) -> Cluster:
    nodes = nodes or {"g22": [G22, SUB], "h01": [H01], "h29": [H29], "relay": [H31]}
    kw.setdefault("network", VirtualNetwork(seed=kw.pop("seed", 1)))
    return Cluster(tmp, nodes, **kw)


def p2p_overlay(
    key: NodeKey,
    port: int,
    *,
    members: set[str],
    targets: dict[str, list[str]],
    psk: bytes | None = None,
    psk_also_accept: tuple[bytes, ...] = (),
    v2: bool = True,
    restarted: bool = False,
) -> P2POverlay:
    """A bare real overlay on 127.0.0.1:``port`` (no engine), for tests of the libp2p adapter itself."""
    return P2POverlay(
        key=key,
        listen=[f"/ip4/127.0.0.1/tcp/{port}"],
        is_member=lambda p: p in members,
        targets=lambda: targets,
        log=NullLog(),
        metrics=Metrics(),
        psk=psk,
        psk_also_accept=psk_also_accept,
        v2=v2,
        restarted=restarted,
    )


def meta(subject: str = "Về việc thử nghiệm", **kw: Any) -> DocumentMeta:
    return DocumentMeta(subject=subject, **kw)


def files(*sizes: int) -> list[FileSource]:
    return [FileSource(f"f{i}.bin", "application/octet-stream", data=bytes([i % 251]) * n) for i, n in enumerate(sizes)]


async def send(c: Cluster, sender: str, to: list[str], *sizes: int, **kw: Any) -> Digest:
    node = c.by_code(sender)
    return await node.e().submit(C(sender), [C(t) for t in to], meta(), files(*sizes), **kw)


def delivered(c: Cluster, sender: str, doc: Digest) -> bool:
    return all(r["state"] == "delivered" for r in views.track(c.by_code(sender).e(), doc)["recipients"])


def in_inbox(c: Cluster, code: str, doc: Digest) -> bool:
    node = c.by_code(code)
    return node.running and node.e().store.inbox_entry(C(code), doc) is not None


def read_files(c: Cluster, code: str, doc: Digest) -> list[bytes]:
    out: dict[int, bytes] = {}
    for ev in c.by_code(code).e().read_document(doc, C(code)):
        if isinstance(ev, FileBytes):
            out[ev.index] = out.get(ev.index, b"") + ev.data
    return [out[i] for i in sorted(out)]
