"""A node that cannot take what it needs at start exits with one line and status 2, before it serves anything.

Real `truc run` processes: a listen port held by another node, a metrics
port in use, an IPC socket directory that cannot be created, a keys/ folder
others can read.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.procs import one_line_exit_2, provision, running, truc_process

pytestmark = pytest.mark.slow
G22, H01 = "000.00.00.G22", "000.00.00.H01"


def run_until_exit(home: Path, timeout: float = 45) -> subprocess.CompletedProcess[str]:
    """``truc run`` that is expected to exit by itself; fails the test if it is still serving after ``timeout``."""
    try:
        return truc_process("run", "--home", home, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"the node did not exit within {timeout} s; it is serving. stderr:\n{err[-2000:]}")


def listen_port(home: Path) -> int:
    return int(re.search(r"/tcp/(\d+)", (home / "config.toml").read_text()).group(1))  # type: ignore[union-attr]


def set_config(home: Path, old: str, new: str) -> None:
    cfg = home / "config.toml"
    text = cfg.read_text()
    assert old in text, (old, text)
    cfg.write_text(text.replace(old, new))


@pytest.mark.timeout(120)
def test_a_second_node_on_a_taken_listen_port_exits_with_one_line(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    port = listen_port(homes["g22"])
    set_config(homes["h01"], f"/tcp/{listen_port(homes['h01'])}", f"/tcp/{port}")
    with running({"g22": homes["g22"]}) as nodes:
        err = one_line_exit_2(run_until_exit(homes["h01"]))
        assert f"/ip4/127.0.0.1/tcp/{port}" in err and "already in use" in err, err
        assert not (homes["h01"] / "truc.sock").exists(), "nothing of the second node was left serving"
        # The first node still has the port to itself and answers.
        assert nodes["g22"].call("node.info")["codes"] == [G22]


@pytest.mark.timeout(120)
def test_a_metrics_port_in_use_exits_with_one_line(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        set_config(homes["g22"], 'metrics_listen = ""', f'metrics_listen = "127.0.0.1:{taken}"')
        err = one_line_exit_2(run_until_exit(homes["g22"]))
    assert "metrics_listen" in err and f"127.0.0.1:{taken}" in err and "already in use" in err, err
    assert not (homes["g22"] / "truc.sock").exists()


@pytest.mark.timeout(120)
def test_an_ipc_socket_directory_that_cannot_be_created_exits_with_one_line(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]})
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the socket's directory should be")
    set_config(homes["g22"], 'ipc_socket = "truc.sock"', f'ipc_socket = "{blocker}/run/truc.sock"')
    err = one_line_exit_2(run_until_exit(homes["g22"]))
    assert "ipc_socket" in err and str(blocker) in err, err


@pytest.mark.timeout(120)
def test_a_keys_folder_others_can_read_is_refused_like_the_key_files(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]})
    keys = homes["g22"] / "keys"
    assert (os.stat(keys).st_mode & 0o777) == 0o700, "truc init makes it 0700"
    os.chmod(keys, 0o755)
    err = one_line_exit_2(run_until_exit(homes["g22"]))
    assert str(keys) in err and "chmod 700" in err and "0755" in err, err
