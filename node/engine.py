"""The engine: a node's parts, started together, and what the outside world holds on to.

``node/assemble.py`` builds the parts; the engine starts them in order
(committer, batcher, the start scans, network handlers, workers, upkeep),
routes each network protocol to the part that owns it, and gives IPC,
simnet and tests one object to reach the parts through. It decides nothing
itself: every decision is in a part (docs/architecture.md lists which).

The network is reached only through ``Overlay``, time only through the
core's clock and randomness only through its rng, so the same code runs over
py-libp2p (node/p2p.py) and in virtual time (simnet/virtual.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import trio

from identity.sealing import FileSource
from identity.trust import Trust
from protocol import messages as m
from protocol.agency import AgencyCode
from protocol.document import DocumentMeta, FileBytes, FileDone
from protocol.envelope import MessageHeader
from protocol.ids import Digest
from protocol.status import HistoryItem, StatusCode, ThreadState
from store.records import DeliveryRecord

from .batcher import GossipBatcher
from .core import NodeCore
from .delivery import DeliveryWorker
from .edxml import EdxmlGateway
from .fetcher import BlockFetcher
from .inbound import Arrival, Inbound
from .membership import Membership
from .outbox import Outbox
from .overlay import BLOCKS, PUSH, SYNC, Overlay, directory_topic, shard_topic
from .retention import Retention
from .statuses import Statuses
from .submission import Submission
from .syncer import Syncer
from .tasks import TaskStatus


class Engine:
    def __init__(
        self,
        n: NodeCore,
        overlay: Overlay,
        *,
        batcher: GossipBatcher,
        outbox: Outbox,
        delivery: DeliveryWorker,
        fetcher: BlockFetcher,
        syncer: Syncer,
        statuses: Statuses,
        inbound: Inbound,
        membership: Membership,
        submission: Submission,
        retention: Retention,
        edxml: EdxmlGateway,
    ) -> None:
        self.n = n
        self.overlay = overlay
        self.batcher = batcher
        self.outbox = outbox
        self.delivery = delivery
        self.fetcher = fetcher
        self.syncer = syncer
        self.statuses = statuses
        self.inbound = inbound
        self.membership = membership
        self.submission = submission
        self.retention = retention
        self.edxml = edxml
        # What every user of a node reads, named here once.
        self.config = n.config
        self.store = n.store
        self.hosted = n.hosted
        self.clock = n.clock
        self.rng = n.rng
        self.log = n.log
        self.metrics = n.metrics
        self.events = n.events
        self.committer = n.committer
        self.metrics.gauge("directory_serial", lambda: n.trust.directory.serial, "serial of the directory in use")
        self.metrics.gauge("directory_expires_in_seconds", lambda: (n.trust.directory.valid_until - n.clock()) / 1000)
        self.metrics.gauge("peers_connected", lambda: len(overlay.connected_peers()))
        self.metrics.gauge("store_commits", lambda: n.committer.commits)

    @property
    def trust(self) -> Trust:
        """The directory in use now (replaced when a newer serial applies)."""
        return self.n.trust

    @property
    def peer_id(self) -> str:
        return self.n.peer_id

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        n = self.n
        async with trio.open_nursery() as nursery:
            n.attach(nursery)
            await nursery.start(n.committer.run)
            await nursery.start(self.batcher.run)
            await self.inbound.start()
            await self.membership.reissue_stale()
            overlay, inbound, membership = self.overlay, self.inbound, self.membership
            overlay.set_request_handler(PUSH, inbound.on_push, max_request_bytes=m.MAX_PUSH_BYTES, max_response_bytes=1 << 20)
            overlay.set_request_handler(
                BLOCKS, inbound.on_blocks, max_request_bytes=4096, max_response_bytes=m.MAX_BLOCKS_RESPONSE_BYTES
            )
            overlay.set_request_handler(
                SYNC, inbound.on_sync, max_request_bytes=64 << 10, max_response_bytes=m.MAX_SYNC_RESPONSE_BYTES
            )
            for shard in sorted(n.interested_shards()):
                await overlay.subscribe(shard_topic(n.trust.net, shard), inbound.gossip_validate, inbound.gossip_handle)
            await overlay.subscribe(directory_topic(n.trust.net), membership.dir_validate, membership.dir_handle)
            overlay.on_peer(membership.peer_up, membership.peer_down)
            await nursery.start(self.delivery.run)
            await nursery.start(self.fetcher.run)
            await nursery.start(self.syncer.run)
            nursery.start_soon(self.retention.run)
            n.log.info(
                "node.started",
                peer=n.peer_id,
                codes=",".join(str(c) for c in sorted(n.hosted)),
                directory_serial=n.trust.directory.serial,
            )
            task_status.started()

    # --- lifecycle (SIGTERM's grace: node/daemon.py) --------------------------------------

    def begin_shutdown(self) -> None:
        """Take no new work: IPC requests and pushes are refused, no new delivery starts."""
        self.n.begin_shutdown()
        self.outbox.kick()

    async def wait_idle(self) -> None:
        await self.n.wait_idle()

    @property
    def in_flight(self) -> int:
        return self.n.in_flight

    # --- shortcuts to the parts, for IPC, simnet and tests ----------------------------------

    def doc_header(self, doc_id: Digest) -> MessageHeader | None:
        return self.n.doc_header(doc_id)

    def delivery_record(self, sender: AgencyCode, env_id: bytes, recipient: AgencyCode) -> DeliveryRecord | None:
        return self.outbox.get(sender, env_id, recipient)

    async def submit(
        self,
        sender: AgencyCode,
        recipients: Sequence[AgencyCode],
        meta: DocumentMeta,
        files: Sequence[FileSource],
        *,
        idempotency_key: str | None = None,
    ) -> Digest:
        return await self.submission.submit(sender, recipients, meta, files, idempotency_key=idempotency_key)

    async def send_status(
        self, doc_id: Digest, author: AgencyCode, code: StatusCode, *, note: str = "", to: AgencyCode | None = None
    ) -> Digest:
        return await self.statuses.send(doc_id, author, code, note=note, to=to)

    def read_document(self, doc_id: Digest, code: AgencyCode) -> Iterator[DocumentMeta | FileBytes | FileDone]:
        return self.submission.read_document(doc_id, code)

    def thread_state(self, doc_id: Digest, recipient: AgencyCode) -> tuple[ThreadState, list[HistoryItem], int]:
        return self.statuses.thread_state(doc_id, recipient)

    async def ingest(self, raws: Sequence[bytes], *, peer: str, path: Arrival) -> list[m.PushResult]:
        return await self.inbound.ingest(raws, peer=peer, path=path)
