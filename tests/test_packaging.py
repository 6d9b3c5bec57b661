"""The systemd unit: the settings the daemon relies on, and systemd's own verifier."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from protocol.errors import EXIT_FIX_IT

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "packaging" / "systemd" / "truc.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_runs_the_daemon_as_systemd_expects() -> None:
    s = unit()["Service"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"  # node/systemd.py sends READY/WATCHDOG/STOPPING
    assert int(s["WatchdogSec"]) > 0 and s["Restart"] == "on-failure"
    assert s["RestartPreventExitStatus"] == str(EXIT_FIX_IT)  # what the operator must fix: restarting cannot
    assert s["User"] == "truc" and s["StateDirectory"] == "truc" and s["RuntimeDirectory"] == "truc"
    assert s["ExecStart"].endswith("truc run --home /var/lib/truc")
    assert s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict"
    assert "u truc" in (ROOT / "packaging" / "systemd" / "truc.sysusers").read_text()


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of this project's machines (Debian systemd)"
    truc = Path(sys.executable).with_name("truc")
    text = UNIT.read_text().replace("/opt/truc/venv/bin/truc", str(truc))
    (tmp_path / "truc.service").write_text(text)
    proc = subprocess.run([analyze, "verify", str(tmp_path / "truc.service")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
