"""Pitfall 32: py-libp2p imports every transport and service it has, whatever the host uses.

``import libp2p`` loads QUIC (aioquic, service_identity, the x509 half of
cryptography), WebSocket and WebTransport (trio_websocket, wsproto, h11),
TLS with AutoTLS (httpx, requests, urllib3), SECIO (PyCryptodome's AES),
mDNS (zeroconf) and a Prometheus exporter, because ``libp2p/__init__.py``,
``custom_types.py``, ``network/swarm.py``, ``network/stream/net_stream.py``,
``host/basic_host.py`` and ``rcmgr/manager.py`` import their names at module
level. A Trục node uses none of them: TCP, Noise and yamux only
(docs/overlay.md, sections 1, 3 and 4). Their import was ~0.2 s of CPU at every node
start (a quarter of it), which 95 nodes starting on one machine pay 95 times.
RSA keys stand in too (PyCryptodome's RSA and big-integer modules, ~50 ms):
a node's key is Ed25519. A stand-in class gives, for any other attribute read
(``RSAPublicKey.from_bytes``, which the library puts in a table at import), a
function that raises: a peer presenting an RSA key fails its handshake.

The library's own pnet is loaded late instead (``DEFERRED``): the node never
uses it (node/pnet.py, pitfall 17), but ``libp2p.security.pnet`` is imported
by the swarm, and its ``from Crypto.Cipher import Salsa20`` loaded
PyCryptodome's native-library loader with cffi's C parser (~40 ms of every
start). ``Crypto.Cipher.Salsa20`` is a placeholder module now that imports
the real one at the first read of any of its names (``Salsa20.new``), so the
tests that run the library's pnet still run the real cipher.

Circuit relay is skipped the same way (``HOLLOW``): the host imports one
function, ``is_private_ip``, from ``libp2p.relay.circuit_v2.nat``, and the
two package ``__init__`` files above it import the whole relay (its
transport, discovery, DCUtR, and through them Kademlia, Bitswap and
netaddr, ~75 ms). Those two packages are hollow now: modules whose path is
the real directory, with nothing run, so ``nat.py`` is imported from its
own file and the rest of the relay is never loaded.

:func:`install` puts a finder first on ``sys.meta_path`` that answers for
the packages in ``OPTIONAL`` with stand-in modules. A stand-in has exactly
the names the rest of the library imports from it (``NAMES``; a test reads
the library's source and fails if a name is missing), and nothing else, so a
library update that imports another name fails at the import, loudly. Each
name is a class, so ``isinstance``, ``except`` and annotations that mention
it keep working; using it (calling it, making one) raises
:class:`AbsentFeatureError` naming the feature. dnspython's DNS-over-QUIC and
DNS-over-HTTPS (which would import aioquic and httpx again) are switched off
through its own ``dns._features.force``.

Called from ``node/__init__.py``, so it runs before anything of the node
imports the library. If the library is already imported (a process that
imported it first), nothing is done and the full library stays.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

OPTIONAL: dict[str, str] = {  # stood-in package -> the feature, for messages
    "libp2p.transport.quic": "QUIC",
    "libp2p.transport.websocket": "WebSocket",
    "libp2p.transport.webtransport": "WebTransport",
    "libp2p.security.tls": "TLS (with AutoTLS)",
    "libp2p.security.secio": "SECIO",
    "libp2p.discovery.mdns": "mDNS",
    "libp2p.rcmgr.prometheus_exporter": "the resource manager's Prometheus exporter",
    "libp2p.crypto.rsa": "RSA keys (PyCryptodome)",
}

NAMES: dict[str, tuple[str, ...]] = {  # module -> the names the rest of py-libp2p 0.8.1 imports from it
    "libp2p.crypto.rsa": ("RSAPrivateKey", "RSAPublicKey", "create_new_key_pair"),
    "libp2p.discovery.mdns.mdns": ("MDNSDiscovery", "create_mdns_discovery"),
    "libp2p.rcmgr.prometheus_exporter": ("PrometheusExporter", "create_prometheus_exporter"),
    "libp2p.security.secio.transport": ("ID", "Transport"),
    "libp2p.security.tls.autotls.acme": ("ACMEClient", "compute_b36_peer_id"),
    "libp2p.security.tls.autotls.broker": ("BrokerClient",),
    "libp2p.security.tls.transport": ("PROTOCOL_ID", "TLSTransport"),
    "libp2p.transport.quic.config": ("QUICTransportConfig",),
    "libp2p.transport.quic.connection": ("QUICConnection",),
    "libp2p.transport.quic.exceptions": ("QUICStreamClosedError", "QUICStreamResetError"),
    "libp2p.transport.quic.stream": ("QUICStream",),
    "libp2p.transport.quic.transport": ("QUICTransport",),
    "libp2p.transport.quic.utils": ("is_quic_multiaddr",),
    "libp2p.transport.websocket.connection": ("P2PWebSocketConnection",),
    "libp2p.transport.websocket.transport": ("WebsocketTransport",),
    "libp2p.transport.webtransport": ("WebTransportTransport",),
}

# Modules imported at their first use instead (module -> why the node never uses it).
DEFERRED: dict[str, str] = {
    "Crypto.Cipher.Salsa20": "py-libp2p's own pnet, which node/pnet.py replaces (pitfall 17)",
}

# Packages whose __init__ is not run (package -> what it would import): their submodules load from their own files.
HOLLOW: dict[str, str] = {
    "libp2p.relay": "the whole of circuit relay v2, for the one function the host imports from it",
    "libp2p.relay.circuit_v2": "the whole of circuit relay v2, for the one function the host imports from it",
}

DNS_FEATURES_OFF = ("doq", "doh")  # dnspython: DNS over QUIC (aioquic), DNS over HTTPS (httpx)


class AbsentFeatureError(RuntimeError):
    """Something used a py-libp2p feature the node does not load (node/slim_imports.py)."""


def _feature_of(module: str) -> str:
    for package, feature in OPTIONAL.items():
        if module == package or module.startswith(package + "."):
            return feature
    raise KeyError(module)


def _placeholder(module: str, name: str) -> type:
    """A class standing in for ``module.name``: usable in isinstance, except and annotations; any use raises."""
    feature = _feature_of(module)

    def absent(self: object, *args: Any, **kwargs: Any) -> None:
        raise AbsentFeatureError(
            f"{module}.{name} was used, but {feature} is not part of a Trục node: py-libp2p's {feature} modules "
            "are not loaded (node/slim_imports.py, docs/overlay.md pitfall 32)"
        )

    class Absent(type):
        """Reading any other attribute of the stand-in class (``RSAPublicKey.from_bytes``, which py-libp2p reads
        at import to fill a table) gives a function whose call raises, as making one does."""

        def __getattr__(cls, attr: str) -> Any:
            if attr.startswith("__"):
                raise AttributeError(attr)
            return lambda *args, **kwargs: absent(None)

    return Absent(name, (Exception,), {"__init__": absent, "__module__": module, "__qualname__": name})


def stand_in(module: str) -> types.ModuleType:
    """The stand-in for ``module`` (a package or module under ``OPTIONAL``): the names of ``NAMES``, nothing else."""
    stub = types.ModuleType(module, f"Stand-in for {module}: {_feature_of(module)} is not loaded (node/slim_imports.py)")
    stub.__path__ = []  # every stand-in is a package, so submodules of it are asked of the finder too
    for name in NAMES.get(module, ()):
        setattr(stub, name, _placeholder(module, name))
    return stub


class _Deferred(types.ModuleType):
    """Placeholder for a module of ``DEFERRED``: the first read of a name it lacks imports the real module, which
    then replaces it in ``sys.modules`` and in its package; the placeholder copies its names for later reads."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        real = _load_deferred(self.__name__)
        self.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        return getattr(real, name)


def _load_deferred(module: str) -> types.ModuleType:
    real = sys.modules.get(module)
    if real is None or isinstance(real, _Deferred):
        FINDER.released.add(module)
        sys.modules.pop(module, None)
        real = importlib.import_module(module)  # binds the real module as its package's attribute too
    return real


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self.released: set[str] = set()  # deferred modules imported for real since

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in DEFERRED:
            return None if fullname in self.released else importlib.machinery.ModuleSpec(fullname, self)
        if fullname in HOLLOW:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.submodule_search_locations is None:
                return None  # not a package of this library version: the import fails or runs as it would have
            hollow = importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            hollow.submodule_search_locations = list(spec.submodule_search_locations)
            return hollow
        try:
            _feature_of(fullname)
        except KeyError:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name in DEFERRED:
            return _Deferred(spec.name, f"Imported at its first use: {DEFERRED[spec.name]} (node/slim_imports.py)")
        if spec.name in HOLLOW:
            return types.ModuleType(spec.name, f"Hollow: its __init__ would import {HOLLOW[spec.name]} (node/slim_imports.py)")
        return stand_in(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


FINDER = _StandIns()


def install() -> bool:
    """Stand in for the optional packages, if py-libp2p is not imported yet; True if the stand-ins are in place."""
    if FINDER in sys.meta_path:
        return True
    if "libp2p" in sys.modules:
        return False
    try:
        import dns._features as dns_features

        for feature in DNS_FEATURES_OFF:
            dns_features.force(feature, False)
    except (ImportError, AttributeError):  # another dnspython: it then decides by itself what it imports
        pass
    sys.meta_path.insert(0, FINDER)
    return True
