"""An independent libp2p implementation (js-libp2p, tests/interop/js) joins a real Trục node on its private network.

Both ways: the js peer dials the node, and the node dials the js peer at its
directory address; on each connection identify, ping and one /truc/sync/1
heads request. Refused without the private-network key, and cut off when its
identity is not a node of the directory. The node is a real `truc run`
process provisioned with the operators' commands (truc authority psk, truc
init --psk-file). Skipped, saying why, where Node.js or the js packages
(`npm ci` in tests/interop/js, done by .ci/run) are missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from identity.keys import load_node_key
from node.libp2p_fixes import agent_version
from protocol.messages import SyncOp, SyncRequest
from tests.procs import Daemon, invoke, provision, running, wait_for

pytestmark = pytest.mark.slow
JS = Path(__file__).resolve().parent / "js"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "overlay.md"
G22, H01 = "000.00.00.G22", "000.00.00.H01"


def js_unavailable() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "node (Node.js >= 20) is not installed"
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.match(r"v(\d+)\.", out)
    if not m or int(m.group(1)) < 20:
        return f"Node.js >= 20 is needed, found {out or 'nothing'}"
    if not (JS / "node_modules" / "libp2p" / "package.json").exists():
        return f"the js peer's packages are not installed: run `npm ci` in {JS} (.ci/run does it when npm exists)"
    return None


def documented_protocols() -> set[str]:
    """The protocol ids of docs/overlay.md's table of what identify announces."""
    text = DOCS.read_text("utf-8")
    section = text.split("### What identify announces", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `(/[^`]+)`", section, re.M))


@dataclass
class Net:
    node: Daemon
    node_peer: str
    node_addr: str
    js_seed: str
    js_peer: str
    js_addr: str  # the js member's address in the directory
    psk: Path


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    reason = js_unavailable()
    if reason is not None:
        print(f"SKIP js-libp2p interop: {reason}")
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("interop")
    # "js" is a directory member whose node key the js peer uses; no truc process runs for it.
    homes = provision(tmp, {"g22": [G22], "js": [H01]}, psk=True)
    js_key = load_node_key(homes["js"] / "node.key")
    js_addr = tomllib.loads((homes["js"] / "config.toml").read_text())["node"]["listen"][0]
    node_addr = tomllib.loads((homes["g22"] / "config.toml").read_text())["node"]["listen"][0]
    with running({"g22": homes["g22"]}) as daemons:
        node_peer = load_node_key(homes["g22"] / "node.key").peer_id
        yield Net(daemons["g22"], node_peer, f"{node_addr}/p2p/{node_peer}", js_key.seed.hex(), js_key.peer_id, js_addr,
                  tmp / "auth" / "swarm.key")  # fmt: skip


def run_js(*args: str, seed: str, timeout_s: float = 20) -> tuple[int, dict[str, dict[str, Any]], float]:
    """Run the js peer; returns its exit code, its events by name, and the seconds it ran."""
    start = time.monotonic()
    proc = subprocess.run(
        ["node", "--import", "./polyfill.mjs", "peer.mjs", "--seed", seed, "--timeout", str(int(timeout_s * 1000)), *args],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=timeout_s + 30,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    elapsed = time.monotonic() - start
    events = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            events[e["event"]] = e
    assert "crashed" not in events, proc.stdout + proc.stderr
    return proc.returncode, events, elapsed


def check_exchange(net: Net, events: dict[str, dict[str, Any]], direction: str) -> None:
    ident = events["identify"]
    assert ident["peer"] == net.node_peer
    assert ident["agent"] == agent_version() and re.fullmatch(r"truc/\S+ \(py-libp2p/0\.8\.1\)", ident["agent"])
    assert set(ident["protocols"]) == documented_protocols(), "identify and docs/overlay.md disagree"
    assert events["ping"]["rtt_ms"] >= 0
    sync = events["sync"]
    assert sync["request"] == SyncRequest(SyncOp.HEADS).encode().hex()  # the js encoder writes our canonical bytes
    answer = sync["response"]
    assert set(answer) == {"v", "epoch", "heads", "serial"} and answer["v"] == 1 and answer["serial"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", answer["epoch"]) and isinstance(answer["heads"], list)
    conn = events["connection"]
    assert conn["direction"] == direction and conn["remote"] == net.node_peer and conn["open"] == 1


def node_log_has(net: Net, event: str, **fields: str) -> bool:
    for line in net.node.log(1 << 22).splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("event") == event and all(v in str(e.get(k, "")) for k, v in fields.items()):
                return True
    return False


def test_the_js_peer_dials_the_node_on_the_private_network(net: Net) -> None:
    rc, events, took = run_js("--dial", net.node_addr, "--psk", str(net.psk), seed=net.js_seed)
    assert rc == 0 and "done" in events, events
    check_exchange(net, events, "outbound")
    wait_for(lambda: node_log_has(net, "peer.connected", peer=net.js_peer[:16]), 10, "the node saw the js member")
    print(f"js dial + identify + ping ({events['ping']['rtt_ms']} ms) + sync: {took:.2f} s including Node.js start")


def test_the_node_dials_the_js_peer_at_its_directory_address(net: Net) -> None:
    rc, events, took = run_js("--listen", net.js_addr, "--expect", net.node_peer, "--psk", str(net.psk), seed=net.js_seed,
                              timeout_s=40)  # fmt: skip
    assert rc == 0 and "done" in events, events
    check_exchange(net, events, "inbound")
    print(f"node dialled the js peer; exchange done after {took:.2f} s")


def test_without_the_private_network_key_the_js_peer_is_refused_both_ways(net: Net) -> None:
    rc, events, _ = run_js("--dial", net.node_addr, "--refused", seed=net.js_seed)
    assert rc == 0 and events["refused"]["stage"] == "connect", events
    wait_for(lambda: node_log_has(net, "peer.refused", reason="without a private network"), 10, "the node's refusal")
    rc, events, _ = run_js("--listen", net.js_addr, "--expect", net.node_peer, "--refused", seed=net.js_seed, timeout_s=8)
    assert rc == 0 and events["refused"]["stage"] == "connect" and "no connection" in events["refused"]["error"], events


def test_outside_the_directory_the_js_peer_is_cut_off_after_the_handshake(net: Net) -> None:
    rc, events, took = run_js("--dial", net.node_addr, "--psk", str(net.psk), "--refused", seed=secrets.token_hex(32))
    assert rc == 0 and "refused" in events and "identify" not in events, events
    outsider = events["started"]["peer"]
    wait_for(lambda: node_log_has(net, "peer.refused", peer=outsider[:16], reason="not a node of the directory"), 10, "cut off")
    print(f"outsider cut off at stage {events['refused']['stage']!r}: {events['refused']['error']} ({took:.2f} s)")


def test_mid_rotation_a_node_accepts_the_js_peer_with_the_old_key_and_with_the_new(tmp_path: Path) -> None:
    """Step 2 of the rotation in docs/operations.md: the node dials with the new key, still accepts the old one."""
    reason = js_unavailable()
    if reason is not None:
        print(f"SKIP js-libp2p interop: {reason}")
        pytest.skip(reason)
    homes = provision(tmp_path, {"g22": [G22], "js": [H01]}, psk=True)
    old = tmp_path / "auth" / "swarm.key"
    new = tmp_path / "auth" / "swarm.new.key"
    invoke("authority", "psk", "--out", str(new))
    shutil.copy(new, homes["g22"] / "swarm.new.key")
    cfg = homes["g22"] / "config.toml"
    text = cfg.read_text()
    assert 'psk_file = "swarm.key"' in text and "psk_also_accept = []" in text
    text = text.replace('psk_file = "swarm.key"', 'psk_file = "swarm.new.key"')
    cfg.write_text(text.replace("psk_also_accept = []", 'psk_also_accept = ["swarm.key"]'))
    seed = load_node_key(homes["js"] / "node.key").seed.hex()
    node_peer = load_node_key(homes["g22"] / "node.key").peer_id
    addr = tomllib.loads(cfg.read_text())["node"]["listen"][0] + f"/p2p/{node_peer}"
    with running({"g22": homes["g22"]}):
        for key in (old, new):
            rc, events, _ = run_js("--dial", addr, "--psk", str(key), seed=seed)
            assert rc == 0 and "done" in events and events["sync"]["response"]["serial"] == 1, (key.name, events)
