"""Real `truc run` processes on loopback: delivery, SIGKILL mid-delivery, clean shutdown, systemd."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import NotAuthorizedError
from tests.procs import Daemon, delivered, one_line_exit_2, provision, running, truc_process, wait_for

pytestmark = pytest.mark.slow
G22, H01, H29, H31 = "000.00.00.G22", "000.00.00.H01", "000.00.00.H29", "000.00.00.H31"


@pytest.mark.timeout(120)
def test_three_processes_deliver_with_receipts_and_stop_cleanly(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01], "h29": [H29], "relay": [H31]})
    with running(homes) as nodes:
        g22 = nodes["g22"]
        payload = os.urandom(5_000_000)
        doc: Any = g22.call(
            "submit",
            **{"from": G22, "to": [H01, H29], "subject": "Kế hoạch", "files": [{"name": "phu-luc.bin", "data": payload}]},
        )
        wait_for(lambda: delivered(g22, doc["id"]), 60, "both receipts")
        out = tmp_path / "out"
        with nodes["h29"].client() as c:
            got = c.get_document(doc["id"], out)
        assert (out / "phu-luc.bin").read_bytes() == payload and got["metadata"]["subject"] == "Kế hoạch"
        # The relay has the envelope for catch-up but cannot open it.
        wait_for(
            lambda: any(d["id"] == doc["id"] for d in nodes["relay"].call("documents.list", role="relayed")), 30, "relay copy"
        )  # type: ignore[attr-defined]
        with nodes["relay"].client() as c, pytest.raises(NotAuthorizedError, match="not a party"):
            c.get_document(doc["id"], tmp_path / "relay", code=H31)
        # SIGTERM: stops within a few seconds, port and socket released.
        port = int((homes["h01"] / "config.toml").read_text().split("/tcp/")[1].split('"')[0])
        took = nodes["h01"].stop(signal.SIGTERM)
        assert took < 5, f"shutdown took {took:.1f} s"
        assert nodes["h01"].proc is not None and nodes["h01"].proc.returncode == 0, nodes["h01"].log()
        assert not (homes["h01"] / "truc.sock").exists()
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
        assert '"event": "node.stopped"' in nodes["h01"].log()
        assert "Failed to open" not in nodes["g22"].log()  # library noise stays out of our log lines


@pytest.mark.timeout(180)
def test_sigkill_during_delivery_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    rnd = random.Random(3)
    with running(homes) as nodes:
        g22, h01 = nodes["g22"], nodes["h01"]
        # connected first: the kill must land mid-delivery, not while the pair is still dialling (one end of a
        # pair dials first, the other a few seconds later, docs/overlay.md section 1)
        wait_for(lambda: g22.call("node.info")["peers_connected"] == 1, 30, "g22 connected to h01")
        ids: list[str] = []
        receipted_before_kill: set[str] = set()
        with g22.client() as c:
            for i in range(40):
                size = 2_000_000 if i % 10 == 3 else 2000  # some documents travel as blocks
                ids.append(
                    c.call(
                        "submit",
                        **{
                            "from": G22,
                            "to": [H01],
                            "subject": f"Văn bản {i}",
                            "files": [{"name": "a.bin", "data": os.urandom(size)}],
                        },
                    )["id"]
                )
                if i == 25:
                    time.sleep(rnd.uniform(0.0, 0.3))
                    for doc in ids:
                        if delivered(g22, doc):
                            receipted_before_kill.add(doc)
                    h01.kill()  # SIGKILL, mid-delivery
        assert receipted_before_kill, "nothing was receipted before the kill; the test proves nothing"
        h01.start()
        wait_for(lambda: all(delivered(g22, d) for d in ids), 120, "all receipts after restart")
        inbox: Any = h01.call("inbox.list", limit=1000)
        got = [i["id"] for i in inbox["items"]]
        assert sorted(got) == sorted(ids), "every document exactly once"
        assert receipted_before_kill <= set(got)


@pytest.mark.timeout(60)
def test_systemd_notify_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]})
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    node = Daemon("g22", homes["g22"], env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    try:
        node.start()
        seen: list[str] = []
        while not any("WATCHDOG=1" in m for m in seen) or not any(m.startswith("READY=1") for m in seen):
            seen.append(sock.recv(4096).decode())
        ready = next(m for m in seen if m.startswith("READY=1"))
        assert "STATUS=serving 000.00.00.G22" in ready
        node.stop(signal.SIGTERM)
        rest = []
        sock.settimeout(2)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
        sock.close()


@pytest.mark.timeout(60)
def test_metrics_endpoint(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]}, tune={'metrics_listen = ""': 'metrics_listen = "127.0.0.1:0"'})
    with running(homes) as nodes:
        line = next(ln for ln in nodes["g22"].log().splitlines() if "metrics.listening" in ln)
        address = line.split('"address": "')[1].split('"')[0]
        body = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
        assert "truc_directory_serial 1" in body and "# TYPE truc_peers_connected gauge" in body
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://{address}/other", timeout=10)


@pytest.mark.timeout(60)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]})
    cfg = homes["g22"] / "config.toml"
    cfg.write_text(cfg.read_text().replace("cap_s = 300", 'cap_s = "soon"'))
    err = one_line_exit_2(truc_process("run", "--home", homes["g22"], timeout=60))
    assert "config.toml: [retry] cap_s: expected a number" in err
    os.chmod(homes["g22"] / "node.key", 0o644)
    cfg.write_text(cfg.read_text().replace('cap_s = "soon"', "cap_s = 300"))
    assert "chmod 600" in one_line_exit_2(truc_process("run", "--home", homes["g22"], timeout=60))


@pytest.mark.timeout(120)
def test_restart_uses_the_directory_cache_and_rebuilds_a_damaged_one(tmp_path: Path) -> None:
    import json

    homes = provision(tmp_path, {"g22": [G22]})
    node = Daemon("g22", homes["g22"])
    cache = homes["g22"] / "cache" / "directory.bin"
    try:
        for _ in range(3):
            node.start()
            node.stop(signal.SIGTERM)
            data = bytearray(cache.read_bytes())
        data[len(data) // 2] ^= 1
        cache.write_bytes(bytes(data))
        node.start()
        node.stop(signal.SIGTERM)
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
    events = [json.loads(line) for line in node.log_path.read_text().splitlines() if '"directory.loaded"' in line]
    assert [(e["cache"], e["level"], e["written"]) for e in events] == [
        ("absent", "info", True),
        ("hit", "info", False),
        ("hit", "info", False),
        ("damaged", "warning", True),
    ], events
    assert "HMAC" in events[-1]["detail"] and cache.read_bytes() != bytes(data)
