"""The directory as people read it: what ``directory.show`` answers and ``truc directory show`` prints.

One builder for both places that show it: the running node (node/views.py,
over IPC) and ``truc directory show --directory FILE`` (cli/offline.py,
reading the file itself). Plain JSON/CBOR values: codes as text, times in ms.
"""

from __future__ import annotations

from typing import Any

from .directory import Directory


def directory_view(d: Directory, *, now: int) -> dict[str, Any]:
    return {
        "network": d.net,
        "serial": d.serial,
        "issued_at": d.issued_at,
        "valid_until": d.valid_until,
        "expired": now > d.valid_until,
        "agencies": [
            {"code": str(c), "name": r.name, "node": r.node, "level": c.level}
            for c, r in sorted(d.agencies.items(), key=lambda x: str(x[0]))
        ],
        "nodes": [
            {"peer_id": p, "addrs": list(r.addrs), "codes": [str(c) for c in d.hosted_by(p)]} for p, r in sorted(d.nodes.items())
        ],
        "revoked": [{"kid": kid.hex(), "at": at} for kid, at in sorted(d.revoked.items())],
    }
