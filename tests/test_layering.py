"""The layering of DESIGN.md, enforced on the source (every import statement, also inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["protocol", "identity", "store", "node", "cli", "simnet"]

# package -> top-level modules it must never import
FORBIDDEN: dict[str, set[str]] = {
    # Pure: no I/O libraries, no clocks, no randomness, no higher layer.
    "protocol": {
        "trio",
        "libp2p",
        "plyvel",
        "nacl",
        "click",
        "socket",
        "os",
        "time",
        "random",
        "secrets",
        "subprocess",
        "threading",
        "asyncio",
        "pathlib",
        "io",
        "logging",
        "identity",
        "store",
        "node",
        "cli",
        "simnet",
    },
    "identity": {"trio", "libp2p", "plyvel", "click", "socket", "store", "node", "cli", "simnet", "logging"},
    "store": {"trio", "libp2p", "nacl", "click", "socket", "identity", "node", "cli", "simnet", "logging"},
    "node": {"cli", "simnet"},
    # The CLI reaches a node only through the IPC client; the daemon entry
    # points (cli/daemon.py) hand over to node/ and simnet/ and are the only
    # modules allowed to import them.
    "cli": {"store", "libp2p", "plyvel"},
    # simnet runs nodes two ways (simnet/driver.py). In this process: the
    # in-process side below builds nodes and calls their engines, so it may
    # import node/ (the engine, the overlays, what assembles a node) and
    # py-libp2p. As `truc run` processes: reached through the IPC client only,
    # so cli.client is the one cli module simnet may import. The rest of simnet
    # (the flow, the agent, the fault registry, the workload, the verdict, the
    # report, the IPC driver) imports neither node/ nor libp2p: it sees nodes
    # only through a driver.
    "simnet": set(),
}
DAEMON_ENTRY = {"cli/daemon.py"}
SIMNET_IN_PROCESS = {"simnet/inprocess.py", "simnet/cluster.py", "simnet/virtual.py", "simnet/shim.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def cli_modules_of(path: Path) -> set[str]:
    """The cli submodules a file imports (``from cli.client import ...`` -> {"client"})."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "cli":
            found.add(node.module.split(".")[1] if "." in node.module else "")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] if "." in a.name else "" for a in node.names if a.name.split(".")[0] == "cli")
    return found


def source_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_package_respects_layering(package: str) -> None:
    assert source_files(package), f"{package}/ has no Python files"
    violations = []
    for path in source_files(package):
        rel = path.relative_to(ROOT).as_posix()
        bad = imports_of(path) & FORBIDDEN[package]
        if package == "cli" and rel not in DAEMON_ENTRY:
            bad |= imports_of(path) & {"node", "simnet"}
        if package == "simnet":
            bad |= {f"cli.{m}" for m in cli_modules_of(path) - {"client"}}
            if rel not in SIMNET_IN_PROCESS:
                bad |= imports_of(path) & {"node", "libp2p"}
        violations += [f"{rel} imports {m}" for m in sorted(bad)]
    assert not violations, "layering violated:\n" + "\n".join(violations)


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import plyvel\n    from trio import sleep\n")
    assert {"plyvel", "trio"} <= imports_of(bad)


def test_a_module_over_500_lines_says_why_it_is_one_module() -> None:
    """Issue 12: no module over ~500 lines without a reason written at its top."""
    long = []
    for package in PACKAGES:
        for path in source_files(package):
            text = path.read_text("utf-8")
            doc = ast.get_docstring(ast.parse(text)) or ""
            if text.count("\n") > 500 and "Why one module" not in doc:
                long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, "split these, or say at their top why they are one module: " + ", ".join(long)
