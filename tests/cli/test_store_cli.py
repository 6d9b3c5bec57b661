"""`truc store check | gc | repair` and `truc info` on real node homes, real damage, real recovery from peers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import plyvel
import pytest

from protocol.ids import Digest
from tests.procs import delivered, provision, running, wait_for
from tests.procs import truc_process as truc
from tests.store.blocks import flip_a_bit_in_a_block

pytestmark = pytest.mark.slow
G22, H01 = "000.00.00.G22", "000.00.00.H01"


@pytest.mark.timeout(240)
def test_check_gc_repair_and_recovery_from_peers(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    g22, h01 = str(homes["g22"]), str(homes["h01"])
    payload = os.urandom(3 << 20)
    with running(homes) as nodes:
        doc: Any = nodes["g22"].call(
            "submit", **{"from": G22, "to": [H01], "subject": "Báo cáo", "files": [{"name": "bao-cao.bin", "data": payload}]}
        )
        wait_for(lambda: delivered(nodes["g22"], doc["id"]), 60, "the receipt")
        assert "not counted yet (truc store check" in truc("info", "--home", g22).stdout
        busy = truc("store", "check", "--home", g22)
        assert busy.returncode == 1 and "in use by another process" in busy.stderr, busy
        for d in nodes.values():
            d.stop(signal.SIGTERM)

    # What a crash can leave: a block no document lists (a relay's drop cut short), and a submit's in-flight block.
    db = plyvel.DB(str(homes["g22"] / "store"))
    old, cut = b"x" * 1000, b"y" * 500
    (homes["g22"] / "store" / "blocks" / bytes(Digest.of(old)).hex()).write_bytes(old)
    (homes["g22"] / "store" / "blocks" / bytes(Digest.of(cut)).hex()).write_bytes(cut)
    db.put(b"W" + bytes(Digest.of(cut)), (500).to_bytes(4, "big"))
    db.close()
    checked = truc("store", "check", "--home", g22)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "garbage   1 blocks (1000 B)" in checked.stdout and "verdict   sound" in checked.stdout, checked.stdout
    assert "1 blocks of a submit a crash cut short" in checked.stdout
    as_json = json.loads(truc("store", "check", "--home", g22, "--json").stdout)
    assert as_json["clean"] and as_json["garbage_blocks"] == 1 and as_json["records"]["blocks"] == 6

    with running({"g22": homes["g22"]}) as nodes:  # the start sweeps the in-flight block; the garbage stays
        info = truc("info", "--home", g22).stdout
        assert "garbage   1 blocks (1000 B) no document refers to" in info, info
        assert "1 blocks of failed submits removed since start (500 B)" in info, info
        nodes["g22"].stop(signal.SIGTERM)
    gc = truc("store", "gc", "--home", g22)
    assert gc.returncode == 0 and "removed   1 blocks (1000 B)" in gc.stdout and "garbage   none" in gc.stdout, gc.stdout

    # A flipped bit in a received document's block.
    flip_a_bit_in_a_block(homes["h01"] / "store")
    damaged = truc("store", "check", "--home", h01)
    assert damaged.returncode == 1 and "does not match its name" in damaged.stdout, damaged.stdout
    assert "truc store repair" in damaged.stdout, damaged.stdout
    refused = truc("run", "--home", h01)  # check marked it: the node does not start on it
    assert refused.returncode == 2 and "found damaged" in refused.stderr, refused.stderr
    repaired = truc("store", "repair", "--home", h01)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    out = repaired.stdout
    assert "Repair keeps every record LevelDB can still read" in out and "verdict   sound" in out, out
    assert "1 documents waiting for their blocks again" in out and "cursors reset" in out, out
    backups = list(homes["h01"].glob("store.damaged-*"))
    assert len(backups) == 1 and (backups[0] / "CURRENT").exists() and f"backup    {backups[0]}" in out

    # The node gets the lost block back from its peer, and the document opens.
    with running(homes) as nodes:

        def opens() -> bool:
            try:
                with nodes["h01"].client() as c:
                    c.get_document(doc["id"], tmp_path / "out")
                return True
            except Exception:
                return False

        wait_for(opens, 60, "the document refetched and readable")
        assert (tmp_path / "out" / "bao-cao.bin").read_bytes() == payload
        inbox: Any = nodes["h01"].call("inbox.list")
        assert [i["id"] for i in inbox["items"]] == [doc["id"]], "the repaired node delivered it once, not twice"
        for d in nodes.values():
            d.stop(signal.SIGTERM)

    # CURRENT deleted: check says it cannot open; repair rebuilds it with everything.
    (homes["g22"] / "store" / "CURRENT").unlink()
    broken = truc("store", "check", "--home", g22)
    assert broken.returncode == 1 and "cannot be opened" in broken.stdout and "CURRENT" in broken.stdout, broken.stdout
    fixed = truc("store", "repair", "--home", g22, "--no-backup")
    assert fixed.returncode == 0 and "no record readable before is gone" in fixed.stdout, fixed.stdout
    assert "backup    none (--no-backup)" in fixed.stdout
    with running({"g22": homes["g22"]}) as nodes:
        assert delivered(nodes["g22"], doc["id"])
