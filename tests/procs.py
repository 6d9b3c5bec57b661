"""Real node processes for tests: provisioned through the real CLI commands, run as ``truc run``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cli.main import cli
from identity.home import Home
from protocol import ipc
from protocol.framing import FrameDecoder
from simnet.processes import ROOT, NodeProcess, free_port
from simnet.processes import wait_for as _wait_for

Daemon = NodeProcess
TEST_TUNING = {"interval_s = 30": "interval_s = 2"}  # catch-up rounds every 2 s instead of 30
__all__ = [
    "ROOT",
    "Daemon",
    "delivered",
    "invoke",
    "ipc_exchange",
    "one_line_exit_2",
    "provision",
    "running",
    "truc_process",
    "wait_for",
]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, f"truc {' '.join(args)}: {result.output}"
    return result.output


def python_probe(code: str, timeout: float = 60) -> None:
    """Run ``code`` in a fresh interpreter from the repository root (a process with nothing imported yet)."""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=timeout)


def truc_process(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``truc ARGS`` as its own process from this source tree: exit status, stdout and stderr as an operator sees them.

    Raises subprocess.TimeoutExpired (the process killed) after ``timeout``.
    """
    return subprocess.run(
        [sys.executable, "-m", "cli", *(str(a) for a in args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def one_line_exit_2(proc: subprocess.CompletedProcess[str], command: str = "truc run") -> str:
    """What the operator must fix: exit 2 and one line on stderr, no traceback. Returns the line."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"{command}: "), err
    return err


def delivered(d: NodeProcess, doc: str) -> bool:
    """Every recipient of ``doc`` has receipted it, as its sender's node ``d`` tracks it."""
    track: Any = d.call("document.track", id=doc)
    return all(r["state"] == "delivered" for r in track["recipients"])


def ipc_exchange(
    path: Path, data: bytes, *, half_close: bool = True, settle: float = 0.0, timeout: float = 10.0, until_closed: bool = False
) -> list[dict[str, Any]]:
    """Send raw bytes to a node's socket (``settle`` s later, half-close); every message it answers until it closes.

    A node that stopped reading (and answered why) may reset the connection
    while we still send, or close it with our bytes unread: what it answered
    is read all the same. A node that stays quiet for ``timeout`` ends the
    exchange with what came, or, with ``until_closed``, fails it (TimeoutError).
    """
    out: list[dict[str, Any]] = []
    dec = FrameDecoder(max_bytes=ipc.MAX_ANSWER_BYTES)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        try:
            s.sendall(data)
            time.sleep(settle)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := s.recv(65536):
                dec.feed(chunk)
                while (payload := dec.next_frame()) is not None:
                    out.append(ipc.decode_message(payload))
        except ConnectionResetError:
            pass
        except TimeoutError:
            if until_closed:
                raise
    return out


def provision(
    tmp: Path,
    nodes: dict[str, list[str]],
    *,
    network: str = "truc-test",
    tune: dict[str, str] | None = None,
    psk: bool = False,
) -> dict[str, Path]:
    """Authority, node homes and a directory made with `truc authority init`, `truc init`, `truc directory add`.

    ``psk``: a private network, with `truc authority psk` and `truc init --psk-file` (the key is ``tmp/auth/swarm.key``).
    """
    auth = tmp / "auth"
    invoke("authority", "init", "--out", str(auth), "--network", network)
    if psk:
        invoke("authority", "psk", "--out", str(auth / "swarm.key"))
    homes = {}
    for name, codes in nodes.items():
        home = tmp / name
        args = [
            "init",
            "--home",
            str(home),
            "--authority",
            str(auth / "authority.pub"),
            "--listen",
            f"/ip4/127.0.0.1/tcp/{free_port()}",
        ]
        for c in codes:
            args += ["--code", c]
        if psk:
            args += ["--psk-file", str(auth / "swarm.key")]
        invoke(*args)
        cfg = Home(home).config_file
        text = cfg.read_text()
        for old, new in {**TEST_TUNING, **(tune or {})}.items():
            assert old in text, f"config.toml has no {old!r}"
            text = text.replace(old, new)
        cfg.write_text(text)
        homes[name] = home
    invoke(
        "directory",
        "add",
        "--authority",
        str(auth),
        "--directory",
        str(auth / "directory.cbor"),
        *[str(Home(h).join_request) for h in homes.values()],
    )
    for home in homes.values():
        shutil.copy(auth / "directory.cbor", Home(home).directory)
    return homes


@contextmanager
def running(homes: dict[str, Path]) -> Iterator[dict[str, NodeProcess]]:
    daemons = {name: NodeProcess(name, home) for name, home in homes.items()}
    try:
        for d in daemons.values():
            d.start(wait=False)
        for d in daemons.values():
            d.wait_ready()
        yield daemons
    finally:
        for d in daemons.values():
            if d.running:
                assert d.proc is not None
                d.proc.kill()
                d.proc.wait(timeout=10)


def wait_for(predicate: object, timeout: float, what: str = "condition") -> None:
    _wait_for(predicate, timeout, what)  # type: ignore[arg-type]
