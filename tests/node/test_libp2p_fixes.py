"""The py-libp2p workarounds (node/libp2p_fixes.py): nothing at import, each checked before it is made."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import libp2p.identity.identify.identify as identify_module
import libp2p.pubsub.rpc_queue as rpc_queue
import libp2p.transport.tcp.tcp as libp2p_tcp
import pytest

from node import libp2p_fixes
from node.libp2p_fixes import LibraryChangedError
from tests.procs import ROOT


@pytest.mark.timeout(60)
def test_importing_the_adapter_changes_nothing_in_the_library() -> None:
    probe = (
        "import libp2p.pubsub.rpc_queue as q, libp2p.transport.tcp.tcp as t, libp2p.identity.identify.identify as i\n"
        "before = (q.RpcQueue.__init__.__defaults__, t._set_reuse_flags, i.AGENT_VERSION)\n"
        "import node.p2p, node.libp2p_fixes\n"
        "assert (q.RpcQueue.__init__.__defaults__, t._set_reuse_flags, i.AGENT_VERSION) == before, 'changed at import'\n"
        "assert before[0] == (32, 1 << 20), before[0]\n"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, timeout=60)


def test_install_makes_the_module_wide_changes_and_is_idempotent() -> None:
    libp2p_fixes.install()
    libp2p_fixes.install()
    assert rpc_queue.RpcQueue.__init__.__defaults__ == (libp2p_fixes.RPC_QUEUE_RPCS, libp2p_fixes.RPC_MAX_BYTES)
    assert libp2p_tcp._set_reuse_flags is libp2p_fixes._reuse_addr_only
    assert libp2p_fixes.agent_version() == identify_module.AGENT_VERSION


@pytest.mark.parametrize(
    ("module", "name", "replacement", "pitfall"),
    [
        (libp2p_tcp, "_set_reuse_flags", lambda sock, reuse_port: None, "pitfall 20"),
        (libp2p_tcp, "_set_reuse_flags", None, "pitfall 20"),
        (identify_module, "AGENT_VERSION", None, "pitfall 18"),
        (identify_module, "_mk_identify_protobuf", lambda *a: None, "pitfall 18"),
    ],
)
def test_a_moved_library_attribute_fails_loudly_at_install(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, replacement: Any, pitfall: str
) -> None:
    monkeypatch.setattr(module, name, replacement)
    with pytest.raises(LibraryChangedError, match=pitfall):
        libp2p_fixes.install()


def test_another_queue_shape_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    def init(self: object, max_size: int = 64, max_message_size: int = 1 << 20, strict: bool = True) -> None:
        return None

    monkeypatch.setattr(rpc_queue.RpcQueue, "__init__", init)
    with pytest.raises(LibraryChangedError, match="pitfall 5"):
        libp2p_fixes.install()


class _Router:
    def _check_equivocation(self, msg: object) -> bool:
        return False

    def _perform_opportunistic_grafting(self, topic: str, peers_to_graft: object) -> int:
        return 2


def test_the_router_patches_apply_and_refuse_another_shape() -> None:
    router = _Router()
    libp2p_fixes.patch_router(router)
    assert router._check_equivocation("m") is True and router._perform_opportunistic_grafting("t", {}) == 0
    changed = _Router()
    changed._perform_opportunistic_grafting = lambda topic: 0  # type: ignore[assignment,method-assign]
    with pytest.raises(LibraryChangedError, match="pitfall 15"):
        libp2p_fixes.patch_router(changed)


def test_the_swarm_patches_refuse_a_swarm_without_what_they_replace() -> None:
    class Connector:
        async def maybe_connect(self) -> None:
            return None

    class Swarm:
        auto_connector = Connector()
        psk = None

        async def add_conn(self, muxed_conn: object, direction: str = "unknown") -> object:
            return muxed_conn

        def unblock_peer(self, peer_id: object) -> None:
            return None

    async def gate(conn: object, direction: str) -> None:
        return None

    libp2p_fixes.patch_swarm(Swarm(), gate=gate, protector=object())
    no_unblock = Swarm()
    no_unblock.unblock_peer = None  # type: ignore[assignment,method-assign]
    with pytest.raises(LibraryChangedError, match="pitfall 19"):
        libp2p_fixes.patch_swarm(no_unblock, gate=gate, protector=None)
    no_psk = Swarm()
    no_psk.psk = "missing"  # type: ignore[assignment]
    with pytest.raises(LibraryChangedError, match="pitfall 17"):
        libp2p_fixes.patch_swarm(no_psk, gate=gate, protector=object())
