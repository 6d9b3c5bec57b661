"""The py-libp2p workarounds (node/libp2p_fixes.py): nothing at import, each checked before it is made."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import libp2p.identity.identify.identify as identify_module
import libp2p.protocol_muxer.multiselect_client as multiselect_client
import libp2p.pubsub.floodsub as floodsub_module
import libp2p.pubsub.gossipsub as gossipsub_module
import libp2p.pubsub.pubsub as pubsub_module
import libp2p.pubsub.rpc_queue as rpc_queue
import libp2p.pubsub.utils as pubsub_utils
import libp2p.stream_muxer.yamux.yamux as yamux_module
import libp2p.tools.anyio_service.trio_manager as trio_manager
import libp2p.transport.tcp.tcp as libp2p_tcp
import pytest
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import RetryConfig
from libp2p.peer.envelope import consume_envelope
from libp2p.peer.id import ID
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.score import PeerScorer, ScoreParams, TopicScoreParams
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import Service, background_trio_service
from multiaddr import Multiaddr

from node import libp2p_fixes
from node.libp2p_fixes import LibraryChangedError
from tests.procs import python_probe


def noise_host() -> IHost:
    """A plain py-libp2p host with Noise, as the node's (the library's default also offers TLS and SECIO, which a
    node does not load: pitfall 32)."""
    kp = create_new_key_pair()
    return new_host(
        key_pair=kp,
        sec_opt={TProtocol(NOISE_ID): NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)},
    )


@pytest.mark.timeout(60)
def test_importing_the_adapter_changes_nothing_in_the_library() -> None:
    probe = (
        "import libp2p.pubsub.rpc_queue as q, libp2p.transport.tcp.tcp as t, libp2p.identity.identify.identify as i\n"
        "import libp2p.stream_muxer.yamux.yamux as y, libp2p.pubsub.gossipsub as g\n"
        "import libp2p.protocol_muxer.multiselect_client as m\n"
        "def now(): return (q.RpcQueue.__init__.__defaults__, t._set_reuse_flags, i.AGENT_VERSION,\n"
        "                   y.YamuxStream._auto_tune_and_send_window_update, g.env_to_send_in_RPC,\n"
        "                   y.YamuxStream.write, 'send_window' in vars(y.YamuxStream), m.MultiselectClient.select_one_of,\n"
        "                   y.Yamux._write_frame)\n"
        "before = now()\n"
        "import node.p2p, node.libp2p_fixes\n"
        "assert now() == before, 'changed at import'\n"
        "assert before[0] == (32, 1 << 20), before[0]\n"
    )
    python_probe(probe)


def test_install_makes_the_module_wide_changes_and_is_idempotent() -> None:
    libp2p_fixes.install()
    libp2p_fixes.install()
    assert rpc_queue.RpcQueue.__init__.__defaults__ == (libp2p_fixes.RPC_QUEUE_RPCS, libp2p_fixes.RPC_MAX_BYTES)
    assert libp2p_tcp._set_reuse_flags is libp2p_fixes._reuse_addr_only
    assert libp2p_fixes.agent_version() == identify_module.AGENT_VERSION
    assert yamux_module.YamuxStream._auto_tune_and_send_window_update is libp2p_fixes.window_update
    assert yamux_module.YamuxStream.write is libp2p_fixes.write
    assert isinstance(vars(yamux_module.YamuxStream)["send_window"], libp2p_fixes._WakesWriter)
    assert multiselect_client.MultiselectClient.select_one_of is libp2p_fixes.select_one_of
    assert yamux_module.Yamux._write_frame is libp2p_fixes.write_frame
    for module in (pubsub_module, gossipsub_module, floodsub_module):
        assert module.env_to_send_in_RPC is libp2p_fixes.own_record_for_rpc  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("module", "name", "replacement", "pitfall"),
    [
        (libp2p_tcp, "_set_reuse_flags", lambda sock, reuse_port: None, "pitfall 20"),
        (libp2p_tcp, "_set_reuse_flags", None, "pitfall 20"),
        (identify_module, "AGENT_VERSION", None, "pitfall 18"),
        (identify_module, "_mk_identify_protobuf", lambda *a: None, "pitfall 18"),
        (pubsub_module, "maybe_consume_signed_record", lambda *a: True, "pitfall 27"),
        (gossipsub_module, "env_to_send_in_RPC", lambda host: (b"", False), "pitfall 30"),
        (yamux_module.YamuxStream, "_auto_tune_and_send_window_update", lambda self, bytes_read=0: None, "pitfall 28"),
        (yamux_module.YamuxStream, "_grow_threshold", lambda self, divisor: 1, "pitfall 28"),
        (yamux_module.YamuxStream, "write", lambda self, data, timeout: None, "pitfall 33"),
        (multiselect_client.MultiselectClient, "select_one_of", lambda self, protocols, communicator: None, "pitfall 35"),
        (multiselect_client.MultiselectClient, "handshake", lambda self, communicator: None, "pitfall 35"),
        (multiselect_client, "MULTISELECT_PROTOCOL_ID", "/multistream/2.0.0", "pitfall 35"),
        (yamux_module.Yamux, "_write_frame", lambda self, data, lock: None, "pitfall 36"),
        (yamux_module.Yamux, "open_stream", lambda self: None, "pitfall 36"),
    ],
)
def test_a_moved_library_attribute_fails_loudly_at_install(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, replacement: Any, pitfall: str
) -> None:
    monkeypatch.setattr(module, name, replacement)
    with pytest.raises(LibraryChangedError, match=pitfall):
        libp2p_fixes.install()


def test_a_peers_sender_record_is_verified_once_not_in_every_rpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pitfall 27, with a real host's real signed peer record: the same bytes from the same peer are verified once
    (then again after the recheck interval); another record from that peer, or a forged one, is verified again."""
    libp2p_fixes.install()
    assert pubsub_module.maybe_consume_signed_record is libp2p_fixes.consume_sender_record
    assert gossipsub_module.maybe_consume_signed_record is libp2p_fixes.consume_sender_record
    checked: list[bytes] = []
    library_check = pubsub_utils.consume_envelope

    def counting(data: bytes, domain: str) -> Any:
        checked.append(bytes(data))
        return library_check(data, domain)

    monkeypatch.setattr(pubsub_utils, "consume_envelope", counting)
    sender, receiver = noise_host(), noise_host()
    record, _ = env_to_send_in_RPC(sender)
    rpc = rpc_pb2.RPC(senderRecord=record)
    for _ in range(5):
        assert libp2p_fixes.consume_sender_record(rpc, receiver, sender.get_id())
    assert len(checked) == 1, "the same record was verified again"
    forged = bytearray(record)
    forged[-5] ^= 1  # inside the signature
    assert not libp2p_fixes.consume_sender_record(rpc_pb2.RPC(senderRecord=bytes(forged)), receiver, sender.get_id())
    assert len(checked) == 2
    assert not libp2p_fixes.consume_sender_record(rpc, receiver, receiver.get_id()), "a record of another peer passed"
    assert libp2p_fixes.consume_sender_record(rpc_pb2.RPC(), receiver, sender.get_id())  # no record: as the library
    monkeypatch.setattr(libp2p_fixes, "SENDER_RECORD_RECHECK_S", 0.0)
    assert libp2p_fixes.consume_sender_record(rpc, receiver, sender.get_id())
    assert len(checked) == 4, "the recheck after the interval did not happen"


def test_our_own_record_is_derived_once_per_interval_not_for_every_rpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pitfall 30, with a real host's real signed peer record: outgoing RPCs reuse the record the library derived
    last, without rebuilding the host's address list each time; after the interval the library decides again, and
    a changed address gives a new record, as the library's own function would."""
    libp2p_fixes.install()
    host = noise_host()
    addrs = [Multiaddr(f"/ip4/127.0.0.1/tcp/4001/p2p/{host.get_id()}")]
    asked: list[int] = []

    def get_addrs() -> list[Multiaddr]:
        asked.append(1)
        return list(addrs)

    monkeypatch.setattr(host, "get_addrs", get_addrs)
    first, _ = libp2p_fixes.own_record_for_rpc(host)
    assert first == env_to_send_in_RPC(host)[0], "not the library's record"
    asked.clear()
    for _ in range(50):
        assert libp2p_fixes.own_record_for_rpc(host) == (first, False)
    assert asked == [], "the address list was rebuilt for an RPC within the interval"
    addrs[:] = [Multiaddr(f"/ip4/127.0.0.2/tcp/4002/p2p/{host.get_id()}")]
    assert libp2p_fixes.own_record_for_rpc(host)[0] == first  # within the interval: the record sent last
    monkeypatch.setattr(libp2p_fixes, "OWN_RECORD_RECHECK_S", 0.0)
    second, issued = libp2p_fixes.own_record_for_rpc(host)
    assert issued and second != first and asked, "the changed address gave no new record after the interval"
    assert env_to_send_in_RPC(host) == (second, False), "the library does not agree the new record is current"
    _, record = consume_envelope(second, "libp2p-peer-record")
    assert [str(a) for a in record.addrs] == [str(a) for a in addrs]


def test_another_queue_shape_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    def init(self: object, max_size: int = 64, max_message_size: int = 1 << 20, strict: bool = True) -> None:
        return None

    monkeypatch.setattr(rpc_queue.RpcQueue, "__init__", init)
    with pytest.raises(LibraryChangedError, match="pitfall 5"):
        libp2p_fixes.install()


class _Router:
    def __init__(self, params: ScoreParams | None = None) -> None:
        self.scorer = PeerScorer(params or ScoreParams())
        self.maintained: list[str] = []
        self.mesh: dict[str, set[object]] = {}
        self.fanout: dict[str, set[object]] = {}
        self.mcache = None

    def _check_equivocation(self, msg: object) -> bool:
        return False

    def _perform_opportunistic_grafting(self, topic: str, peers_to_graft: object) -> int:
        return 2

    async def _maintain_mesh_quality(self, topic: str) -> None:
        self.maintained.append(topic)

    def gossip_heartbeat(self) -> dict[object, dict[str, list[bytes]]]:
        for topic, peers in self.mesh.items():  # the library's shape: every topic, whatever the cache holds
            self._handle_topic_heartbeat(topic, peers)
        return {}

    def _handle_topic_heartbeat(
        self, topic: str, current_peers: set[object], is_fanout: bool = False, peers_to_gossip: object = None
    ) -> tuple[set[object], bool]:
        return current_peers, False


def test_the_router_patches_apply_and_refuse_another_shape() -> None:
    router = _Router()
    libp2p_fixes.patch_router(router)
    assert router._check_equivocation("m") is True and router._perform_opportunistic_grafting("t", {}) == 0
    changed = _Router()
    changed._perform_opportunistic_grafting = lambda topic: 0  # type: ignore[assignment,method-assign]
    with pytest.raises(LibraryChangedError, match="pitfall 15"):
        libp2p_fixes.patch_router(changed)


def test_neutral_scoring_is_skipped_and_configured_scoring_is_refused() -> None:
    """Pitfall 21: with the default parameters no score can differ from 0, so nothing the heartbeat skips can matter."""
    real = GossipSub(protocols=[PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12)
    assert libp2p_fixes._neutral(real.scorer.params)  # what the node builds is neutral
    router = _Router()
    libp2p_fixes.patch_router(router)
    trio.run(router._maintain_mesh_quality, "t")
    assert router.maintained == []
    router.scorer.on_heartbeat()
    weighted = ScoreParams(p4_invalid_messages=TopicScoreParams(weight=1.0, cap=10.0, decay=0.9))
    with pytest.raises(LibraryChangedError, match="pitfall 21"):
        libp2p_fixes.patch_router(_Router(weighted))
    decaying = ScoreParams(p5_behavior_penalty_decay=0.5)
    with pytest.raises(LibraryChangedError, match="pitfall 21"):
        libp2p_fixes.patch_router(_Router(decaying))


@pytest.mark.timeout(30)
def test_a_service_task_finds_the_same_parent_through_the_index_as_through_the_walk() -> None:
    """Pitfall 23: the indexed ``_find_parent_task`` answers what the library's walk over every task answers."""
    walk = trio_manager.TrioManager._find_parent_task
    if getattr(walk, "__name__", "") == "find_parent_task":  # installed by an earlier test: take the library's back
        walk = libp2p_fixes._LIBRARY_FIND_PARENT_TASK
    libp2p_fixes.install()
    indexed = trio_manager.TrioManager._find_parent_task
    assert indexed is not walk
    answers: list[tuple[object, object]] = []

    class Tree(Service):
        async def run(self) -> None:
            async def branch(depth: int) -> None:
                me = trio.lowlevel.current_task()
                answers.append((walk(self.manager, me), indexed(self.manager, me)))
                if depth < 3:
                    for _ in range(2):
                        self.manager.run_task(branch, depth + 1)
                await trio.sleep(0.05)

            for _ in range(3):
                self.manager.run_task(branch, 0)
            await trio.sleep_forever()

    async def main() -> None:
        with trio.fail_after(20):
            async with background_trio_service(Tree()) as manager:
                await trio.sleep(0.3)
                me = trio.lowlevel.current_task()  # not a task of the service: no parent either way
                answers.append((walk(manager, me), indexed(manager, me)))
                manager.cancel()

    trio.run(main)
    assert len(answers) == 3 * 15 + 1
    assert all(a is b for a, b in answers)
    assert all(a is not None for a, _ in answers[:-1]) and answers[-1] == (None, None)  # a branch: its own task


def test_the_swarm_patches_refuse_a_swarm_without_what_they_replace() -> None:
    class Connector:
        async def maybe_connect(self) -> None:
            return None

    class Swarm:
        auto_connector = Connector()
        psk = None
        retry_config = RetryConfig()

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


def test_the_coalescing_sender_applies_to_the_librarys_pubsub_and_refuses_another_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pitfall 31 is made on a real Pubsub (its behaviour over a real connection: tests/node/test_p2p.py); a
    sending loop of another shape, or one that no longer writes through ``write_msg``, stops the node."""
    host = noise_host()

    def pubsub() -> pubsub_module.Pubsub:
        return pubsub_module.Pubsub(host, GossipSub([PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12))

    ours = pubsub()
    libp2p_fixes.coalesce_rpc_writes(ours)
    assert ours.handle_sending_messages.__module__ == libp2p_fixes.__name__

    async def other_loop(self: object, peer_id: object, stream: object, queue: object) -> None:
        return None

    for replacement in (lambda self, peer_id, stream: None, other_loop):
        monkeypatch.setattr(pubsub_module.Pubsub, "handle_sending_messages", replacement)
        with pytest.raises(LibraryChangedError, match="pitfall 31"):
            libp2p_fixes.coalesce_rpc_writes(pubsub())


def test_the_host_and_pubsub_patches_apply_and_refuse_another_shape() -> None:
    """Pitfalls 24 and 25: no outbound identify; pubsub's per-topic spawns only when their first check would pass."""

    class Host:
        def __init__(self) -> None:
            self.asked: list[object] = []

        def _schedule_identify(self, peer_id: object, *, reason: str) -> None:
            self.asked.append(peer_id)

    host = Host()
    libp2p_fixes.patch_host(host)
    host._schedule_identify("p", reason="connect")
    assert host.asked == []
    moved = Host()
    moved._schedule_identify = lambda peer_id: None  # type: ignore[assignment,method-assign]
    with pytest.raises(LibraryChangedError, match="pitfall 24"):
        libp2p_fixes.patch_host(moved)

    spawned: list[tuple[str, tuple[object, ...]]] = []

    class Manager:
        def run_task(self, async_fn: Any, *args: Any) -> None:
            spawned.append((async_fn.__name__, args))

    class Cache:
        def window(self, topic: str) -> list[bytes]:
            return [b"mid"] if topic == "t" else []

    class Router:
        def __init__(self) -> None:
            self.adaptive_gossip_enabled = False
            self.degree_low = 2
            self._pending_messages = {"waiting": [object()]}
            self.mesh = {"short": {"a"}, "full": {"a", "b"}}
            self.mcache = Cache()

        async def flush_pending_messages(self, peer_id: object) -> None: ...

        async def on_peer_subscribed(self, peer_id: object, topic: str) -> None: ...

    class Pubsub:
        def __init__(self) -> None:
            self.manager = Manager()
            self.peers = {"up": object()}

        def handle_subscription(self, origin_id: object, sub: object) -> None:
            self.manager.run_task(self._replay_recent_messages, origin_id, "t")

        async def _replay_recent_messages(self, peer_id: object, topic: str) -> None: ...

        async def other(self, *args: object) -> None: ...

    pubsub, router = Pubsub(), Router()
    libp2p_fixes.patch_pubsub_spawns(pubsub, router)
    run = pubsub.manager.run_task
    run(router.flush_pending_messages, "idle")  # nothing waits for it: skipped
    run(router.flush_pending_messages, "waiting")
    run(pubsub._replay_recent_messages, "down", "t")  # no stream to it yet: skipped
    run(pubsub._replay_recent_messages, "up", "quiet")  # nothing recent in the topic: skipped
    run(pubsub._replay_recent_messages, "up", "t")
    run(router.on_peer_subscribed, "c", "unjoined")  # not our topic: skipped
    run(router.on_peer_subscribed, "c", "full")  # mesh at its lower bound: skipped
    run(router.on_peer_subscribed, "b", "full")  # already in the mesh: the library wakes waiters
    run(router.on_peer_subscribed, "c", "short")
    run(pubsub.other, "x")
    assert spawned == [
        ("flush_pending_messages", ("waiting",)),
        ("_replay_recent_messages", ("up", "t")),
        ("on_peer_subscribed", ("b", "full")),
        ("on_peer_subscribed", ("c", "short")),
        ("other", ("x",)),
    ]
    router.adaptive_gossip_enabled = True
    with pytest.raises(LibraryChangedError, match="pitfall 25"):
        libp2p_fixes.patch_pubsub_spawns(Pubsub(), router)


def test_gossip_heartbeat_gives_the_librarys_result_and_skips_quiet_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pitfall 29, on a real GossipSub router: the heartbeat's IHAVE targets are the library's, and a topic with
    nothing in the message cache's window costs no peer selection (the library picked peers for it and threw them
    away). Six non-mesh subscribers per topic and a gossip count of 6, so the library's random pick is everyone."""
    router = GossipSub([PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12, adaptive_gossip_enabled=False)
    peers = [ID(bytes([0, 1, i])) for i in range(9)]
    router.pubsub = SimpleNamespace(peer_topics={t: set(peers) for t in ("busy", "quiet", "out")})  # type: ignore[assignment]
    router.peer_protocol = dict.fromkeys(peers, PROTOCOL_ID_V11)
    router.mesh = {"busy": set(peers[:3]), "quiet": set(peers[:3])}
    router.fanout = {"out": set(peers[3:6])}
    for seqno, topic in enumerate(("busy", "out")):
        router.mcache.put(rpc_pb2.Message(from_id=peers[0].to_bytes(), seqno=bytes([seqno]), topicIDs=[topic]))
    picked: list[str] = []
    pick = router._get_in_topic_gossipsub_peers_from_minus

    def counting(topic: str, *args: Any, **kwargs: Any) -> list[ID]:
        picked.append(topic)
        return pick(topic, *args, **kwargs)

    monkeypatch.setattr(router, "_get_in_topic_gossipsub_peers_from_minus", counting)
    library = {p: dict(t) for p, t in GossipSub.gossip_heartbeat(router).items()}
    assert "quiet" in picked
    picked.clear()
    libp2p_fixes._gossip_only_what_is_recent(router)
    ours = {p: dict(t) for p, t in router.gossip_heartbeat().items()}
    assert ours == library
    assert {topic for targets in ours.values() for topic in targets} == {"busy", "out"}
    assert "quiet" not in picked and picked, picked
    moved = GossipSub([PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12)
    moved._handle_topic_heartbeat = lambda topic, peers: (set(), False)  # type: ignore[method-assign,assignment]
    with pytest.raises(LibraryChangedError, match="pitfall 29"):
        libp2p_fixes._gossip_only_what_is_recent(moved)


def test_held_syns_and_acks_are_bounded_and_sent_bare_when_the_bound_is_reached() -> None:
    """Pitfall 36: a stream dropped before any frame of its own would keep its held SYN until the connection closed;
    past ``MAX_HELD`` per session, what is held goes out as the library's bare frames, before the frame at hand.
    (The real connection is in tests/node/test_p2p.py::test_a_streams_syn_and_ack_ride_on_its_first_data_frames.)"""

    class Conn:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        async def write(self, data: bytes) -> None:
            self.sent.append(data)

    class Session:
        def __init__(self) -> None:
            self._write_lock = trio.Lock()
            self.secured_conn = Conn()

    def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
        return struct.pack(yamux_module.YAMUX_HEADER_FORMAT, 0, kind, flags, stream_id, len(payload)) + payload

    session = Session()
    syn = yamux_module.FLAG_SYN

    async def main() -> None:
        for sid in range(1, 2 * libp2p_fixes.MAX_HELD - 2, 2):  # MAX_HELD - 1 streams opened
            await libp2p_fixes.write_frame(session, frame(yamux_module.TYPE_WINDOW_UPDATE, syn, sid))
        assert session.secured_conn.sent == []  # all held
        await libp2p_fixes.write_frame(session, frame(yamux_module.TYPE_DATA, 0, 1, b"data"))
        assert session.secured_conn.sent == [frame(yamux_module.TYPE_DATA, syn, 1, b"data")]  # rode on the data
        for sid in (99_999, 100_001):  # held again: MAX_HELD now
            await libp2p_fixes.write_frame(session, frame(yamux_module.TYPE_WINDOW_UPDATE, syn, sid))
        assert len(session.secured_conn.sent) == 1
        await libp2p_fixes.write_frame(session, frame(yamux_module.TYPE_WINDOW_UPDATE, syn, 100_003))
        flushed = session.secured_conn.sent[-1]
        assert len(flushed) == 12 * libp2p_fixes.MAX_HELD + 12  # the held ones, then the SYN at hand, bare
        assert flushed.endswith(frame(yamux_module.TYPE_WINDOW_UPDATE, syn, 100_003))
        assert frame(yamux_module.TYPE_WINDOW_UPDATE, syn, 3) in flushed
        assert frame(yamux_module.TYPE_WINDOW_UPDATE, syn, 1) not in flushed
        await libp2p_fixes.write_frame(session, frame(yamux_module.TYPE_DATA, 0, 3, b"late"))
        assert session.secured_conn.sent[-1] == frame(yamux_module.TYPE_DATA, 0, 3, b"late")  # its SYN went already

    trio.run(main)
