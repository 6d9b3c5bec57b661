"""Networks of real node processes on 127.0.0.1: one `truc run` per node.

Provisioned with the same functions as ``truc authority init`` / ``truc
init`` / ``truc directory add`` (identity/provision.py), driven through the
IPC client like any integrator. Used by ``truc demo``, simnet's process
mode, the benchmarks and the process tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from cli.client import Client
from identity.directory import JoinRequest, NodeRecord
from identity.keys import SigningKey, load_node_key, save_authority
from identity.provision import add_join_requests, create_node_home
from protocol.agency import AgencyCode
from protocol.errors import NodeNotRunningError

from .ports import free_port

ROOT = Path(__file__).resolve().parent.parent
FAST_SYNC = {"interval_s = 30": "interval_s = 5"}  # catch-up rounds every 5 s instead of 30
__all__ = ["ROOT", "NodeProcess", "free_port", "wait_for"]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.05) -> float:
    """Poll every ``interval`` s until ``predicate()`` holds; returns the seconds taken, raises TimeoutError naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"{what}: still not true after {timeout:.0f} s")


def _installed_env() -> dict[str, str]:
    """This process's environment, for a node that runs as an installed one does: with its modules' bytecode.

    pip compiles an installed package's bytecode; a session that sets
    PYTHONDONTWRITEBYTECODE (this project's sandboxes do) would have every node
    process compile the project's ~90 modules again at every start, ~0.2 s of
    CPU that no installed node spends and that 95 nodes starting on one
    machine spend 95 times (docs/performance.md, "Forming the full mesh").
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class NodeProcess:
    """One `truc run` subprocess and its home."""

    def __init__(self, name: str, home: Path, *, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.home = home
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "node.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, wait: bool = True) -> NodeProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "run", "--home", str(self.home)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**_installed_env(), "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **self.env},
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def client(self, timeout: float = 120) -> Client:
        return Client(self.home / "truc.sock", timeout=timeout)

    def call(self, method: str, **params: Any) -> Any:
        with self.client() as c:
            return c.call(method, **params)

    def wait_ready(self, timeout: float = 30) -> None:
        def answers() -> bool:
            if not self.running:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode if self.proc else '?'}:\n{self.log()}")
            try:
                self.call("node.info")
                return True
            except NodeNotRunningError:
                return False

        wait_for(answers, timeout, f"node {self.name} ready")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> float:
        """Send ``sig`` and wait for the exit; returns how long it took."""
        start = time.monotonic()
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        return time.monotonic() - start

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def rss_mib(self) -> float:
        return _proc_status(self.proc.pid if self.proc else 0, "VmRSS:") / 1024

    def anon_mib(self) -> float:
        """Anonymous resident memory: the heap, without LevelDB's memory-mapped (reclaimable) table files."""
        return _proc_status(self.proc.pid if self.proc else 0, "RssAnon:") / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        if self.proc is None:
            return 0.0
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_status(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class ProcessNetwork:
    """An authority, a signed directory and one node home per entry of ``nodes`` (name -> codes)."""

    def __init__(
        self,
        root: Path,
        nodes: dict[str, list[str]],
        *,
        network: str = "truc-sim",
        names: dict[AgencyCode, str] | None = None,
        tune: dict[str, str] | None = None,
        valid_days: int = 30,
        env: dict[str, str] | None = None,
        unlisted: frozenset[str] = frozenset(),
    ) -> None:
        """``unlisted`` names nodes the directory lists without addresses: they
        dial the others, nobody dials them (a star around the listed nodes)."""
        self.root = root
        self.auth = root / "authority"
        self.auth.mkdir(parents=True, exist_ok=True)
        save_authority(self.auth, SigningKey.generate(os.urandom), network)
        self.nodes: dict[str, NodeProcess] = {}
        self.peer_ids: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        for name, codes in nodes.items():
            home = root / name
            port = free_port()
            peer, _ = create_node_home(
                home,
                [AgencyCode.parse(c) for c in codes],
                names or {},
                self.auth / "authority.pub",
                (f"/ip4/127.0.0.1/tcp/{port}",),
            )
            if tune:
                cfg = home / "config.toml"
                text = cfg.read_text()
                for old, new in tune.items():
                    if old not in text:
                        raise ValueError(f"config.toml has no {old!r} to tune")
                    text = text.replace(old, new)
                cfg.write_text(text)
            if name in unlisted:
                request = JoinRequest.decode((home / "join-request.cbor").read_bytes())
                request = JoinRequest(request.net, NodeRecord(peer, ()), request.agencies)
                (home / "join-request.cbor").write_bytes(request.signed(load_node_key(home / "node.key")).encode())
            self.nodes[name] = NodeProcess(name, home, env=env)
            self.peer_ids[name] = peer
            self.ports[name] = port
        self.directory = self.auth / "directory.cbor"
        self.serial = add_join_requests(
            self.auth,
            self.directory,
            [n.home / "join-request.cbor" for n in self.nodes.values()],
            valid_days=valid_days,
            names=names or {},
        ).serial
        for n in self.nodes.values():
            shutil.copy(self.directory, n.home / "directory.cbor")

    def __getitem__(self, name: str) -> NodeProcess:
        return self.nodes[name]

    def start_all(self, *, mesh_timeout: float = 60) -> None:
        for n in self.nodes.values():
            n.start(wait=False)
        for n in self.nodes.values():
            n.wait_ready()
        want = len(self.nodes) - 1
        wait_for(
            lambda: all(n.call("node.info")["peers_connected"] >= want for n in self.nodes.values()), mesh_timeout, "full mesh"
        )

    def stop_all(self) -> None:
        for n in self.nodes.values():
            if n.running:
                assert n.proc is not None
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes.values():
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait(timeout=10)

    def __enter__(self) -> ProcessNetwork:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()
