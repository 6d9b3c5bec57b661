"""Pitfall 32 (node/slim_imports.py): py-libp2p without the parts a node never uses, checked against its source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import libp2p
import pytest

from node import slim_imports
from tests.procs import python_probe

LIBRARY = Path(libp2p.__file__).parent


def _stood_in(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in slim_imports.OPTIONAL)


def _imports_from_stood_in_modules() -> dict[str, set[str]]:
    """Every ``from M import name`` in py-libp2p's own source, outside the stood-in packages, of an M inside them."""
    wanted: dict[str, set[str]] = {}
    for path in LIBRARY.rglob("*.py"):
        parts = list(path.relative_to(LIBRARY.parent).with_suffix("").parts)
        package = parts[:-1]  # a.b for a/b/c.py and for a/b/__init__.py alike
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if _stood_in(".".join(parts)):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    if _stood_in(module):
                        wanted.setdefault(module, set()).add(alias.name)
                    elif _stood_in(f"{module}.{alias.name}"):  # `from libp2p.security import tls`: a package
                        wanted.setdefault(f"{module}.{alias.name}", set())
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _stood_in(alias.name):
                        wanted.setdefault(alias.name, set())
    return wanted


def test_every_name_the_library_imports_from_a_stood_in_module_is_there() -> None:
    """Read from the installed library's source: a version that imports another name from QUIC, TLS, ... fails
    here (and at the node's import), instead of running with a stand-in that lacks it."""
    wanted = _imports_from_stood_in_modules()
    assert wanted, "the scan found no import of a stood-in module: the scan itself is broken"
    missing = {m: sorted(n - set(slim_imports.NAMES.get(m, ()))) for m, n in wanted.items()}
    assert {m: n for m, n in missing.items() if n} == {}
    used = {(m, n) for m, names in wanted.items() for n in names}
    stale = {(m, n) for m, names in slim_imports.NAMES.items() for n in names} - used
    secio = {("libp2p.security.secio.transport", "ID"), ("libp2p.security.secio.transport", "Transport")}
    assert stale == secio  # `import libp2p.security.secio.transport as secio`, then secio.ID: attribute reads


@pytest.mark.timeout(60)
def test_a_node_process_loads_none_of_the_unused_parts_and_a_use_of_one_says_what_is_missing() -> None:
    probe = (
        "import sys\n"
        "import node.p2p\n"
        "from libp2p import new_host\n"
        "from libp2p.crypto.ed25519 import create_new_key_pair\n"
        "from libp2p.transport.quic.transport import QUICTransport\n"
        "from node.slim_imports import AbsentFeatureError\n"
        "try:\n"
        "    new_host(key_pair=create_new_key_pair())  # the library's default security offers TLS and SECIO\n"
        "except AbsentFeatureError as e:\n"
        "    assert 'TLS (with AutoTLS) is not part of a Trục node' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('a host offering TLS was built')\n"
        "heavy = [m for m in ('aioquic', 'zeroconf', 'httpx', 'requests', 'trio_websocket',"
        " 'Crypto.Cipher.AES', 'dns.quic._asyncio') if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
        "try:\n"
        "    QUICTransport(None)\n"
        "except AbsentFeatureError as e:\n"
        "    assert 'QUIC is not part of a Trục node' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('a stand-in could be used')\n"
    )
    python_probe(probe)


@pytest.mark.timeout(60)
def test_a_process_that_imported_the_library_first_keeps_all_of_it() -> None:
    probe = (
        "import sys, libp2p\n"
        "from node import slim_imports\n"
        "assert slim_imports.install() is False\n"
        "assert slim_imports.FINDER not in sys.meta_path\n"
        "assert 'aioquic' in sys.modules\n"
    )
    python_probe(probe)


def test_this_test_process_runs_the_library_as_a_node_does() -> None:
    """tests/conftest.py imports the node package first, so every test exercises the library the daemon runs."""
    assert slim_imports.FINDER in sys.meta_path
    assert "aioquic" not in sys.modules
