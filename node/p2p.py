"""The py-libp2p adapter: implements ``Overlay`` over a real libp2p host.

Configured against each measured pitfall of py-libp2p 0.8.1
(``../shared/LIBP2P.md``, ``docs/overlay.md``), each guarded by a test in
tests/node/test_p2p.py:

1. plaintext: only Noise is offered (``sec_opt``), so a plaintext peer cannot connect;
2. spam protection off (it drops our own bursts silently);
3. adaptive gossip off and a 1 s heartbeat (defaults stretch it to a minute);
4. equivocation cache off (it keeps ~1000 whole messages);
5. per-peer outbound queue 32 -> 1024 RPCs and our own bounded inbound queue
   with counted drops (publish() never reports loss; our delivery layer and
   sync recover what gossip drops);
6. gossipsub v1.1 only (v1.2 IDONTWANT doubles CPU);
7. one connection per peer (avoids a 250 ms connect delay);
8. RPC size 4 MiB; our gossip batches stay under 3 MiB, blocks go over request/response;
9. (was: PSK length checked before start) superseded by 17;
10. metrics off (its exporter binds 0.0.0.0 and stalls without a consumer);
11. shutdown closes the host and stops the seen-cache thread (else ports and threads leak);
12. ``StreamEOF`` and friends never escape: every library error becomes ``OverlayError``;
13. message ids are content hashes, so re-sent batches deduplicate;
14. libp2p's auto-connector is off and the connection limits lifted: it would
    redial any peer in the peerstore (gated outsiders included) to reach 50-100
    connections and prune above 300; our dialer keeps exactly the directory's nodes;
15. opportunistic grafting off: 0.8.1 runs it on every heartbeat (the spec: every
    60) and grafts 2 more peers per topic each time, so meshes grow past D_high,
    get pruned, and the pruned peers are grafted again while in backoff. With a
    topic per shard that GRAFT/PRUNE churn was most of an idle node's CPU;
16. "disconnected" is not always notified: ``SwarmConn.close()`` removes the
    connection from the swarm, then sleeps 0.1 s, then notifies; a close that is
    cancelled in between (an upgrade timeout, a trim, starved tasks) never
    notifies. Counting notifications then leaves a peer "connected" forever
    with no connection under it: requests fail and it is never redialled (the
    95-process full mesh stalled at 87-94 of 94 peers that way). Who is
    connected is therefore read from the swarm's live connection table, on
    every notification and every second;
17. the library's pnet is not the specification's (Salsa20 with an 8-byte nonce
    instead of XSalsa20 with 24): node/pnet.py replaces the protector, checks the
    first decrypted bytes so a wrong key is refused at once, and the library's
    ``psk`` argument is never used;
18. identify's agent version is ours (``truc/<version> (py-libp2p/<version>)``),
    set on the library's module constant, checked to still be the one it sends;
19. the swarm keeps a 60 s "negative cache" of peers whose every address failed
    and refuses to dial them meanwhile: a node that was down (or a peer not yet
    listening) stayed unreachable for a minute after it came back, whatever our
    1 s … 60 s backoff said. Our dialer lifts that block before each of its dials.
20. SO_REUSEPORT off: 0.8.1 sets it on every TCP listener (for hole punching,
    which we do not use), so a second node on a taken port started and the
    kernel split inbound connections between the two. Its private
    ``_set_reuse_flags`` is replaced (checked to exist at import) by one that
    sets SO_REUSEADDR only; and ``Swarm.listen`` only logs a failed listen,
    so every configured address is checked after start (ConfigError);
21. peer scoring ran on every heartbeat with nothing configured (every peer of every topic scored 0, every counter
    multiplied by 1.0): skipped while the parameters are the neutral defaults;
22. a dial deadline that expires while the swarm registers the connection closes it; with every node dialling
    every peer at once, from both ends, a loaded machine did that thousands of times, and its 10 s limits on
    Noise, yamux and stream negotiation threw away finished work the same way. Our deadline is a 90 s safety
    net, the library's limits 30 s, at most ``MAX_DIALS`` dials run at once, no retries inside a dial, and one
    end of each pair dials first (``dials_first``), the other after ``DEFER_S`` (at once at a restart);
23. spawning a library service task walked every task of the service (pubsub spawns three per topic a peer
    subscribes to): the parent is found through an index instead;
24. the host identified every peer it connected to, for a peerstore nothing reads: it answers identify, never asks;
25. of pubsub's three spawns per subscribed topic, those that would return at once are not made;
26. eclipse protection off: every heartbeat, for every topic whose mesh has peers on fewer than 3 IP addresses,
    it scans every subscriber for one on another address. Only members of the directory ever connect, so the
    addresses of mesh peers protect nothing; where several nodes share an address (one machine: tests, simnet,
    the benchmarks) the scan ran on all 96 topics every second and found nothing.
27. a peer's signed peer record, the same bytes in every pubsub RPC, is verified once, not in every RPC;
28. yamux credited the peer after nearly every read (a length-prefixed message is two or more reads): reads now
    wait for go-yamux's half-window hysteresis while the peer has credit (bulk reads too, since 33);
29. the gossip heartbeat picked (and threw away) peers for every topic every second: only topics with recent
    messages are gossiped about now, with the same targets;
30. every pubsub RPC sent rebuilt the host's address list to see whether our own signed record was still
    current: the record is re-derived every 10 s instead;
31. pubsub wrote each RPC queued for a peer with a stream write of its own: what is queued leaves in one write,
    the same bytes in the same order;
32. importing the library loaded QUIC, WebSocket, TLS, SECIO and mDNS, none of which a node uses: stand-ins
    answer for them (node/slim_imports.py, installed by node/__init__.py before the library is imported);
33. a yamux writer out of window credit polled for it every 10 ms: it sleeps until the update wakes it;
34. a full yamux frame was 17 bytes more than one Noise message carries, so it left as two: frames now fit one;
35. multistream-select's initiator wrote its header and its proposal with a round trip between: one write now;
36. a stream's SYN and the ACK accepting it were frames of their own: they ride on its first DATA frames.

Membership is enforced here too: a connection with a peer that is not a node
of the current directory is refused right after the Noise handshake
authenticates its peer id, before it is registered (no stream ever opens);
when the directory changes, connections to peers no longer listed are closed.

Why one module: it is the one adapter to py-libp2p. The numbered workarounds
above each constrain code in it (the host's configuration, the gate, who is
connected, the dialer), and most of the text is their reasons; split, each
half would cite the other's.
"""

from __future__ import annotations

import errno
import hashlib
import math
import random
import socket
from collections.abc import Callable, Mapping, Sequence

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.request_response import BytesCodec, RequestResponse, RequestResponseConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from identity.keys import NodeKey
from protocol.errors import ConfigError

from . import channel, libp2p_fixes, pnet
from .log import Log
from .metrics import Metrics
from .overlay import OverlayError, PeerHandler, RequestHandler, TopicHandler, TopicValidator
from .tasks import TaskStatus

MAX_PEERS = 4096
INBOUND_QUEUE = 4096
INBOUND_WORKERS = 4
UPGRADE_TIMEOUT_S = 30.0  # Noise, yamux, and each stream's protocol negotiation (library: 10 s; pitfall 22)
DIAL_TIMEOUT_S = 90.0  # a safety net only: the library bounds TCP (10 s), Noise and yamux (30 s each) (pitfall 22)
REDIAL_S = (1.0, 60.0)
MAX_DIALS = 8  # our dials in flight at once: 94 handshakes at once starved everything else on 2 cores (pitfall 22)
DEFER_S = (4.0, 8.0)  # the second dialer of a pair waits this long (drawn per peer) for the first one's connection
REFUSED_LOG_EVERY_S = 600.0  # a refused peer is logged at once, then at most once per 10 min with a count
Targets = Callable[[], Mapping[str, Sequence[str]]]  # peer id -> multiaddrs (without /p2p); our own entry: peers can dial us
Membership = Callable[[str], bool]


class _Notifee(INotifee):
    def __init__(self, overlay: P2POverlay) -> None:
        self.o = overlay

    async def opened_stream(self, network: INetwork, stream: object) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: object) -> None:
        pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        await self.o._on_connected(conn.muxed_conn.peer_id)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        await self.o._on_disconnected(conn.muxed_conn.peer_id)

    async def listen(self, network: INetwork, multiaddr: object) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: object) -> None:
        pass


class P2POverlay:
    def __init__(
        self,
        *,
        key: NodeKey,
        listen: Sequence[str],
        is_member: Membership,
        targets: Targets,
        log: Log,
        metrics: Metrics,
        psk: bytes | None = None,
        psk_also_accept: Sequence[bytes] = (),
        bootstrap: Sequence[str] = (),
        v2: bool = True,
        restarted: bool = False,
    ) -> None:
        """``psk``: the network's 32-byte pre-shared key (libp2p private network), or None for none;
        ``restarted``: this node ran before (its store is not new): its peers are in their redial backoff for it,
        so at start it dials every peer itself, not only those it dials first (``DEFER_S``);
        ``psk_also_accept``: keys also accepted from peers that dial with them (a key rotation);
        ``v2``: False makes a node that neither offers nor asks the version-2 streams (an older node, in tests)."""
        self.key = key
        self.listen = [multiaddr.Multiaddr(a) for a in listen]
        self.is_member = is_member
        self.targets = targets
        self.log = log
        self.metrics = metrics
        self.bootstrap = list(bootstrap)
        self.v2 = v2
        self.restarted = restarted
        self._no_defer_until = -math.inf  # set at start for a restarted node
        libp2p_fixes.install()  # checked at every start: a library update that moved one fails here, loudly
        kp = create_new_key_pair(key.seed)
        self.host: IHost = new_host(
            key_pair=kp,
            sec_opt={TProtocol(NOISE_ID): NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)},  # 1
            muxer_opt={TProtocol(YAMUX_ID): Yamux},
            connection_config=ConnectionConfig(  # 7, 14, 22
                max_connections_per_peer=1,
                max_connections=MAX_PEERS,
                high_watermark=MAX_PEERS,
                low_watermark=0,
                min_connections=0,
                inbound_upgrade_timeout=UPGRADE_TIMEOUT_S,
                outbound_upgrade_timeout=UPGRADE_TIMEOUT_S,
                inbound_stream_protocol_negotiation_timeout=UPGRADE_TIMEOUT_S,
                outbound_stream_protocol_negotiation_timeout=UPGRADE_TIMEOUT_S,
            ),
            psk=None,  # 17: never the library's pnet
            enable_metrics=False,  # 10
        )
        libp2p_fixes.patch_host(self.host)  # 24
        self._id = self.host.get_id()
        if psk_also_accept and psk is None:
            raise ValueError("keys to also accept, but no private-network key")
        protector = (
            pnet.PrivateNetwork(psk, also_accept=psk_also_accept, on_refused=self._pnet_refused) if psk is not None else None
        )
        libp2p_fixes.patch_swarm(self.host.get_network(), gate=self._gate, protector=protector)  # 14, 17, 19, the gate
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V11],  # 6
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=1,  # 3
            adaptive_gossip_enabled=False,  # 3
            spam_protection_enabled=False,  # 2
            eclipse_protection_enabled=False,  # 26
            time_to_live=30,
            gossip_window=3,
            gossip_history=5,
        )
        libp2p_fixes.patch_router(self.router)  # 4, 15, 21, 29
        self.pubsub = Pubsub(
            self.host,
            self.router,
            strict_signing=True,
            max_inbound_rpc_size=libp2p_fixes.RPC_MAX_BYTES,
            msg_id_constructor=lambda msg: hashlib.sha256(msg.data).digest(),  # 13
            max_subscriptions_per_peer=4096,
        )
        libp2p_fixes.coalesce_rpc_writes(self.pubsub)  # 31
        self.rr = RequestResponse(self.host)
        self.channels = channel.Channels(self.host, log=log, metrics=metrics)  # our version-2 streams to peers
        self._up: set[str] = set()  # members with a live connection, as last reconciled
        self._b58: dict[ID, str] = {}
        self._on_up: PeerHandler | None = None
        self._on_down: PeerHandler | None = None
        self._nursery: trio.Nursery | None = None
        self._inbound: trio.MemorySendChannel[tuple[TopicHandler, str, str, bytes]]
        self._inbound_recv: trio.MemoryReceiveChannel[tuple[TopicHandler, str, str, bytes]]
        self._inbound, self._inbound_recv = trio.open_memory_channel(INBOUND_QUEUE)
        self._next_dial: dict[str, tuple[float, float]] = {}
        self._refusals: dict[str, tuple[float, int]] = {}  # peer -> (last logged, refusals not logged since)
        self._dialing: set[str] = set()
        self._dial_done = trio.Event()
        self._second_from: dict[str, float] = {}  # peer we dial second -> when we dial it if it has not dialled us
        self.host.get_network().register_notifee(_Notifee(self))

    async def _gate(self, muxed_conn: object, direction: str) -> None:
        """The membership gate, at the earliest point where the remote peer id is authenticated (after the Noise
        handshake) and before the connection is registered: no stream, identify or gossip ever runs with an outsider."""
        peer = muxed_conn.peer_id.to_base58()  # type: ignore[attr-defined]
        if not self.is_member(peer):
            self._refused(peer, direction=direction)
            try:
                await muxed_conn.close()  # type: ignore[attr-defined]
            finally:
                raise SwarmException(f"{peer} is not a node of the directory")

    # --- Overlay -----------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return str(self._id.to_base58())

    def addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    def connected_peers(self) -> set[str]:
        return set(self._up)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with (
                self.host.run(self.listen),
                background_trio_service(self.pubsub),
                background_trio_service(self.router),
                trio.open_nursery() as nursery,
            ):
                self._check_listening()
                libp2p_fixes.patch_pubsub_spawns(self.pubsub, self.router)  # 25
                self._nursery = self.channels.nursery = nursery
                for _ in range(INBOUND_WORKERS):
                    nursery.start_soon(self._inbound_worker)
                nursery.start_soon(self._dialer)
                self.log.info("overlay.listening", addrs=",".join(self.addrs()))
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = self.channels.nursery = None
            with trio.CancelScope(shield=True):
                await self.host.close()  # 11
            self.pubsub.seen_messages.stop()  # 11

    def _check_listening(self) -> None:
        """Raise ConfigError for a configured address nothing listens on (17: the swarm only logs it)."""
        listening = self.host.get_network().listeners
        for addr in self.listen:
            if str(addr) not in listening:
                raise ConfigError(f"listen {addr}: {_why_not_listening(addr)}")

    async def publish(self, topic: str, data: bytes) -> None:
        try:
            await self.pubsub.publish(topic, data)
            self.metrics.inc("gossip_published")
        except Exception as exc:  # 12: publishing is best effort; the outbox retries
            self.metrics.inc("gossip_publish_errors")
            self.log.warning("gossip.publish_failed", topic=topic, reason=f"{type(exc).__name__}: {exc}")

    async def subscribe(self, topic: str, validator: TopicValidator, handler: TopicHandler) -> None:
        def validate(forwarder: ID, msg: object) -> bool:
            try:
                return validator(topic, forwarder.to_base58(), msg.data)  # type: ignore[attr-defined]
            except Exception as exc:  # a validator bug must not kill the pubsub loop
                self.log.error("gossip.validator_crashed", topic=topic, reason=f"{type(exc).__name__}: {exc}")
                return False

        self.pubsub.set_topic_validator(topic, validate, False)
        sub = await self.pubsub.subscribe(topic)
        assert self._nursery is not None, "overlay not running"
        self._nursery.start_soon(self._reader, topic, sub, handler)

    async def _reader(self, topic: str, sub: object, handler: TopicHandler) -> None:
        async for msg in sub:  # type: ignore[attr-defined]
            origin = ID(msg.from_id)
            if origin == self._id:
                continue  # our own publishes come back on our own subscription
            try:
                self._inbound.send_nowait((handler, topic, origin.to_base58(), msg.data))
            except trio.WouldBlock:
                self.metrics.inc("gossip_inbound_dropped")  # 5: counted; sync recovers it

    async def _inbound_worker(self) -> None:
        async for handler, topic, peer, data in self._inbound_recv:
            await handler(topic, peer, data)

    def set_request_handler(
        self, protocol: str, handler: RequestHandler, *, max_request_bytes: int, max_response_bytes: int
    ) -> None:
        async def serve(request: bytes, context: object) -> bytes:
            peer = context.peer_id.to_base58()  # type: ignore[attr-defined]
            return await handler(peer, request)

        self.rr.set_handler(
            TProtocol(protocol),
            serve,
            BytesCodec(),
            RequestResponseConfig(timeout=120, max_request_size=max_request_bytes, max_response_size=max_response_bytes),
        )
        v2 = channel.V2.get(protocol) if self.v2 else None
        if v2 is not None:  # the same handler, many requests per stream (node/channel.py)
            answerer = channel.Answerer(
                v2, handler, (max_request_bytes, max_response_bytes), self.is_member, self.log, self.metrics
            )
            self.host.set_stream_handler(TProtocol(v2), answerer.serve)

    async def request(self, peer: str, protocol: str, data: bytes, *, timeout: float, max_response_bytes: int) -> bytes:
        try:
            pid = ID.from_base58(peer)
        except Exception:
            raise OverlayError(peer, "not a peer id") from None
        if peer not in self._up:
            raise OverlayError(peer, "not connected")
        v2 = channel.V2.get(protocol) if self.v2 else None
        if v2 is not None:
            try:
                with trio.fail_after(timeout):
                    ch = await self.channels.get(pid, peer, v2)
                    if ch is not None:
                        return await ch.request(data, max_request_bytes=len(data), max_response_bytes=max_response_bytes)
            except trio.TooSlowError:
                raise OverlayError(peer, f"no answer within {timeout} s") from None
            except channel.ChannelError as exc:
                raise OverlayError(peer, str(exc)) from None
        try:
            with trio.fail_after(timeout + 1):
                response: bytes = await self.rr.send_request(
                    pid,
                    [TProtocol(protocol)],
                    data,
                    BytesCodec(),
                    RequestResponseConfig(
                        timeout=timeout, max_request_size=len(data) + 1024, max_response_size=max_response_bytes
                    ),
                )
        except trio.TooSlowError:
            raise OverlayError(peer, f"no answer within {timeout} s") from None
        except Exception as exc:  # 12: RequestResponseError, StreamError, OSError...
            raise OverlayError(peer, f"{type(exc).__name__}: {exc}") from None
        return response

    def on_peer(self, connected: PeerHandler, disconnected: PeerHandler) -> None:
        self._on_up = connected
        self._on_down = disconnected
        for peer in sorted(self.connected_peers()):
            self._spawn(connected, peer)

    def refresh(self) -> None:
        """The directory changed: drop peers that are no longer members; dial new ones at once."""
        for pid in list(self.host.get_network().connections):
            if not self.is_member(self._name(pid)):
                self._spawn(self._close, pid)
        self._next_dial.clear()
        self._reconcile()
        self._dial_done.set()

    # --- connections ---------------------------------------------------------------------

    def _pnet_refused(self, remote: str, reason: str) -> None:
        self.metrics.inc("connections_refused", reason="private_network")
        self.log.warning("peer.refused", address=remote, reason=reason)

    def _spawn(self, fn: Callable[..., object], *args: object) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)  # type: ignore[arg-type]

    async def _close(self, pid: ID) -> None:
        try:
            await self.host.get_network().close_peer(pid)
        except Exception as exc:
            self.log.debug("peer.close_failed", peer=pid.to_base58()[:16], reason=str(exc))

    def _name(self, pid: ID) -> str:
        name = self._b58.get(pid)
        if name is None:
            if len(self._b58) > 4 * MAX_PEERS:  # outsiders cycling keys must not grow it forever
                self._b58.clear()
            name = self._b58[pid] = pid.to_base58()
        return name

    def _reconcile(self, *, tick: bool = False) -> None:
        """Bring ``_up`` in line with the swarm's live connections (16) and tell the engine what changed."""
        live = {
            self._name(pid) for pid, conns in self.host.get_network().connections.items() if any(not c.is_closed for c in conns)
        }
        live = {p for p in live if self.is_member(p)}
        gone, new = self._up - live, live - self._up
        self._up = live
        for peer in sorted(new):
            self._next_dial.pop(peer, None)  # connected, whoever dialled: the next loss starts from the shortest backoff
            if self._on_up is not None:
                self._spawn(self._on_up, peer)
        for peer in sorted(gone):
            self.channels.forget(peer)
            if tick:  # found by the periodic check, not (yet) notified by the library: pitfall 16
                self.metrics.inc("disconnects_unnotified")
                self.log.info("peer.disconnected_unnotified", peer=peer[:16])
            if self._on_down is not None:
                self._spawn(self._on_down, peer)

    def _refused(self, peer: str, **fields: str) -> None:
        """Count every refusal; log a peer's first, then at most one line per REFUSED_LOG_EVERY_S with the count between."""
        self.metrics.inc("connections_refused", reason="not_in_directory")
        now = trio.current_time()
        last = self._refusals.get(peer)
        if last is not None and now - last[0] < REFUSED_LOG_EVERY_S:
            self._refusals[peer] = (last[0], last[1] + 1)
            return
        if len(self._refusals) > 4 * MAX_PEERS:  # outsiders cycling keys must not grow it forever
            self._refusals.clear()
        self._refusals[peer] = (now, 0)
        self.log.warning(
            "peer.refused",
            peer=peer[:16],
            reason="not a node of the directory",
            suppressed=last[1] if last is not None else 0,
            **fields,
        )

    async def _on_connected(self, pid: ID) -> None:
        peer = self._name(pid)
        if not self.is_member(peer):
            self._refused(peer)
            self._spawn(self._close, pid)
            return
        self._reconcile()

    async def _on_disconnected(self, pid: ID) -> None:
        self._reconcile()

    async def _dialer(self) -> None:
        """Keep a connection to every node of the directory (and the bootstrap peers), with capped backoff.

        Who dials (pitfall 22): of each pair of nodes, one is the first dialer (``dials_first``); the other dials
        only if no connection came within ``DEFER_S``, so after a start or a healed partition the pair
        does one handshake, not two crossing ones. The second dialer still dials when the first cannot (it is in
        its backoff for us, or it cannot dial us: we are listed without addresses). A restarted node does not
        wait at its start: its peers tried it while it was down, and their backoff (up to 60 s) kept a restarted
        recipient 4 to 8 s from its catch-up (bench.node); a crossing handshake once per restart costs less.
        At most ``MAX_DIALS`` dials run at once, in random order, and a finished dial starts the next at once.
        """
        if self.restarted:
            self._no_defer_until = trio.current_time() + DEFER_S[0]
        while True:
            self._reconcile(tick=True)
            self._dial_due()
            with trio.move_on_after(1.0):
                await self._dial_done.wait()
            self._dial_done = trio.Event()

    def _dial_due(self) -> None:
        now = trio.current_time()
        wanted = {p: list(a) for p, a in self.targets().items()}
        dialled_by_peers = bool(wanted.pop(self.peer_id, None))  # our own listing: can peers dial us?
        ours: set[str] = set()
        for addr in self.bootstrap:
            if "/p2p/" in addr:
                base, peer = addr.rsplit("/p2p/", 1)
                wanted.setdefault(peer, [base])
                ours.add(peer)
        for peer in [p for p in self._second_from if p in self._up or p not in wanted]:
            del self._second_from[peer]
        due = []
        for peer, addrs in wanted.items():
            if peer == self.peer_id or peer in self._up or peer in self._dialing or not addrs:
                continue
            if dialled_by_peers and peer not in ours and not dials_first(self.peer_id, peer):
                defer = 0.0 if now < self._no_defer_until else random.uniform(*DEFER_S)
                since = self._second_from.setdefault(peer, now + defer)
                if now < since:
                    continue
            if now >= self._next_dial.get(peer, (0.0, 0.0))[0]:
                due.append(peer)
        random.shuffle(due)  # jitter: 95 nodes must not all dial the same peers in the same order
        for peer in due[: max(0, MAX_DIALS - len(self._dialing))]:
            self._dialing.add(peer)
            self._spawn(self._dial, peer, wanted[peer])

    async def _dial(self, peer: str, addrs: list[str]) -> None:
        try:
            info = PeerInfo(ID.from_base58(peer), [multiaddr.Multiaddr(a) for a in addrs])
            self.host.get_network().unblock_peer(info.peer_id)  # type: ignore[attr-defined]  # 19: our backoff decides
            with trio.fail_after(DIAL_TIMEOUT_S):
                await self.host.connect(info)
            self._next_dial.pop(peer, None)
        except Exception as exc:
            _, last = self._next_dial.get(peer, (0.0, 0.0))
            delay = min(REDIAL_S[1], max(REDIAL_S[0], last * 2))
            # jitter: two peers whose dials crossed and failed together must not retry in lockstep
            self._next_dial[peer] = (trio.current_time() + delay * random.uniform(0.5, 1.0), delay)
            self.metrics.inc("dial_failures")
            self.log.debug("peer.dial_failed", peer=peer[:16], reason=f"{type(exc).__name__}: {exc}"[:200], retry_in_s=delay)
        finally:
            self._dialing.discard(peer)
            self._dial_done.set()


def dials_first(me: str, peer: str) -> bool:
    """Whether ``me`` is the first dialer of the pair: both ends compute the same answer, and each node is the first
    dialer of about half its peers (a hash of the pair picks the lower or the higher peer id)."""
    lo, hi = sorted((me, peer))
    return me == (hi if hashlib.sha256(f"{lo}/{hi}".encode()).digest()[0] & 1 else lo)


def _why_not_listening(addr: multiaddr.Multiaddr) -> str:
    """Words for a failed listen: bind the address ourselves (only to name the reason; the library's bind decided)."""
    try:
        host = addr.value_for_protocol("ip6") if "ip6" in {p.name for p in addr.protocols()} else addr.value_for_protocol("ip4")
        port = int(addr.value_for_protocol("tcp"))
        family = socket.AF_INET6 if ":" in str(host) else socket.AF_INET
    except Exception:
        return "not an address this node can listen on (use /ip4/ADDRESS/tcp/PORT)"
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(host), port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                f"the address is already in use (another node or program listens on port {port}; stop it or choose another port)"
            )
        return f"cannot listen there: {exc.strerror}"
    return 'the node could not listen there (run with log_level = "debug" for the library\'s reason)'
