"""``truc store check | gc | repair | adopt``: the operator's tools for a stopped node's store.

LevelDB allows one process per database, so each fails with ``store_locked``
while the node runs. Results are plain dicts (``--json`` prints them as is);
cli/main.py renders them. The work is in store/check.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from identity.home import Home
from identity.keys import load_node_key
from store import check as store_check
from store.records import Owner
from store.store import Store


def _now() -> int:
    return int(time.time() * 1000)


def store_path(root: Path) -> Path:
    return Home.load(root).store


def check(root: Path) -> dict[str, Any]:
    path = store_path(root)
    started = time.monotonic()
    report = store_check.check(path, now=_now())
    return {**report.to_dict(), "seconds": round(time.monotonic() - started, 2)}


def gc(root: Path) -> dict[str, Any]:
    path = store_path(root)
    report, removed, size = store_check.collect_garbage(path, now=_now())
    return {**report.to_dict(), "removed_blocks": removed, "removed_bytes": size}


def default_backup(path: Path) -> Path:
    return path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")


def repair(root: Path, *, backup: Path | None, no_backup: bool) -> dict[str, Any]:
    path = store_path(root)
    target = None if no_backup else (backup or default_backup(path))
    return store_check.repair(path, now=_now(), backup=target).to_dict()


def adopt(root: Path) -> dict[str, Any]:
    """Record this node (network, peer id) as the store's owner, replacing another: after a deliberate node key change."""
    home = Home.load(root)
    me = Owner(home.config.network, load_node_key(home.node_key).peer_id)
    path = home.store
    with Store(path, create=False, offline=True) as s:
        before = s.owner
    with Store(path, create=False, owner=me, adopt=True):
        pass
    return {"store": str(path), "was": before.describe() if before else "", "now": me.describe()}
