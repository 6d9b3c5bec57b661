"""Real node processes for tests: provisioned through the real CLI commands, run as ``truc run``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from cli.main import cli
from simnet.processes import ROOT, NodeProcess, free_port
from simnet.processes import wait_for as _wait_for

Daemon = NodeProcess
TEST_TUNING = {"interval_s = 30": "interval_s = 2"}  # catch-up rounds every 2 s instead of 30
__all__ = ["ROOT", "Daemon", "invoke", "provision", "running", "wait_for"]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, f"truc {' '.join(args)}: {result.output}"
    return result.output


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
