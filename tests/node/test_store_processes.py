"""Real `truc run` processes on a damaged or foreign store: one line, exit 2, nothing destroyed (issue 10, item 5)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import NodeNotRunningError, TrucError
from tests.procs import Daemon, delivered, one_line_exit_2, provision, running, truc_process, wait_for
from tests.store.blocks import flip_a_bit_in_a_value

pytestmark = pytest.mark.slow
G22, H01 = "000.00.00.G22", "000.00.00.H01"


def run_once(home: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`truc run` that is expected to refuse to start (a node that starts would time out here)."""
    return truc_process("run", "--home", home, timeout=timeout)


def refused(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    err = one_line_exit_2(proc)
    for needle in needles:
        assert needle in err, err


def data_files(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in store.iterdir() if p.suffix in (".ldb", ".log") or p.name.startswith("MANIFEST")}


@pytest.mark.timeout(180)
def test_a_node_refuses_a_damaged_or_foreign_store_with_one_line(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    with running(homes) as nodes:
        doc: Any = nodes["g22"].call(
            "submit",
            **{"from": G22, "to": [H01], "subject": "Kế hoạch", "files": [{"name": "a.bin", "data": os.urandom(3 << 20)}]},
        )
        wait_for(lambda: delivered(nodes["g22"], doc["id"]), 60, "the receipt")
        for d in nodes.values():
            d.stop(signal.SIGTERM)
    g22_store, h01_store = homes["g22"] / "store", homes["h01"] / "store"

    # Another node's store (a copied home, a wrong path in config.toml).
    cfg = homes["h01"] / "config.toml"
    text = cfg.read_text()
    cfg.write_text(text.replace('store = "store"', f'store = "{g22_store}"'))
    refused(run_once(homes["h01"]), "another node", str(g22_store))
    cfg.write_text(text)

    # CURRENT deleted: LevelDB would start an empty store and delete the old tables.
    before = data_files(h01_store)
    current = (h01_store / "CURRENT").read_bytes()
    (h01_store / "CURRENT").unlink()
    refused(run_once(homes["h01"]), "truc store check", "CURRENT")
    assert data_files(h01_store) == before, "the refused start changed the store's files"
    (h01_store / "CURRENT").write_bytes(current)

    # A truncated table.
    Daemon("h01", homes["h01"]).start().stop(signal.SIGTERM)  # a start turns the log into a table
    table = max(h01_store.glob("*.ldb"), key=lambda p: p.stat().st_size)
    os.truncate(table, table.stat().st_size // 2)
    refused(run_once(homes["h01"]), "truc store check", table.name)


@pytest.mark.timeout(180)
def test_corruption_met_while_running_stops_the_node_and_keeps_it_stopped(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    payload = os.urandom(3 << 20)
    with running(homes) as nodes:
        doc: Any = nodes["g22"].call(
            "submit", **{"from": G22, "to": [H01], "subject": "Kế hoạch", "files": [{"name": "a.bin", "data": payload}]}
        )
        wait_for(lambda: delivered(nodes["g22"], doc["id"]), 60, "the receipt")
        nodes["h01"].stop(signal.SIGTERM)
        # In the document's envelope (blocks are files, checked by their hash instead: tests/cli/test_store_cli.py).
        flip_a_bit_in_a_value(homes["h01"] / "store", b"E")
        # A flip inside a value is invisible until it is read: by the fetch
        # below, or earlier by a background compaction LevelDB starts at open
        # (paranoid checks). Either way the node must stop with one line.
        h01 = nodes["h01"].start(wait=False)
        assert h01.proc is not None
        deadline = time.monotonic() + 30
        while h01.proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(TrucError, NodeNotRunningError, OSError), h01.client(timeout=5) as c:
                c.get_document(doc["id"], tmp_path / "out")
                raise AssertionError("the damaged block was served")
            time.sleep(0.1)
        h01.proc.wait(timeout=30)
        lines = h01.log().strip().splitlines()
        assert h01.proc.returncode == 2, lines[-5:]
        assert lines[-1].startswith("truc run: ") and "truc store check" in lines[-1], lines[-5:]
        assert "Traceback" not in h01.log()
        # Restarted (systemd would): it refuses at once, and says why.
        refused(run_once(homes["h01"]), "truc store check", "found damaged")


@pytest.mark.timeout(120)
def test_a_replaced_node_key_is_adopted_only_on_purpose(tmp_path: Path) -> None:
    from identity.keys import NodeKey, load_node_key, save_node_key

    homes = provision(tmp_path, {"g22": [G22]})
    Daemon("g22", homes["g22"]).start().stop(signal.SIGTERM)
    old = load_node_key(homes["g22"] / "node.key").peer_id
    (homes["g22"] / "node.key").unlink()
    save_node_key(homes["g22"] / "node.key", NodeKey(os.urandom(32)))
    new = load_node_key(homes["g22"] / "node.key").peer_id
    refused(run_once(homes["g22"]), "another node", old, new, "truc store adopt")
    adopt = truc_process("store", "adopt", "--home", homes["g22"], timeout=60)
    assert adopt.returncode == 0 and old in adopt.stdout and new in adopt.stdout, adopt.stdout + adopt.stderr
    node = Daemon("g22", homes["g22"]).start()  # not in the directory yet, but its own store again
    node.stop(signal.SIGTERM)
    assert node.proc is not None and node.proc.returncode == 0
