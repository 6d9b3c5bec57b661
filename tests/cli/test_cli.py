"""The truc CLI: through click's CliRunner and as real subprocesses, against real daemons."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import Ctx, cli
from tests.procs import Daemon, provision, running, truc_process, wait_for

pytestmark = pytest.mark.slow
G22, H01, H29 = "000.00.00.G22", "000.00.00.H01", "000.00.00.H29"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    # On a private network made by the operators' commands (truc authority psk, truc init --psk-file).
    homes = provision(tmp_path_factory.mktemp("cli"), {"g22": [G22], "h01": [H01], "h29": [H29]}, psk=True)
    with running(homes) as daemons:
        yield daemons


def truc(*args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(cli, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(truc(*args, "--json").output)


def test_send_inbox_track_fetch_status_with_the_documented_json_shapes(nodes: dict[str, Daemon], tmp_path: Path) -> None:
    g, h = str(nodes["g22"].home), str(nodes["h01"].home)
    attachment = tmp_path / "cong-van.txt"
    attachment.write_text("Kính gửi: UBND tỉnh An Giang\n", "utf-8")
    out = truc(
        "send",
        "--home",
        g,
        "--from",
        "G22",
        "--to",
        "H01",
        "--to",
        "H29",
        "--subject",
        "Về việc thử nghiệm",
        "--urgency",
        "1",
        str(attachment),
    ).output
    doc = out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", doc), out
    assert json.loads(
        truc("send", "--home", g, "--from", "G22", "--to", "H01", "--subject", "x", "--key", "k1", "--json").output
    ).keys() == {"id"}
    wait_for(lambda: all(r["state"] == "delivered" for r in as_json("track", "--home", g, doc)["recipients"]), 30, "receipts")
    inbox = as_json("inbox", "--home", h)
    item = next(i for i in inbox if i["id"] == doc)
    assert {"id", "from", "to", "subject", "received_at"} <= item.keys() and ISO.match(item["received_at"])
    assert item["from"] == G22 and item["to"] == H01 and item["subject"] == "Về việc thử nghiệm"
    # Short ids work where unambiguous.
    truc("status", "--home", h, doc[:12], "03", "--note", "Đã vào sổ")
    truc("status", "--home", h, doc, "04")
    wait_for(lambda: len(as_json("track", "--home", g, doc)["recipients"][0]["statuses"]) == 3, 30, "statuses back at the sender")
    track = as_json("track", "--home", g, doc)
    assert {"id", "from", "recipients"} <= track.keys()
    r0 = track["recipients"][0]
    assert {"code", "state", "statuses", "last_error"} <= r0.keys() and r0["state"] in ("pending", "delivered", "failed")
    assert [s["code"] for s in r0["statuses"]] == ["01", "03", "04"] and all(ISO.match(s["at"]) for s in r0["statuses"])
    text = truc("track", "--home", g, doc).output
    assert "03" in text and "Đã vào sổ" in text
    bad = truc("status", "--home", h, doc, "06", ok=False)
    assert bad.exit_code == 1 and "allowed now: 05 from the recipient" in bad.output
    fetched = tmp_path / "got"
    truc("fetch", "--home", h, doc, "--out", str(fetched), "--ack")
    assert (fetched / "cong-van.txt").read_text("utf-8") == attachment.read_text("utf-8")
    meta = json.loads((fetched / "metadata.json").read_text("utf-8"))
    assert meta["metadata"]["subject"] == "Về việc thử nghiệm" and meta["metadata"]["urgency"] == 1
    assert (
        "acked" not in truc("inbox", "--home", h, "--unacked").output
        or doc[:12] not in truc("inbox", "--home", h, "--unacked").output
    )


def test_peers_queues_info_stats_directory(nodes: dict[str, Daemon]) -> None:
    g = str(nodes["g22"].home)
    peers = as_json("peers", "--home", g)
    assert len(peers) == 2 and all({"peer_id", "codes", "connected", "last_seen"} <= p.keys() for p in peers)
    assert all(p["connected"] for p in peers) and all(ISO.match(p["last_seen"]) for p in peers)
    queues = as_json("queues", "--home", g)
    assert isinstance(queues, list)
    for q in queues:
        assert {"recipient", "pending", "oldest_age_s", "last_error"} <= q.keys()
    info = as_json("info", "--home", g)
    assert info["codes"] == [G22] and info["directory"]["serial"] == 1 and ISO.match(info["directory"]["valid_until"])
    assert info["private_network"] == "psk_file"
    text = truc("info", "--home", g).output
    assert "Văn phòng Chính phủ" in text and "private network on (key file)" in text and "WARNING" not in text
    stats = as_json("stats", "--home", g, "--since", "2020-01-01")
    assert {"sent", "received", "statuses", "deliveries"} <= stats.keys()
    lookup = as_json("directory", "lookup", "--home", g, "H01")
    assert lookup["code"] == H01 and lookup["name"] == "UBND tỉnh An Giang" and not lookup["hosted_here"]
    shown = truc("directory", "show", "--home", g).output
    assert "serial 1" in shown and "000.00.00.H29" in shown


def test_user_errors_are_one_line_with_exit_codes(nodes: dict[str, Daemon], tmp_path: Path) -> None:
    g = str(nodes["g22"].home)
    cases = [
        (["send", "--home", g, "--from", "G22", "--to", "H05", "--subject", "x"], 1, "not in the directory"),
        (["send", "--home", g, "--from", "g22", "--to", "H01", "--subject", "x"], 2, "upper case"),
        (["info", "--home", str(tmp_path)], 2, "config.toml does not exist"),
        (["track", "--home", g, "abc"], 2, "at least its first 8"),
    ]
    for args, code, text in cases:
        r = truc(*args, ok=False)
        assert r.exit_code == code, (args, r.output)
        assert text in r.output and "Traceback" not in r.output


def test_info_warns_when_the_overlay_has_no_private_network(nodes: dict[str, Daemon]) -> None:
    class Client:
        def call(self, method: str, **params: Any) -> Any:
            assert method == "node.info"
            with nodes["g22"].client() as real:
                return {**real.call("node.info"), "private_network": "off"}

    out = CliRunner().invoke(cli, ["info"], obj=Ctx(Path("unused"), Client())).output  # type: ignore[arg-type]
    assert "WARNING   no private network (psk_file): anyone who reaches the overlay port can connect" in out


def test_the_private_network_key_is_made_by_the_authority_and_copied_into_each_home(nodes: dict[str, Daemon]) -> None:
    shared = nodes["g22"].home.parent / "auth" / "swarm.key"
    for daemon in nodes.values():
        copy = daemon.home / "swarm.key"
        assert copy.read_text() == shared.read_text() and copy.stat().st_mode & 0o777 == 0o600
        assert 'psk_file = "swarm.key"' in (daemon.home / "config.toml").read_text()
    assert shared.read_text().startswith("/key/swarm/psk/1.0.0/\n/base16/\n") and shared.stat().st_mode & 0o777 == 0o600
    again = truc("authority", "psk", "--out", str(shared), ok=False)
    assert again.exit_code == 2 and "refusing to overwrite" in again.output


def test_no_node_running_is_exit_3_in_one_line(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]})
    proc = truc_process("info", "--home", homes["g22"], timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "nothing answers at" in proc.stderr


def test_real_subprocess_send_and_track(nodes: dict[str, Daemon]) -> None:
    g = str(nodes["g22"].home)
    sent = truc_process("send", "--home", g, "--from", "G22", "--to", "H29", "--subject", "qua tiến trình", timeout=60)
    assert sent.returncode == 0, sent.stderr
    doc = sent.stdout.strip()
    wait_for(
        lambda: (
            json.loads(truc_process("track", "--home", g, doc, "--json", timeout=60).stdout)["recipients"][0]["state"]
            == "delivered"
        ),
        30,
        "receipt",
    )


def test_every_command_has_help() -> None:
    def walk(group: Any, path: list[str]) -> Iterator[list[str]]:
        for name, cmd in group.commands.items():
            yield [*path, name]
            if hasattr(cmd, "commands"):
                yield from walk(cmd, [*path, name])

    for path in walk(cli, []):
        r = CliRunner().invoke(cli, [*path, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, path
