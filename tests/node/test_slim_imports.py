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


def test_the_library_imports_only_submodules_of_the_hollow_packages() -> None:
    """A hollow package runs no __init__ (node/slim_imports.py): a library version that imports a name its __init__
    defines (``from libp2p.relay import X``), or the package itself, would fail or misbehave; this says so first."""
    through_init: list[str] = []
    submodules: set[str] = set()
    for path in LIBRARY.rglob("*.py"):
        if path.is_relative_to(LIBRARY / "relay"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module in slim_imports.HOLLOW:
                    through_init.append(f"{path.name}: from {node.module} import {[a.name for a in node.names]}")
                elif any(node.module.startswith(h + ".") for h in slim_imports.HOLLOW):
                    submodules.add(node.module)
            elif isinstance(node, ast.Import):
                through_init += [f"{path.name}: import {a.name}" for a in node.names if a.name in slim_imports.HOLLOW]
    assert through_init == []
    assert submodules == {"libp2p.relay.circuit_v2.nat"}, "the host imports more of the relay: re-measure what it costs"
    for module in submodules:
        assert (LIBRARY.parent / (module.replace(".", "/") + ".py")).is_file()


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
        " 'Crypto.Cipher.AES', 'Crypto.PublicKey.RSA', 'dns.quic._asyncio', 'Crypto.Util._raw_api', 'cffi.cparser',"
        " 'libp2p.relay.circuit_v2.transport', 'libp2p.kad_dht', 'libp2p.bitswap', 'netaddr') if m in sys.modules]\n"
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


RSA_PEER = """
import sys, trio, multiaddr
from libp2p import new_host
from libp2p.crypto.rsa import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID, Transport

async def main():
    kp = create_new_key_pair()
    host = new_host(key_pair=kp, sec_opt={TProtocol(PROTOCOL_ID): Transport(kp, noise_privkey=x25519().private_key)})
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            with trio.fail_after(20):
                await host.connect(PeerInfo(ID.from_base58(sys.argv[2]), [multiaddr.Multiaddr(sys.argv[1])]))
        except Exception as exc:
            print("refused:", type(exc).__name__)
        else:
            print("connected")

trio.run(main)
"""


@pytest.mark.timeout(90)
def test_a_peer_with_an_rsa_key_is_refused_at_its_handshake_and_the_node_carries_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """RSA keys stand in too (a node's key is Ed25519): a peer that presents one, from a process with the whole
    library, fails its Noise handshake here, even with every peer let through the membership gate; then an
    Ed25519 peer still connects."""
    import secrets

    import libp2p.crypto.serialization as serialization
    import trio
    from libp2p.crypto.keys import KeyType

    from identity.keys import NodeKey
    from simnet.cluster import free_port, wait_until
    from tests.node.helpers import p2p_overlay

    a, b = NodeKey(secrets.token_bytes(32)), NodeKey(secrets.token_bytes(32))
    port = free_port()
    node = p2p_overlay(a, port, members=set(), targets={}, restarted=True)
    node.is_member = lambda peer: True  # type: ignore[method-assign]  # only the key type may refuse the RSA peer
    address = f"/ip4/127.0.0.1/tcp/{port}"
    other = p2p_overlay(b, free_port(), members={a.peer_id, b.peer_id}, targets={a.peer_id: [address]}, restarted=True)
    outcome: list[str] = []
    rsa_keys: list[bytes] = []
    stand_in = serialization.key_type_to_public_key_deserializer[KeyType.RSA.value]

    def reading(data: bytes) -> object:
        rsa_keys.append(data)
        return stand_in(data)

    monkeypatch.setitem(serialization.key_type_to_public_key_deserializer, KeyType.RSA.value, reading)

    async def main() -> None:
        with trio.fail_after(80):
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                rsa = await trio.run_process(
                    [sys.executable, "-c", RSA_PEER, address, a.peer_id], capture_stdout=True, capture_stderr=True, check=False
                )
                outcome.append(rsa.stdout.decode().strip())
                assert rsa.returncode == 0, rsa.stderr.decode()[-2000:]
                assert node.connected_peers() == set()
                await nursery.start(other.run)  # dials the node at its start
                await wait_until(lambda: node.connected_peers() == {b.peer_id}, timeout=20)
                nursery.cancel_scope.cancel()

    trio.run(main)
    assert outcome and outcome[0].startswith("refused:"), outcome
    assert rsa_keys, "the RSA peer was refused before its key was read: this test no longer tests the stand-in"


@pytest.mark.timeout(60)
def test_the_library_pnet_cipher_is_imported_at_its_first_use_and_is_the_real_one() -> None:
    """``Crypto.Cipher.Salsa20`` (py-libp2p's own pnet, which a node never uses) is a placeholder until a name of it
    is read: then PyCryptodome's module replaces it everywhere, and what the placeholder gave is the real cipher."""
    probe = (
        "import sys\n"
        "import node.p2p\n"
        "from libp2p.security.pnet import psk_conn\n"
        "assert 'Crypto.Util._raw_api' not in sys.modules\n"
        "cipher = psk_conn.Salsa20.new(key=bytes(32), nonce=bytes(8))\n"
        "import Crypto.Cipher.Salsa20 as real\n"
        "assert real.__file__.endswith('Salsa20.py'), real\n"
        "assert sys.modules['Crypto.Cipher'].Salsa20 is real\n"
        "assert type(cipher) is real.Salsa20Cipher and psk_conn.Salsa20.Salsa20Cipher is real.Salsa20Cipher\n"
        "assert cipher.encrypt(bytes(8)).hex() == '9a97f65b9b4c721b'  # Salsa20 keystream, zero key and nonce\n"
    )
    python_probe(probe)
