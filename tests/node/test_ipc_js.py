"""A client in a second language (JavaScript, tests/ipc_js/, cbor-x pinned) runs the integrator flow.

It was written from docs/ipc.md alone; if the document and the node drift
apart, this is where it shows. Needs Node.js and `npm ci` in tests/ipc_js
(.ci/run does it when npm is there); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.procs import provision, running

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent.parent / "ipc_js"
G22, H01 = "000.00.00.G22", "000.00.00.H01"


def _skip_reason() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not installed (the JavaScript client needs it)"
    if not (HERE / "node_modules" / "cbor-x").is_dir():
        return f"run `npm ci` in {HERE} first (.ci/run does this where npm is available)"
    return None


@pytest.mark.timeout(180)
def test_the_javascript_client_runs_the_integrator_flow(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    with running(homes):
        proc = subprocess.run(
            ["node", str(HERE / "flow.mjs"), str(homes["g22"] / "truc.sock"), str(homes["h01"] / "truc.sock"), G22, H01],
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["report"]["statuses"] == ["01", "03", "04", "05", "06"]
    assert {"receipt.received", "status.received"} <= set(result["report"]["events"])
