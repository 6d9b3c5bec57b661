"""Real node processes for tests: provisioned with the real CLI, run as ``truc run`` subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from cli.client import Client
from cli.main import cli
from protocol.errors import NodeNotRunningError
from simnet.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, f"truc {' '.join(args)}: {result.output}"
    return result.output


TEST_TUNING = {"interval_s = 30": "interval_s = 2"}  # catch-up rounds every 2 s instead of 30


def provision(
    tmp: Path, nodes: dict[str, list[str]], *, network: str = "truc-test", tune: dict[str, str] | None = None
) -> dict[str, Path]:
    """Authority, node homes and a directory, made with the real CLI; ``tune`` edits config.toml text."""
    auth = tmp / "auth"
    invoke("authority", "init", "--out", str(auth), "--network", network)
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
        invoke(*args)
        cfg = home / "config.toml"
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
        *[str(h / "join-request.cbor") for h in homes.values()],
    )
    for home in homes.values():
        shutil.copy(auth / "directory.cbor", home / "directory.cbor")
    return homes


class Daemon:
    def __init__(self, home: Path, *, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "daemon.log"

    def start(self, *, wait: bool = True) -> Daemon:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "run", "--home", str(self.home)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def client(self) -> Client:
        return Client(self.home / "truc.sock", timeout=60)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with self.client() as c:
                    c.call("node.info")
                    return
            except NodeNotRunningError:
                time.sleep(0.1)
        raise AssertionError(f"node not ready after {timeout} s:\n{self.log()}")

    def call(self, method: str, **params: object) -> object:
        with self.client() as c:
            return c.call(method, **params)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> float:
        """Send ``sig`` and wait; returns how long the process took to exit."""
        assert self.proc is not None
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        return time.monotonic() - start

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@contextmanager
def running(homes: dict[str, Path], **kw: object) -> Iterator[dict[str, Daemon]]:
    daemons = {name: Daemon(home) for name, home in homes.items()}
    try:
        for d in daemons.values():
            d.start(wait=False)
        for d in daemons.values():
            d.wait_ready()
        yield daemons
    finally:
        for d in daemons.values():
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait(timeout=10)


def wait_for(predicate: object, timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: still false after {timeout} s")
