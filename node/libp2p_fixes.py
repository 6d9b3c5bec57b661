"""Every change this project makes to py-libp2p 0.8.1, in one place (docs/overlay.md, the pitfalls table).

Several workarounds replace private attributes of the library. An assignment
to an attribute a library update renamed would silently do nothing, and the
node would run without the fix; so each replacement here first checks that
the attribute exists and has the shape it had in 0.8.1 (its parameters, or
the names its code uses), and raises ``LibraryChangedError`` naming the
pitfall if not. Nothing happens at import: module-wide changes are made by
:func:`install` when the first overlay is built (and checked again each time),
per-object ones by :func:`patch_swarm` and :func:`patch_router` on the objects
of one host.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import libp2p.identity.identify.identify as identify_module
import libp2p.pubsub.rpc_queue as rpc_queue
import libp2p.transport.tcp.tcp as libp2p_tcp

from . import pnet

RPC_QUEUE_RPCS = 1024  # pitfall 5: 32 RPCs per peer, the rest dropped silently
RPC_MAX_BYTES = 4 << 20  # pitfall 8: messages of 1 MiB or more vanish
LIBRARY_RPC_DEFAULTS = (32, 1 << 20)


class LibraryChangedError(RuntimeError):
    """py-libp2p is not the version these workarounds were written for: one of them would silently stop applying."""

    def __init__(self, pitfall: int | str, what: str) -> None:
        which = f"pitfall {pitfall}" if isinstance(pitfall, int) else pitfall
        super().__init__(
            f"py-libp2p changed: {what}; the workaround for {which} (node/libp2p_fixes.py, docs/overlay.md) "
            "needs review before this version can run"
        )


def _params(fn: Any) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def _expect_params(pitfall: int | str, where: str, fn: Any, names: list[str]) -> None:
    if not callable(fn) or _params(fn) != names:
        raise LibraryChangedError(pitfall, f"{where} is not a callable of ({', '.join(names)})")


def _expect_uses(pitfall: int, where: str, fn: Any, name: str) -> None:
    code = getattr(fn, "__code__", None)
    if code is None or name not in code.co_names:
        raise LibraryChangedError(pitfall, f"{where} no longer reads {name}")


# --- module-wide ---------------------------------------------------------------------


def agent_version() -> str:
    """What identify tells peers we run: ``truc/<version> (py-libp2p/<version>)``."""

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:  # a source tree without install
            return "0+unknown"

    return f"truc/{of('truc')} (py-libp2p/{of('libp2p')})"


def _reuse_addr_only(sock: object) -> None:  # pitfall 20: SO_REUSEADDR, never SO_REUSEPORT
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # type: ignore[attr-defined]
    except OSError:
        pass


def install() -> None:
    """The module-wide changes, checked then made (idempotent; every overlay calls it when it is built)."""
    init = rpc_queue.RpcQueue.__init__
    if _params(init) != ["self", "max_size", "max_message_size"] or init.__defaults__ not in (
        LIBRARY_RPC_DEFAULTS,
        (RPC_QUEUE_RPCS, RPC_MAX_BYTES),
    ):
        raise LibraryChangedError(5, "RpcQueue.__init__(max_size=32, max_message_size=1 MiB) has another shape")
    init.__defaults__ = (RPC_QUEUE_RPCS, RPC_MAX_BYTES)

    reuse = getattr(libp2p_tcp, "_set_reuse_flags", None)
    if reuse is not _reuse_addr_only:
        _expect_params(20, "libp2p.transport.tcp.tcp._set_reuse_flags", reuse, ["sock"])
        libp2p_tcp._set_reuse_flags = _reuse_addr_only

    build = getattr(identify_module, "_mk_identify_protobuf", None)
    if not isinstance(getattr(identify_module, "AGENT_VERSION", None), str):
        raise LibraryChangedError(18, "libp2p.identity.identify.identify.AGENT_VERSION is gone")
    _expect_uses(18, "identify's _mk_identify_protobuf", build, "AGENT_VERSION")
    identify_module.AGENT_VERSION = agent_version()

    pnet.install()  # pitfall 17: checks the swarm's three call sites itself


# --- per host ------------------------------------------------------------------------


def patch_swarm(
    swarm: Any,
    *,
    gate: Callable[[Any, str], Awaitable[None]],
    protector: object | None,
) -> None:
    """The swarm of one host: no auto-connector (14), the membership gate (ours), a dial block we can lift (19), our pnet (17).

    ``gate(muxed_conn, direction)`` raises to refuse a connection once Noise
    authenticated the remote peer id, before the swarm registers it.
    """
    connector = getattr(swarm, "auto_connector", None)
    _expect_params(14, "Swarm.auto_connector.maybe_connect", getattr(connector, "maybe_connect", None), [])

    async def no_auto_connect() -> None:
        return None

    connector.maybe_connect = no_auto_connect  # type: ignore[union-attr]

    _expect_params(19, "Swarm.unblock_peer", getattr(swarm, "unblock_peer", None), ["peer_id"])

    original = getattr(swarm, "add_conn", None)
    _expect_params("the membership gate", "Swarm.add_conn", original, ["muxed_conn", "direction"])

    async def gated_add_conn(muxed_conn: object, direction: str = "unknown") -> object:
        await gate(muxed_conn, direction)
        return await original(muxed_conn, direction)  # type: ignore[misc]

    swarm.add_conn = gated_add_conn

    if protector is not None:
        if getattr(swarm, "psk", "missing") is not None:
            raise LibraryChangedError(17, "the swarm has no psk attribute")
        swarm.psk = protector


def patch_router(router: Any) -> None:
    """The gossipsub router of one host: no equivocation cache (4), no opportunistic grafting (15)."""
    _expect_params(4, "GossipSub._check_equivocation", getattr(router, "_check_equivocation", None), ["msg"])
    router._check_equivocation = lambda msg: True
    graft = getattr(router, "_perform_opportunistic_grafting", None)
    _expect_params(15, "GossipSub._perform_opportunistic_grafting", graft, ["topic", "peers_to_graft"])
    router._perform_opportunistic_grafting = lambda topic, peers_to_graft: 0
