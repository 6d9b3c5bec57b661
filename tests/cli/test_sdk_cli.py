"""``truc sdk enable | add-system | systems``: the exact forms operators' scripts use, on a home made by `truc init`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from cli.main import cli
from identity.home import Home
from identity.sdk_systems import load_secret
from tests.procs import invoke

G22, H29 = "000.00.00.G22", "000.00.00.H29"


def home(tmp_path: Path) -> Path:
    auth = tmp_path / "auth"
    invoke("authority", "init", "--out", str(auth), "--network", "truc-test")
    h = tmp_path / "node"
    invoke(
        "init", "--home", str(h), "--authority", str(auth / "authority.pub"), "--listen", "/ip4/127.0.0.1/tcp/4999", "--code", G22
    )
    return h


def test_enable_add_system_and_list_them_without_secrets(tmp_path: Path) -> None:
    h = home(tmp_path)
    assert Home.load(h).config.sdk.listen == ""  # off by default
    invoke("sdk", "enable", "--home", str(h), "--listen", "127.0.0.1:8080")
    assert Home.load(h).config.sdk.listen == "127.0.0.1:8080"
    out = json.loads(invoke("sdk", "add-system", "--home", str(h), "--system-id", "iofice", "--agency", G22, "--json"))
    assert set(out) == {"system_id", "secret", "secret_file"} and out["system_id"] == "iofice" and len(out["secret"]) == 64
    path = Path(out["secret_file"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.parent == h / "sdk"
    assert load_secret(path, "iofice") == out["secret"].encode()
    cfg = Home.load(h).config
    assert [(s.system_id, [str(c) for c in s.agencies]) for s in cfg.sdk.systems] == [("iofice", [G22])]
    assert path in Home.load(h).secret_files  # never read for an IPC client's submit-by-path
    text = invoke("sdk", "add-system", "--home", str(h), "--system-id", "vpub", "--agency", "G22")
    assert "shown once" in text
    listed = json.loads(invoke("sdk", "systems", "--home", str(h), "--json"))
    assert [s["system_id"] for s in listed] == ["iofice", "vpub"]
    assert out["secret"] not in invoke("sdk", "systems", "--home", str(h)) + json.dumps(listed)


def test_refusals_name_what_to_fix_and_write_nothing(tmp_path: Path) -> None:
    h = home(tmp_path)
    invoke("sdk", "add-system", "--home", str(h), "--system-id", "iofice", "--agency", G22)
    before = (h / "config.toml").read_text()
    for args, words in [
        (["--system-id", "iofice", "--agency", G22], "exists already"),
        (["--system-id", "other", "--agency", H29], "not hosted"),
        (["--system-id", "bad id!", "--agency", G22], "system_id"),
    ]:
        r = CliRunner().invoke(cli, ["sdk", "add-system", "--home", str(h), *args])
        assert r.exit_code == 2 and words in r.output, r.output
    r = CliRunner().invoke(cli, ["sdk", "enable", "--home", str(h), "--listen", "nowhere"])
    assert r.exit_code == 2 and "HOST:PORT" in r.output, r.output
    assert (h / "config.toml").read_text() == before
    assert sorted(p.name for p in (h / "sdk").iterdir()) == ["iofice.secret"]
