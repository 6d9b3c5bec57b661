"""The one place a node is put together: its parts, built in dependency order.

Both ``truc run`` (node/daemon.py) and simnet's in-process nodes
(simnet/cluster.py) build a node here, so they cannot differ. Read it and
you know what a node is made of; docs/architecture.md draws the same graph.

    NodeCore ── shared state: config, store, trust, keys, clock, lifecycle (built by the caller first)
      └─ overlay (given: py-libp2p, or simnet's virtual wire) reads core.trust through a DirectoryGate
    Outbox ─ Statuses ─ Inbound ─ Membership ─ Submission ─ Retention ─ EdxmlGateway
    workers: DeliveryWorker (outbox), BlockFetcher, Syncer; GossipBatcher
    Engine ── starts them, registers the network handlers, and is what IPC and tests hold
"""

from __future__ import annotations

from .batcher import GossipBatcher
from .core import NodeCore
from .delivery import DeliveryWorker
from .edxml import EdxmlGateway
from .engine import Engine
from .fetcher import BlockFetcher
from .inbound import Arrival, Inbound
from .membership import Membership
from .outbox import Outbox
from .overlay import Overlay, shard_topic
from .retention import Retention
from .statuses import Statuses
from .submission import Submission
from .syncer import Syncer


class DirectoryGate:
    """Who may connect, and whom to dial: always the directory in use now (it changes at run time)."""

    def __init__(self, n: NodeCore) -> None:
        self.n = n

    def is_member(self, peer: str) -> bool:
        return self.n.trust.is_member(peer)

    def targets(self) -> dict[str, tuple[str, ...]]:
        """Every node's addresses, this node's own included (the overlay skips it, and learns from it whether peers
        can dial this node)."""
        return {p: rec.addrs for p, rec in self.n.trust.directory.nodes.items()}


def assemble(n: NodeCore, overlay: Overlay) -> Engine:
    """Every part of a node on ``n`` and ``overlay``, wired; run it with ``Engine.run``."""
    cfg = n.config
    batcher = GossipBatcher(overlay.publish, flush_ms=cfg.gossip_flush_ms, max_bytes=cfg.gossip_batch_kb << 10)
    outbox = Outbox(n.store, retry=cfg.retry, random=n.random, log=n.log, metrics=n.metrics, emit=n.emit)
    delivery = DeliveryWorker(
        outbox,
        store=n.store,
        committer=n.committer,
        overlay=overlay,
        batcher=batcher,
        config=cfg,
        locate=n.host_peer,
        topic_of=lambda code: shard_topic(n.trust.net, code.shard),
        clock=n.clock,
        accepting=lambda: not n.stopping,
        metrics=n.metrics,
        log=n.log,
    )
    statuses = Statuses(n, outbox)
    # Inbound and the two workers that feed it need each other: the fetcher completes documents
    # through inbound, and inbound asks the fetcher for blocks and the syncer to answer peers.
    fetcher: BlockFetcher
    syncer: Syncer
    inbound = Inbound(
        n,
        outbox,
        statuses,
        want_blocks=lambda doc_id: fetcher.want(doc_id),
        answer_sync=lambda req, peer: syncer.answer(req, peer),
    )
    fetcher = BlockFetcher(n, overlay, complete=inbound.complete_document, open_early=inbound.open_as_recipient)
    membership = Membership(
        n,
        overlay,
        outbox,
        statuses,
        inbound,
        sync_soon=lambda peer: syncer.sync_soon(peer),
        peer_seen=delivery.peer_seen,
    )
    syncer = Syncer(
        n,
        overlay,
        ingest=lambda raws, peer: inbound.ingest(raws, peer=peer, path=Arrival.SYNC),
        apply_directory=lambda envs, source: membership.apply_directory(envs, source=source),
    )
    submission = Submission(n, outbox, statuses)
    return Engine(
        n,
        overlay,
        batcher=batcher,
        outbox=outbox,
        delivery=delivery,
        fetcher=fetcher,
        syncer=syncer,
        statuses=statuses,
        inbound=inbound,
        membership=membership,
        submission=submission,
        retention=Retention(n, expire_parked=inbound.expire_parked),
        edxml=EdxmlGateway(n, submission, statuses),
    )
