"""README's main job: the demo runs end to end (short form) and checks its own claims."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.procs import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_short_demo_passes() -> None:
    proc = subprocess.run([sys.executable, "-m", "cli", "demo", "--short"], capture_output=True, text=True, cwd=ROOT, timeout=170)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for line in (
        "01 receipt from H29",
        "accepted by G22, which tracks its delivery to each recipient",
        "signed with H41's key, verified against the signed directory",
        "03  Đã vào sổ văn bản đến",
        "06  Đã hoàn thành",
        "an illegal status is refused",
        "sent again, it stays one document",
        "PDF still in VNPT's zip",
        "reads 01 and 03 back",
        "sendEdoc (signed with the system's secret, HMAC-SHA256) answered DocId",
        "updateStatus(done): it is off the list",
        "sendStatus done, receiveStatus 01",
        "caught up: 2/2 documents",
        "8/8 documents, each exactly once",
        "0 pending, 0 failed",
        "removed the temporary network",
    ):
        assert line in out, f"missing {line!r} in:\n{out}"
    assert re.search(r"All \d+ checks passed\.", out), out
