"""The node's logic: accept, store, deliver and acknowledge envelopes.

Everything a node decides lives here and in its workers (delivery.py,
fetcher.py, syncer.py); the network is reached only through ``Overlay``, time
only through ``clock`` and randomness only through ``rng``, so the same code
runs over py-libp2p (node/p2p.py) and in virtual time (simnet/virtual.py).

Paths an envelope can arrive by: direct push (``/truc/push/1``), gossip
(shard topics, batched), catch-up sync (``/truc/sync/1``). All three go
through :meth:`Engine.ingest`: dedup, trust checks, one durable commit for
the whole batch, then side effects (events, block fetches, deliveries).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import random
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import trio

from identity.directory import Directory, apply_link, verify_link
from identity.keys import AgencyKeys, Rng
from identity.sealing import FileSource, Recipient, read_document, read_status_note, seal_document, seal_status
from identity.trust import Trust
from protocol import messages as m
from protocol.agency import AgencyCode
from protocol.config import NodeConfig
from protocol.document import MAX_NOTE_CHARS, DocumentMeta, FileBytes, FileDone, check_attachments
from protocol.envelope import (
    MAX_DIRECTORY_ENVELOPE_BYTES,
    MAX_ENVELOPE_BYTES,
    DirectoryHeader,
    Envelope,
    Kind,
    MessageHeader,
)
from protocol.errors import (
    DecodeError,
    DecryptError,
    DirectoryError,
    NotARecipientError,
    NotAuthorizedError,
    NotFoundError,
    NotHostedError,
    ParkedLimitError,
    RemoteError,
    SchemaError,
    ShuttingDownError,
    TooLargeError,
    TrucError,
)
from protocol.ids import Digest
from protocol.status import HistoryItem, Phase, Role, StatusCode, ThreadState, check_author, replay, transition
from store.records import DeliveryKind, DeliveryRecord, DeliveryState, DocRecord, DocRole, HistoryRecord, InboxEntry
from store.store import Batch, InflightBlocks, Store

from .batcher import GossipBatcher
from .committer import GroupCommitter, Offload
from .delivery import DeliveryWorker
from .events import Event, EventHub
from .log import Log
from .metrics import Metrics
from .outbox import REFUSALS_SHOWN_MS, REFUSED_BY_RECIPIENT, Outbox
from .overlay import BLOCKS, PUSH, SYNC, Overlay, directory_topic, shard_topic

Clock = Callable[[], int]
Post = list[Callable[[], None]]
Rejections = dict[str, list[Any]]  # reason -> [count, first detail, first envelope id]
HEADER_CACHE = 4096
RESEND_RECEIPT_AFTER_MS = 5_000  # a re-pushed document earlier than this is a race, not a lost receipt
SEAL_WRITE_BLOCKS = 2  # blocks of a document being sealed are written this many at a time: memory stays flat
# A status that arrives before its document waits ("parked") until the document does. Statuses about
# documents that never come must not pile up: at most this many wait per author agency (more are
# refused, too_many_parked), and one older than the trust policy's age window (30 days) is dropped.
MAX_PARKED_PER_SENDER = 10_000


P = ParamSpec("P")
R = TypeVar("R")


def _work(fn: Callable[Concatenate[Engine, P], Awaitable[R]]) -> Callable[Concatenate[Engine, P], Awaitable[R]]:
    """Count an operation as in-flight work: on SIGTERM the node lets it finish (within the grace) before stopping.

    For work that peers and the node itself start (ingest, completing a
    document); integrators' requests are counted whole, answer included, by
    the IPC server (node/ipc.py), so submit and the like are not counted twice.
    """

    @functools.wraps(fn)
    async def counted(self: Engine, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.work():
            return await fn(self, *args, **kwargs)

    return counted


class Engine:
    def __init__(
        self,
        *,
        config: NodeConfig,
        store: Store,
        trust: Trust,
        chain: list[Envelope],
        hosted: dict[AgencyCode, AgencyKeys],
        overlay: Overlay,
        clock: Clock,
        rng: Rng,
        offload: Offload,
        log: Log,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.trust = trust
        self.chain = list(chain)
        self.hosted = hosted
        self.overlay = overlay
        self.clock = clock
        self.rng = rng
        self.random = random.Random(rng(16))
        self.offload = offload
        self.log = log
        self.metrics = metrics or Metrics()
        self.events = EventHub()
        self.committer = GroupCommitter(store, offload)
        self.batcher = GossipBatcher(overlay.publish, flush_ms=config.gossip_flush_ms, max_bytes=config.gossip_batch_kb << 10)
        self._inflight: dict[Digest, trio.Event] = {}
        self._idempotency: dict[tuple[AgencyCode, str], trio.Event] = {}
        self._headers: OrderedDict[Digest, MessageHeader] = OrderedDict()
        # Documents and parked statuses written in batches not yet committed,
        # visible to other batches being built meanwhile (building is synchronous).
        self._pending_docs: dict[Digest, MessageHeader] = {}
        self._parking: dict[Digest, set[Digest]] = {}
        self._parked_by: Counter[AgencyCode] = Counter()  # parked statuses per author, counted at start
        self.outbox = Outbox(store, retry=config.retry, random=self.random, log=log, metrics=self.metrics, emit=self.emit)
        self._nursery: trio.Nursery | None = None
        # Shutdown (node/daemon.py): once stopping, no new work is taken; the daemon waits for the work
        # in flight to reach zero (or the grace to run out) before it cancels everything.
        self.stopping = False
        self.in_flight = 0
        self._idle = trio.Event()
        self.last_seen: dict[str, int] = {}
        self.started_at = clock()
        # Workers are created here so tests can reach them; they start in run().
        from .fetcher import BlockFetcher
        from .syncer import Syncer

        self.delivery = DeliveryWorker(
            self.outbox,
            store=store,
            committer=self.committer,
            overlay=overlay,
            batcher=self.batcher,
            config=config,
            locate=self.host_peer,
            topic_of=lambda code: shard_topic(self.trust.net, code.shard),
            clock=clock,
            accepting=lambda: not self.stopping,
            metrics=self.metrics,
            log=log,
        )
        self.fetcher = BlockFetcher(self)
        self.syncer = Syncer(self)
        self.metrics.gauge("directory_serial", lambda: self.trust.directory.serial, "serial of the directory in use")
        self.metrics.gauge("directory_expires_in_seconds", lambda: (self.trust.directory.valid_until - self.clock()) / 1000)
        self.metrics.gauge("peers_connected", lambda: len(self.overlay.connected_peers()))
        self.metrics.gauge("store_commits", lambda: self.committer.commits)

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self.overlay.peer_id

    def interested_shards(self) -> set[str]:
        hosted = {c.shard for c in self.hosted}
        if self.config.relay_shards is None:
            return hosted | {c.shard for c in self.trust.directory.agencies}
        return hosted | set(self.config.relay_shards)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.committer.run)
            await nursery.start(self.batcher.run)
            self._parked_by = await self.offload(self._count_parked)
            await self.reissue_stale()
            self.overlay.set_request_handler(PUSH, self._on_push, max_request_bytes=m.MAX_PUSH_BYTES, max_response_bytes=1 << 20)
            self.overlay.set_request_handler(
                BLOCKS, self._on_blocks, max_request_bytes=4096, max_response_bytes=m.MAX_BLOCKS_RESPONSE_BYTES
            )
            self.overlay.set_request_handler(
                SYNC, self._on_sync, max_request_bytes=64 << 10, max_response_bytes=m.MAX_SYNC_RESPONSE_BYTES
            )
            for shard in sorted(self.interested_shards()):
                await self.overlay.subscribe(shard_topic(self.trust.net, shard), self._gossip_validate, self._gossip_handle)
            await self.overlay.subscribe(directory_topic(self.trust.net), self._dir_validate, self._dir_handle)
            self.overlay.on_peer(self._peer_up, self._peer_down)
            await nursery.start(self.delivery.run)
            await nursery.start(self.fetcher.run)
            await nursery.start(self.syncer.run)
            nursery.start_soon(self._housekeeping)
            self.log.info(
                "node.started",
                peer=self.peer_id,
                codes=",".join(str(c) for c in sorted(self.hosted)),
                directory_serial=self.trust.directory.serial,
            )
            task_status.started()

    @contextlib.contextmanager
    def work(self) -> Iterator[None]:
        """Count the block as in-flight work (callers refuse new work themselves once ``stopping``)."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.stopping and not self.in_flight:
                self._idle.set()

    def check_accepting(self) -> None:
        """Raise ShuttingDownError once the node is stopping (new IPC requests are refused)."""
        if self.stopping:
            raise ShuttingDownError()

    def begin_shutdown(self) -> None:
        """Take no new work: IPC requests and pushes are refused, no new delivery starts."""
        self.stopping = True
        self.outbox.kick()
        if not self.in_flight:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no work is in flight (after :meth:`begin_shutdown`)."""
        await self._idle.wait()

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._nursery is not None, "engine not running"
        self._nursery.start_soon(fn, *args)

    async def _housekeeping(self) -> None:
        """Hourly: retention at relays; always: a loud line while the directory is expired."""
        while True:
            now = self.clock()
            if now > self.trust.directory.valid_until:
                self.log.error(
                    "directory.expired",
                    serial=self.trust.directory.serial,
                    expired_s_ago=(now - self.trust.directory.valid_until) // 1000,
                    fix="ask the network authority for a newer directory",
                )
            await self.offload(self.retention_sweep, now)
            await self.expire_parked(now)
            await trio.sleep(3600 if now <= self.trust.directory.valid_until else 60)

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.publish(Event(kind, self.clock(), fields))

    # --- helpers -----------------------------------------------------------------------

    def host_peer(self, code: AgencyCode) -> str:
        return self.trust.host_of(code).peer_id

    def doc_header(self, doc_id: Digest) -> MessageHeader | None:
        h = self._pending_docs.get(doc_id) or self._headers.get(doc_id)
        if h is not None:
            return h
        raw = self.store.get_envelope(doc_id)
        if raw is None:
            return None
        env = Envelope.decode(raw)
        if not isinstance(env.header, MessageHeader) or env.kind is not Kind.DOCUMENT:
            return None
        self._headers[doc_id] = env.header
        if len(self._headers) > HEADER_CACHE:
            self._headers.popitem(last=False)
        return env.header

    def delivery_record(self, sender: AgencyCode, env_id: bytes, recipient: AgencyCode) -> DeliveryRecord | None:
        """The latest outbox record, including changes not yet written."""
        return self.outbox.get(sender, env_id, recipient)

    def envelope(self, env_id: Digest) -> Envelope | None:
        raw = self.store.get_envelope(env_id)
        return Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES) if raw is not None else None

    def _reject(self, path: str, peer: str, exc: TrucError, env_id: Digest | None, tally: Rejections | None = None) -> None:
        """Count a refused envelope; log it now, or once per reason for the batch when ``tally`` is given."""
        self.metrics.inc("envelopes_rejected", reason=exc.code, path=path)
        if tally is not None:
            first = tally.setdefault(exc.code, [0, exc.detail, env_id])
            first[0] += 1
            return
        self._log_rejected(path, peer, exc.code, 1, exc.detail, env_id)

    def _log_rejected(self, path: str, peer: str, reason: str, count: int, detail: str, env_id: Digest | None) -> None:
        self.log.warning(
            "envelope.rejected",
            reason=reason,
            count=count,
            detail=detail[:200],
            path=path,
            peer=peer[:16],
            id=env_id.short() if env_id else "",
        )

    # --- ingest: every envelope from the network goes through here --------------------------

    @_work
    async def ingest(self, raws: Sequence[bytes], *, peer: str, path: str) -> list[m.PushResult]:
        """Store what is new and valid, durably, then act on it.

        Returns one result per envelope: ``ok`` (stored now), ``duplicate``
        (already stored) or the error code it was refused with. Refused
        envelopes are not stored, so never forwarded or synced.
        """
        now = self.clock()
        batch = self.store.batch()
        post: Post = []
        results: list[m.PushResult] = []
        mine: list[Digest] = []
        waits: list[trio.Event] = []
        # One log line per reason per batch (a push of 50,000 junk envelopes is one line); metrics per envelope.
        tally: Rejections = {}
        for raw in raws:
            try:
                env = Envelope.decode(raw, max_bytes=MAX_ENVELOPE_BYTES)
            except RemoteError as exc:
                self._reject(path, peer, exc, None, tally)
                results.append(m.PushResult(Digest.of(raw), exc.code, exc.message))
                continue
            eid = env.id
            if eid in self._inflight:
                waits.append(self._inflight[eid])
                results.append(m.PushResult(eid, m.DUPLICATE))
                continue
            if self.store.known(eid):
                self.metrics.inc("envelopes_duplicate", path=path)
                if path == "push" and env.kind is Kind.DOCUMENT:
                    self._resend_receipts(env, batch, now)
                elif env.kind is Kind.STATUS:
                    self._reapply_receipt(env, batch, now, post)
                results.append(m.PushResult(eid, m.DUPLICATE))
                continue
            try:
                if env.kind is Kind.DIRECTORY:
                    raise SchemaError("directory envelopes travel on the directory topic or sync, not with documents")
                self.trust.verify(env, now, check_age=path != "sync")
                self._accept(env, raw, batch, now, post)
            except TrucError as exc:
                self._reject(path, peer, exc, eid, tally)
                results.append(m.PushResult(eid, exc.code, exc.message))
                continue
            self._inflight[eid] = trio.Event()
            mine.append(eid)
            self.metrics.inc("envelopes_accepted", kind=env.kind.value, path=path)
            results.append(m.PushResult(eid, m.OK))
        for reason, (count, detail, first_id) in tally.items():
            self._log_rejected(path, peer, reason, count, detail, first_id)
        try:
            if len(batch):
                await self.committer.commit(batch)
        finally:
            for eid in mine:
                self._pending_docs.pop(eid, None)
                self._inflight.pop(eid).set()
            for doc_id, sids in list(self._parking.items()):
                sids.difference_update(mine)
                if not sids:
                    del self._parking[doc_id]
        for w in waits:
            await w.wait()
        for action in post:
            action()
        return results

    def _resend_receipts(self, env: Envelope, b: Batch, now: int) -> None:
        """The sender pushes a document we already hold: it has no receipt from us, so send ours again.

        This heals any loss of a receipt on the sender's side (a crash before
        it stored it, a restore from backup) without a new signature: the
        same signed 01 travels again (or the 02 refusing a document that did
        not open: the node's own first status is always seq 1).
        """
        h = env.header
        assert isinstance(h, MessageHeader)
        for code in h.to:
            if code not in self.hosted:
                continue
            for _, sid, rec in self.store.history(env.id, code):
                if rec.seq != 1 or rec.author != str(code):
                    continue
                d = self.outbox.get(code, sid, h.sender)
                if d is not None and d.state is DeliveryState.DELIVERED and now - d.delivered_at > RESEND_RECEIPT_AFTER_MS:
                    self.outbox.reopened(b, (code, bytes(sid), h.sender), d, now)
                    self.metrics.inc("receipts_resent")

    def _reapply_receipt(self, env: Envelope, b: Batch, now: int, post: Post) -> None:
        """A receipt (or a refusal) we already store arrives again: make sure our outbox reflects it (idempotent)."""
        h = env.header
        if not isinstance(h, MessageHeader) or h.seq != 1 or h.doc is None or h.to[0] not in self.hosted:
            return
        if h.code not in (StatusCode.ARRIVED, StatusCode.REJECTED):
            return
        doc = self.doc_header(h.doc)
        if doc is None or doc.sender != h.to[0] or h.sender not in doc.to:
            return
        note = next((r.note for _, sid, r in self.store.history(h.doc, h.sender) if sid == env.id), "")
        self._apply_status_effects(env.id, h, h.doc, doc, Role.RECIPIENT, h.sender, b, now, post, note=note)

    def _accept(self, env: Envelope, raw: bytes, b: Batch, now: int, post: Post) -> None:
        header = env.header
        assert isinstance(header, MessageHeader)
        if header.kind is Kind.DOCUMENT:
            self._accept_document(env, header, raw, b, now, post)
        else:
            self._accept_status(env, header, raw, b, now, post)

    def _accept_document(self, env: Envelope, h: MessageHeader, raw: bytes, b: Batch, now: int, post: Post) -> None:
        if h.body.length > self.config.max_document_bytes:
            raise TooLargeError(f"{h.body.length} bytes, this node accepts up to {self.config.max_document_bytes}")
        b.put_envelope(env.id, raw)
        for shard in h.shards:
            b.append_log(shard, env.id)
        hosted_to = [c for c in h.to if c in self.hosted]
        rec = DocRecord(
            role=DocRole.RECEIVED if hosted_to else DocRole.RELAYED,
            sender=str(h.sender),
            to=tuple(str(c) for c in h.to),
            created_at=h.at,
            received_at=now,
            size=h.body.length,
            blocks=len(h.body.blocks),
            complete=bool(env.inline),
        )
        self._pending_docs[env.id] = h
        if hosted_to and env.inline:
            rec = self._deliver(env.id, h, rec, self._check_open(h, hosted_to[0], env.inline), b, now, post)
        elif not env.inline and (hosted_to or self.config.fetch_relayed_blocks):
            b.set_awaiting(env.id, True)
            post.append(lambda: self.fetcher.want(env.id))
        b.put_doc(env.id, rec)
        if self.store.parked(env.id) or self._parking.get(env.id):
            post.append(lambda: self.spawn(self._unpark, env.id))
        self.log.debug("document.stored", id=env.id.short(), sender=str(h.sender), role=rec.role.value, size=h.body.length)

    def _check_open(self, h: MessageHeader, code: AgencyCode, blocks: Any) -> DocumentMeta | RemoteError:
        """Open the whole document as recipient ``code``: the receipt means it arrived intact and readable."""
        try:
            meta = None
            for ev in read_document(h, self.hosted[code], blocks):
                if isinstance(ev, DocumentMeta):
                    meta = ev
            assert meta is not None
            return meta
        except RemoteError as exc:
            return exc

    def _deliver(
        self,
        doc_id: Digest,
        h: MessageHeader,
        rec: DocRecord,
        opened: DocumentMeta | RemoteError,
        b: Batch,
        now: int,
        post: Post,
        receipts: dict[AgencyCode, Digest] | None = None,
    ) -> DocRecord:
        """The document is whole: add it to each hosted recipient's inbox and emit their 01 receipts.

        The receipts' ids are added to ``receipts`` when given.
        """
        if isinstance(opened, RemoteError):
            self.metrics.inc("documents_unreadable", reason=opened.code)
            refuse = isinstance(opened, DecodeError | DecryptError)
            self.log.error(
                "document.unreadable",
                id=doc_id.short(),
                sender=str(h.sender),
                reason=opened.code,
                detail=opened.detail,
                refused=refuse,
            )
            if refuse:
                self._refuse(doc_id, h, opened, b, now, post)
            return dataclasses.replace(rec, complete=True, problem=opened.message)
        meta = opened
        for code in h.to:
            if code not in self.hosted or self.store.inbox_entry(code, doc_id) is not None:
                continue
            b.add_inbox(code, InboxEntry(doc_id, str(h.sender), now))
            receipt = self._author_status(
                code, doc_id, h, StatusCode.ARRIVED, note="", seq=1, to=h.sender, role=Role.RECIPIENT, b=b, now=now, post=post
            )
            if receipts is not None:
                receipts[code] = receipt
            self.metrics.inc("documents_delivered")
            post.append(
                lambda code=code, receipt=receipt: (
                    self.log.info(
                        "document.delivered", id=doc_id.short(), sender=str(h.sender), to=str(code), receipt=receipt.short()
                    ),
                    self.emit("document.received", id=str(doc_id), to=str(code), sender=str(h.sender), subject=meta.subject),
                )
            )
        return dataclasses.replace(
            rec,
            complete=True,
            subject=meta.subject,
            business=meta.business.value,
            ref=bytes(meta.ref) if meta.ref else b"",
            problem="",
        )

    def _refuse(self, doc_id: Digest, h: MessageHeader, why: RemoteError, b: Batch, now: int, post: Post) -> None:
        """The document does not open as the sender signed it: answer with a signed 02 giving the reason.

        Only for what the signed envelope alone decides (a manifest or layout
        no recipient accepts, a content key that does not open): sending it
        again cannot help, so the sender's node marks the delivery failed
        with this reason instead of retrying for weeks. A hash mismatch is
        not refused: it may be a damaged block in this node's own store.
        Like the 01 it replaces, this 02 is the node's own, seq 1.
        """
        note = f"{why.code}: {why.message}"[:MAX_NOTE_CHARS]
        for code in h.to:
            if code not in self.hosted or any(r.seq == 1 for _, _, r in self.store.history(doc_id, code)):
                continue
            self._author_status(
                code, doc_id, h, StatusCode.REJECTED, note=note, seq=1, to=h.sender, role=Role.RECIPIENT, b=b, now=now, post=post
            )
            self.metrics.inc("documents_refused", reason=why.code)
            post.append(
                lambda code=code: self.log.warning(
                    "document.refused", id=doc_id.short(), sender=str(h.sender), to=str(code), reason=why.code
                )
            )

    def _author_status(
        self,
        author: AgencyCode,
        doc_id: Digest,
        doc: MessageHeader,
        code: StatusCode,
        *,
        note: str,
        seq: int,
        to: AgencyCode,
        role: Role,
        b: Batch,
        now: int,
        post: Post,
    ) -> Digest:
        """Seal a status as hosted agency ``author``, record it, and queue it for ``to``."""
        env = seal_status(
            net=self.trust.net,
            sender=self.hosted[author],
            recipient=self.trust.recipient(to),
            doc=doc_id,
            code=code,
            seq=seq,
            note=note,
            at=now,
            rng=self.rng,
        )
        assert isinstance(env.header, MessageHeader)
        b.put_envelope(env.id, env.encode())
        b.append_log(to.shard, env.id)
        thread = author if role is Role.RECIPIENT else to
        b.add_history(doc_id, thread, env.id, HistoryRecord(int(code), role.value, str(author), seq, now, now, note))
        if to in self.hosted:
            # Both parties on this node: the status is delivered where it is made.
            self.outbox.delivered_here(b, (author, bytes(env.id), to), DeliveryKind.STATUS, now)
            self._apply_status_effects(env.id, env.header, doc_id, doc, role, thread, b, now, post, note=note)
        else:
            self.outbox.queued(b, (author, bytes(env.id), to), DeliveryKind.STATUS, now)
        return env.id

    def _accept_status(self, env: Envelope, h: MessageHeader, raw: bytes, b: Batch, now: int, post: Post) -> None:
        assert h.doc is not None and h.code is not None
        doc = self.doc_header(h.doc)
        b.put_envelope(env.id, raw)
        b.append_log(h.to[0].shard, env.id)
        if doc is None:
            # The document is in the recipient's shard (the author's, or the 13's target): if this node
            # neither hosts nor relays that shard, the document never comes here; keep the status only.
            doc_shard = (h.to[0] if h.code is StatusCode.TAKEBACK_REQUESTED else h.sender).shard
            if doc_shard not in self.interested_shards():
                return
            if self._parked_by[h.sender] >= MAX_PARKED_PER_SENDER:
                raise ParkedLimitError(
                    f"{h.sender} has {self._parked_by[h.sender]} statuses waiting here for documents not seen yet "
                    f"(limit {MAX_PARKED_PER_SENDER})"
                )
            b.park(h.doc, env.id)  # applied when the document arrives
            self._parking.setdefault(h.doc, set()).add(env.id)
            self._parked_by[h.sender] += 1
            return
        self._record_status(env, h, doc, b, now, post)

    def _count_parked(self) -> Counter[AgencyCode]:
        counts: Counter[AgencyCode] = Counter()
        for _, sid in self.store.parked_all():
            env = self.envelope(sid)
            if env is not None and isinstance(env.header, MessageHeader):
                counts[env.header.sender] += 1
        return counts

    async def expire_parked(self, now: int) -> int:
        """Drop parked statuses older than the age window (their document never came); returns how many."""
        max_age = self.trust.policy.max_age_ms

        def sweep() -> Counter[AgencyCode]:
            b = self.store.batch()
            dropped: Counter[AgencyCode] = Counter()
            for doc_id, sid in self.store.parked_all():
                env = self.envelope(sid)
                h = env.header if env is not None else None
                if h is not None and isinstance(h, MessageHeader) and h.at + max_age >= now:
                    continue
                b.unpark(doc_id, sid)
                if h is not None and isinstance(h, MessageHeader):
                    b.drop_envelope(sid, now)  # a tombstone: a copy arriving later stays a duplicate
                    dropped[h.sender] += 1
            if len(b):
                self.store.write(b, sync=True)
            return dropped

        dropped = await self.offload(sweep)
        self._parked_by.subtract(dropped)
        total = sum(dropped.values())
        if total:
            self.metrics.inc("parked_statuses_expired", total)
            self.log.warning(
                "status.parked_expired",
                count=total,
                by=",".join(f"{c.short()}:{n}" for c, n in dropped.most_common(10)),
                fix="statuses about documents that never arrived, older than the age window, were dropped",
            )
        return total

    def _record_status(self, env: Envelope, h: MessageHeader, doc: MessageHeader, b: Batch, now: int, post: Post) -> None:
        assert h.doc is not None and h.code is not None
        role, thread = self.trust.status_role(h, doc)  # NotAuthorizedError: the author is not a party
        note = ""
        if h.to[0] in self.hosted:
            try:
                note = read_status_note(env, self.hosted[h.to[0]]).note
            except RemoteError as exc:
                note = f"(note unreadable: {exc.code})"
        b.add_history(h.doc, thread, env.id, HistoryRecord(int(h.code), role.value, str(h.sender), h.seq, h.at, now, note))
        self._apply_status_effects(env.id, h, h.doc, doc, role, thread, b, now, post, note=note)
        if h.to[0] in self.hosted:
            post.append(
                lambda: (
                    self.log.info(
                        "status.received",
                        doc=h.doc.short() if h.doc else "",
                        code=str(h.code),
                        author=str(h.sender),
                        to=str(h.to[0]),
                    ),
                    self.emit(
                        "status.received", doc=str(h.doc), code=str(h.code), author=str(h.sender), to=str(h.to[0]), note=note
                    ),
                )
            )

    def _apply_status_effects(
        self,
        status_id: Digest,
        h: MessageHeader,
        doc_id: Digest,
        doc: MessageHeader,
        role: Role,
        thread: AgencyCode,
        b: Batch,
        now: int,
        post: Post,
        *,
        note: str = "",
    ) -> None:
        key = (doc.sender, bytes(doc_id), thread)
        if role is not Role.RECIPIENT or doc.sender not in self.hosted or self.outbox.get(*key) is None:
            return
        if h.code is StatusCode.REJECTED and h.seq == 1:
            # The recipient's node refused the document before any 01 (it does not open): final.
            self.outbox.refused(b, key, note or "(no reason given)", now)
        if h.code is StatusCode.ARRIVED and self.outbox.receipted(b, key, status_id, now):
            self.metrics.inc("receipts_received")
            latency = now - doc.at
            self.metrics.inc("receipt_latency_ms_sum", latency)
            post.append(
                lambda: (
                    self.log.info("receipt.received", doc=doc_id.short(), recipient=str(thread), latency_ms=latency),
                    self.emit("receipt.received", doc=str(doc_id), sender=str(doc.sender), recipient=str(thread), at=now),
                )
            )

    @_work
    async def complete_document(self, doc_id: Digest) -> None:
        """Every block is here: check the document opens, then deliver it (inbox + 01) in one durable commit."""
        h = self.doc_header(doc_id)
        rec = self.store.doc(doc_id)
        if h is None or rec is None or rec.complete:
            return
        now = self.clock()
        b = self.store.batch()
        post: Post = []
        hosted_to = [c for c in h.to if c in self.hosted]
        if hosted_to:
            opened = await self.offload(lambda: self._check_open(h, hosted_to[0], self._blocks_from(h)))
            rec = self._deliver(doc_id, h, rec, opened, b, now, post)
        else:
            rec = dataclasses.replace(rec, complete=True)
        b.put_doc(doc_id, rec)
        b.set_awaiting(doc_id, False)
        await self.committer.commit(b)
        for action in post:
            action()

    @_work
    async def _unpark(self, doc_id: Digest) -> None:
        for sid in list(self._parking.get(doc_id, ())):
            if sid in self._inflight:
                await self._inflight[sid].wait()  # its park must be on disk before we read it back
        doc = self.doc_header(doc_id)
        if doc is None:
            return
        now = self.clock()
        b = self.store.batch()
        post: Post = []
        for sid in self.store.parked(doc_id):
            b.unpark(doc_id, sid)
            env = self.envelope(sid)
            if env is None or not isinstance(env.header, MessageHeader):
                continue
            self._parked_by[env.header.sender] -= 1
            try:
                self._record_status(env, env.header, doc, b, now, post)
            except NotAuthorizedError as exc:
                self._reject("parked", "", exc, sid)
                b.drop_envelope(sid, now)
        await self.committer.commit(b)
        for action in post:
            action()

    # --- handlers for peers ---------------------------------------------------------------

    async def _on_push(self, peer: str, data: bytes) -> bytes:
        if not self.trust.is_member(peer):
            return m.ErrorResponse("not_authorized", "peer is not in the directory").encode()
        if self.stopping:  # the sender keeps it in its outbox and pushes again later
            return m.ErrorResponse(ShuttingDownError.code, ShuttingDownError().message).encode()
        try:
            batch = m.EnvelopeBatch.decode(data)
        except RemoteError as exc:
            self.metrics.inc("requests_rejected", protocol="push", reason=exc.code)
            return m.ErrorResponse.of(exc).encode()
        results = await self.ingest(batch.envs, peer=peer, path="push")
        return m.PushResponse(tuple(results)).encode()

    async def _on_blocks(self, peer: str, data: bytes) -> bytes:
        if not self.trust.is_member(peer):
            return m.ErrorResponse("not_authorized", "peer is not in the directory").encode()
        try:
            req = m.BlockRequest.decode(data)
        except RemoteError as exc:
            return m.ErrorResponse.of(exc).encode()
        self.metrics.inc("blocks_served", len(req.want))
        return m.BlockResponse(tuple(self.store.get_block(h) for h in req.want)).encode()

    async def _on_sync(self, peer: str, data: bytes) -> bytes:
        if not self.trust.is_member(peer):
            return m.ErrorResponse("not_authorized", "peer is not in the directory").encode()
        try:
            return self.syncer.answer(m.SyncRequest.decode(data), peer)
        except RemoteError as exc:
            return m.ErrorResponse.of(exc).encode()

    def _gossip_validate(self, topic: str, peer: str, data: bytes) -> bool:
        """Before any forward: only batches of valid envelopes, at least one new, travel on."""
        now = self.clock()
        try:
            batch = m.EnvelopeBatch.decode(data, max_bytes=m.MAX_BATCH_BYTES)
            fresh = 0
            for raw in batch.envs:
                env = Envelope.decode(raw)
                if env.kind is Kind.DIRECTORY:
                    raise SchemaError("directory envelope on a shard topic")
                if env.id in self._inflight or self.store.known(env.id):
                    continue
                self.trust.verify(env, now)
                fresh += 1
        except TrucError as exc:
            self.metrics.inc("gossip_rejected", reason=exc.code)
            self.log.warning("gossip.rejected", reason=exc.code, detail=exc.detail[:200], peer=peer[:16], topic=topic)
            return False
        if not fresh:
            self.metrics.inc("gossip_ignored_known")
        return fresh > 0

    async def _gossip_handle(self, topic: str, peer: str, data: bytes) -> None:
        try:
            batch = m.EnvelopeBatch.decode(data, max_bytes=m.MAX_BATCH_BYTES)
        except RemoteError:
            return
        self.metrics.inc("gossip_messages_in")
        await self.ingest(batch.envs, peer=peer, path="gossip")

    # --- directory updates ----------------------------------------------------------------

    def _dir_validate(self, topic: str, peer: str, data: bytes) -> bool:
        try:
            batch = m.EnvelopeBatch.decode(data, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
            newer = False
            for raw in batch.envs:
                env = Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
                if not isinstance(env.header, DirectoryHeader):
                    raise SchemaError("not a directory envelope")
                from identity.directory import verify_link

                verify_link(env, self.trust.authority)
                newer = newer or env.header.serial > self.trust.directory.serial
        except TrucError as exc:
            self.metrics.inc("gossip_rejected", reason=exc.code)
            self.log.warning("directory.rejected", reason=exc.code, detail=exc.detail[:200], peer=peer[:16])
            return False
        return newer

    async def _dir_handle(self, topic: str, peer: str, data: bytes) -> None:
        batch = m.EnvelopeBatch.decode(data, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
        envs = [Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES) for raw in batch.envs]
        if not await self.apply_directory(envs, source=peer):
            self.syncer.sync_soon(peer)  # we are missing links in between: ask that peer

    async def apply_directory(self, envs: Sequence[Envelope], *, source: str) -> bool:
        """Apply newer directory links in serial order; returns False if a gap kept some out."""
        current = self.trust.directory
        applied: list[Envelope] = []
        complete = True
        for env in sorted(envs, key=lambda e: e.header.serial if isinstance(e.header, DirectoryHeader) else 0):
            h = env.header
            if not isinstance(h, DirectoryHeader) or h.serial <= current.serial:
                continue
            if not h.is_snapshot and h.base != current.serial:
                complete = False
                continue
            try:
                current = apply_link(current, env, self.trust.authority)
            except TrucError as exc:
                self.log.warning(
                    "directory.rejected", reason=exc.code, detail=exc.detail[:200], serial=h.serial, peer=source[:16]
                )
                return True
            applied.append(env)
        if applied:
            b = self.store.batch()
            for env in applied:
                assert isinstance(env.header, DirectoryHeader)
                b.put_directory_link(env.header.serial, env.encode())
            await self.committer.commit(b)
            self._set_directory(current, applied)
        return complete

    def _set_directory(self, directory: Directory, links: list[Envelope]) -> None:
        old = self.trust.directory
        self.trust = Trust(directory, self.trust.authority, self.trust.policy)
        self.chain.extend(links)
        self.overlay.refresh()
        self.log.info("directory.updated", serial=directory.serial, previous=old.serial, agencies=len(directory.agencies))
        self.emit("directory.updated", serial=directory.serial)
        for shard in self.interested_shards() - {c.shard for c in old.agencies} - (set(self.config.relay_shards or ())):
            self.spawn(self.overlay.subscribe, shard_topic(self.trust.net, shard), self._gossip_validate, self._gossip_handle)

    async def publish_directory(self, envs: Sequence[Envelope]) -> int:
        """Apply directory links handed in by an operator and gossip them to the network.

        Every link of the file must be the pinned authority's, and the newer
        ones must apply; otherwise DirectoryError says which link and why
        (``apply_directory`` only logs, as for links from peers).
        """
        before = self.trust.directory.serial
        current = self.trust.directory
        for env in sorted(envs, key=lambda e: e.header.serial if isinstance(e.header, DirectoryHeader) else 0):
            serial = env.header.serial if isinstance(env.header, DirectoryHeader) else 0
            try:
                h = verify_link(env, self.trust.authority)
                if h.serial > current.serial and (h.is_snapshot or h.base == current.serial):
                    current = apply_link(current, env, self.trust.authority)
            except TrucError as exc:
                raise DirectoryError(f"serial {serial} of the file: {exc.message}") from None
        if not await self.apply_directory(envs, source="local"):
            raise DirectoryError(f"the links do not continue this node's serial {before}")
        if self.trust.directory.serial == before:
            return before
        fresh = [e.encode() for e in envs if isinstance(e.header, DirectoryHeader) and e.header.serial > before]
        await self.overlay.publish(directory_topic(self.trust.net), m.EnvelopeBatch(tuple(fresh)).encode())
        return self.trust.directory.serial

    # --- peers ----------------------------------------------------------------------------

    async def _peer_up(self, peer: str) -> None:
        self.last_seen[peer] = self.clock()
        codes = self.trust.directory.hosted_by(peer)
        self.log.info("peer.connected", peer=peer[:16], codes=",".join(c.short() for c in codes))
        self.emit("peer.up", peer=peer, codes=[str(c) for c in codes])
        if codes:
            self.delivery.peer_seen(codes)
        self.syncer.sync_soon(peer)

    async def _peer_down(self, peer: str) -> None:
        self.last_seen[peer] = self.clock()
        self.log.info("peer.disconnected", peer=peer[:16])
        self.emit("peer.down", peer=peer)

    # --- key changes -------------------------------------------------------------------------

    def check_own_key(self, code: AgencyCode) -> None:
        """Raise unless the directory accepts ``code``'s current key now (revoked, unknown, outside its window)."""
        self.trust.signing_key(code, self._keys(code).signing.kid, self.clock())

    async def reissue_stale(self) -> int:
        """After a key change, re-sign what is still undelivered and was signed with another key.

        A status (receipts included) is sealed again with the current key, at
        the same place in its thread, and the old one is dropped from the
        outbox and the history: peers refuse envelopes signed with a revoked
        key, and a thread with a hole in it cannot be replayed. A document
        cannot be re-signed without becoming another document, so it is
        marked failed with the reason, for the integrator to send again.
        Returns how many were re-signed or failed.
        """
        now = self.clock()
        b = self.store.batch()
        post: Post = []
        changed = 0
        for code, keys in self.hosted.items():
            for env_id, recipient, rec in list(self.store.outbox(code)):
                if rec.state is not DeliveryState.PENDING:
                    # The one full scan of the outbox at start: note recent refusals for the queues view.
                    if rec.last_error.startswith(REFUSED_BY_RECIPIENT) and now - rec.last_at < REFUSALS_SHOWN_MS:
                        self.outbox.note_refusal((code, bytes(env_id), recipient), rec.last_at)
                    continue
                env = self.envelope(env_id)
                if env is None or not isinstance(env.header, MessageHeader) or env.header.kid == keys.signing.kid:
                    continue
                h = env.header
                changed += 1
                key = (code, bytes(env_id), recipient)
                if h.kind is Kind.DOCUMENT:
                    self.outbox.reissued(b, key, rec, "signed with a key that is no longer current: send it again")
                    continue
                assert h.doc is not None and h.code is not None
                doc = self.doc_header(h.doc)
                if doc is None:
                    continue
                role = Role.SENDER if code == doc.sender else Role.RECIPIENT
                thread = recipient if role is Role.SENDER else code
                notes = [r.note for _, sid, r in self.store.history(h.doc, thread) if sid == env_id]
                b.delete_history(h.doc, thread, h.seq, env_id)
                self.outbox.reissued(b, key, rec, "re-signed with the new key")
                self._author_status(
                    code,
                    h.doc,
                    doc,
                    h.code,
                    note=notes[0] if notes else "",
                    seq=h.seq,
                    to=recipient,
                    role=role,
                    b=b,
                    now=now,
                    post=post,
                )
        if changed:
            await self.committer.commit(b)
            self.log.info("keys.reissued", envelopes=changed)
            for action in post:
                action()
        return changed

    # --- integrator-facing operations --------------------------------------------------------

    def _keys(self, code: AgencyCode) -> AgencyKeys:
        try:
            return self.hosted[code]
        except KeyError:
            raise NotHostedError(f"{code} (this node hosts {', '.join(str(c) for c in sorted(self.hosted))})") from None

    def check_submit(
        self,
        sender: AgencyCode,
        recipients: Sequence[AgencyCode],
        meta: DocumentMeta,
        files: Sequence[tuple[str, str]],
    ) -> list[Recipient]:
        """What a submit checks before it reads any attachment; returns the recipients sorted, with their keys.

        ``files`` are (name, media type): the recipient's own rules for them
        run here, so nothing a recipient would refuse leaves this node. Raises
        NotHostedError, DirectoryExpiredError, RevokedKeyError (and the other
        key errors), SchemaError, UnknownAgencyError, NotFoundError or
        NotAuthorizedError (a revoke/update/replace of a document the sender
        has no part in).
        """
        self._keys(sender)
        check_attachments(list(files))
        self.trust.check_current(self.clock())
        self.check_own_key(sender)  # a revoked key: ask the authority for a new one
        if not recipients:
            raise SchemaError("a document needs at least one recipient")
        if len(set(recipients)) != len(recipients):
            raise SchemaError("a recipient is listed twice")
        if sender in recipients:
            raise SchemaError(f"{sender} cannot send a document to itself")
        targets = [self.trust.recipient(c) for c in sorted(recipients, key=str)]  # UnknownAgencyError
        if meta.ref is not None:
            self._check_ref(sender, meta)
        return targets

    async def submit(
        self,
        sender: AgencyCode,
        recipients: Sequence[AgencyCode],
        meta: DocumentMeta,
        files: Sequence[FileSource],
        *,
        idempotency_key: str | None = None,
    ) -> Digest:
        """Seal, store durably and queue a document; returns its id once it is durable.

        With an ``idempotency_key`` the same key from the same sender returns
        the first document's id and creates nothing new. Raises
        NotHostedError, UnknownAgencyError, DirectoryExpiredError,
        TooLargeError or SchemaError.
        """
        keys = self._keys(sender)
        targets = self.check_submit(sender, recipients, meta, [(f.name, f.media_type) for f in files])
        to = [t.code for t in targets]
        if idempotency_key is not None:
            slot = (sender, idempotency_key)
            while slot in self._idempotency:
                await self._idempotency[slot].wait()
            existing = self.store.idempotent(sender, idempotency_key)
            if existing is not None:
                self.metrics.inc("submits_idempotent")
                return existing
            self._idempotency[slot] = trio.Event()
        new_blocks = self.store.inflight_blocks(SEAL_WRITE_BLOCKS)
        try:
            return await self._submit(keys, to, targets, meta, files, idempotency_key, new_blocks)
        except BaseException:
            self._discard_blocks(new_blocks)
            raise
        finally:
            if idempotency_key is not None:
                self._idempotency.pop((sender, idempotency_key)).set()

    def _discard_blocks(self, new_blocks: InflightBlocks) -> None:
        """A submit failed: remove the blocks it wrote, unless its document's commit already took them over.

        Once settled, the commit either lands (the blocks are the document's)
        or fails and stops the node, whose next start sweeps the marks.
        """
        n = new_blocks.discard()
        if n:
            self.metrics.inc("blocks_discarded", n)
            self.log.info("submit.blocks_discarded", blocks=n)

    def _check_ref(self, sender: AgencyCode, meta: DocumentMeta) -> None:
        """A revoke, update or replace must name a document ``sender`` sent or received through this node.

        The recipient's node stays lenient (the target may reach it after the
        change, by another path); the sender's node has the target, or it is a typo.
        """
        assert meta.ref is not None
        target = self.doc_header(meta.ref)
        if target is None:
            raise NotFoundError(
                f"the {meta.business.value} document refers to {meta.ref}, which {sender} neither sent nor received here"
            )
        if sender != target.sender and sender not in target.to:
            raise NotAuthorizedError(
                f"{sender} is not a party to {meta.ref.short()} (from {target.sender}): "
                f"only its sender or a recipient may {meta.business.value} it"
            )

    async def _submit(
        self,
        keys: AgencyKeys,
        to: list[AgencyCode],
        targets: list[Recipient],
        meta: DocumentMeta,
        files: Sequence[FileSource],
        key: str | None,
        new_blocks: InflightBlocks,
    ) -> Digest:
        """Seal and commit; blocks go to ``new_blocks`` as they are made, and the commit settles them."""
        from identity.sealing import describe_files

        entries = await self.offload(describe_files, files)
        total = sum(e.size for e in entries)
        if total > self.config.max_document_bytes:
            raise TooLargeError(
                f"the attachments are {total} bytes, this node accepts documents up to {self.config.max_document_bytes} bytes"
            )

        def seal() -> tuple[Envelope, DocumentMeta]:  # runs in a worker thread
            env, full = seal_document(
                meta,
                files,
                net=self.trust.net,
                sender=keys,
                recipients=targets,
                at=self.clock(),
                rng=self.rng,
                on_block=new_blocks.put,
                entries=entries,
            )
            new_blocks.flush()
            return env, full

        env, full = await self.offload(seal)
        h = env.header
        assert isinstance(h, MessageHeader)
        now = self.clock()
        b = self.store.batch()
        post: Post = []
        b.put_envelope(env.id, env.encode())
        for shard in h.shards:
            b.append_log(shard, env.id)
        if key is not None:
            b.put_idempotency(keys.code, key, env.id)
        rec = DocRecord(
            role=DocRole.SENT,
            sender=str(keys.code),
            to=tuple(str(c) for c in to),
            created_at=h.at,
            received_at=now,
            size=h.body.length,
            blocks=len(h.body.blocks),
            complete=True,
            subject=full.subject,
            business=full.business.value,
            ref=bytes(full.ref) if full.ref else b"",
        )
        for code in to:
            if code not in self.hosted:
                self.outbox.queued(b, (keys.code, bytes(env.id), code), DeliveryKind.DOCUMENT, now)
        local = [c for c in to if c in self.hosted]
        if local:
            # Recipients hosted here too: delivered and receipted in the same commit.
            receipts: dict[AgencyCode, Digest] = {}
            blocks = env.inline or self._blocks_from(h)
            rec = self._deliver(env.id, h, rec, self._check_open(h, local[0], blocks), b, now, post, receipts)
            for code in local:
                key = (keys.code, bytes(env.id), code)
                if code in receipts:
                    self.outbox.delivered_here(b, key, DeliveryKind.DOCUMENT, now, receipt=bytes(receipts[code]))
                else:
                    self.outbox.failed_here(b, key, DeliveryKind.DOCUMENT, now, reason=rec.problem)
        b.put_doc(env.id, rec)
        new_blocks.settle(b)
        await self.committer.commit(b)
        self.metrics.inc("documents_submitted")
        self.log.info(
            "document.submitted", id=env.id.short(), sender=str(keys.code), to=",".join(str(c) for c in to), size=h.body.length
        )
        for action in post:
            action()
        return env.id

    def _blocks_from(self, h: MessageHeader) -> Iterator[bytes]:
        for digest in h.body.blocks:
            block = self.store.get_block(digest)
            if block is None:
                raise NotFoundError(f"block {digest.short()}")
            yield block

    def thread_state(self, doc_id: Digest, recipient: AgencyCode) -> tuple[ThreadState, list[HistoryItem], int]:
        """Replay a thread's history: (state, items, highest seq)."""
        from protocol.document import BusinessType

        rec = self.store.doc(doc_id)
        business = BusinessType(rec.business) if rec is not None and rec.business else BusinessType.NEW
        items = [
            HistoryItem(r.seq, r.at, bytes(sid), StatusCode(r.code), Role(r.role))
            for _, sid, r in self.store.history(doc_id, recipient)
        ]
        result = replay(business, items)
        return result.state, items, max((i.seq for i in items), default=0)

    async def send_status(
        self, doc_id: Digest, author: AgencyCode, code: StatusCode, *, note: str = "", to: AgencyCode | None = None
    ) -> Digest:
        """Send a processing status about a document, as hosted agency ``author``.

        A recipient writes to the document's sender; the sender (only with
        13) writes to one recipient, named by ``to``. Raises NotHostedError,
        NotFoundError, NotAuthorizedError or IllegalTransitionError.
        """
        self._keys(author)
        now = self.clock()
        self.trust.check_current(now)
        self.check_own_key(author)
        doc = self.doc_header(doc_id)
        if doc is None:
            raise NotFoundError(f"document {doc_id}")
        if author == doc.sender:
            check_author(code, Role.SENDER)  # NotAuthorizedError: the sender sends only 13
            if to is None or to not in doc.to:
                raise SchemaError(
                    f"status.send: to: say which recipient this status is for (one of {', '.join(str(c) for c in doc.to)})"
                )
            role, thread, target = Role.SENDER, to, to
        elif author in doc.to:
            check_author(code, Role.RECIPIENT)
            role, thread, target = Role.RECIPIENT, author, doc.sender
        else:
            raise NotAuthorizedError(f"{author} is neither the sender nor a recipient of {doc_id.short()}")
        state, _, top = self.thread_state(doc_id, thread)
        if code is StatusCode.REJECTED and state.phase is Phase.SENT:
            raise NotAuthorizedError(
                f"{doc_id.short()} has not arrived here yet: a 02 before the 01 is the node's own, "
                "sent when a document does not open"
            )
        transition(state, code, role)  # IllegalTransitionError names what is allowed now
        b = self.store.batch()
        post: Post = []
        sid = self._author_status(
            author, doc_id, doc, code, note=note, seq=top + 1, to=target, role=role, b=b, now=now, post=post
        )
        await self.committer.commit(b)
        self.metrics.inc("statuses_sent", code=str(code))
        self.log.info("status.sent", doc=doc_id.short(), code=str(code), author=str(author), to=str(target))
        for action in post:
            action()
        return sid

    async def ack(self, code: AgencyCode, doc_id: Digest) -> bool:
        """The integrator took the document; returns False if it was acknowledged before."""
        self._keys(code)
        found = self.store.inbox_entry(code, doc_id)
        if found is None:
            raise NotFoundError(f"document {doc_id} is not in the inbox of {code}")
        seq, entry = found
        if entry.acked_at:
            return False
        b = self.store.batch()
        b.update_inbox(code, seq, dataclasses.replace(entry, acked_at=self.clock()))
        await self.committer.commit(b)
        return True

    def read_document(self, doc_id: Digest, code: AgencyCode) -> Iterator[DocumentMeta | FileBytes | FileDone]:
        """Open a stored document as hosted agency ``code`` (blocks streamed from the store)."""
        keys = self._keys(code)
        doc = self.doc_header(doc_id)
        if doc is None:
            raise NotFoundError(f"document {doc_id}")
        if code not in doc.to and code != doc.sender:
            raise NotAuthorizedError(f"{code} is not a party to {doc_id.short()}")
        rec = self.store.doc(doc_id)
        if rec is None or not rec.complete:
            raise NotFoundError(f"document {doc_id.short()} is still arriving")
        env = self.envelope(doc_id)
        assert env is not None
        if code == doc.sender and code not in doc.to:
            raise NotARecipientError(f"{code} sent {doc_id.short()}; its content is in the sender's own document system")
        return read_document(doc, keys, env.inline or self._blocks_from(doc))

    # --- retention at relays ------------------------------------------------------------------

    def retention_sweep(self, now: int) -> int:
        """Drop relayed documents (and their blocks) once every recipient's 01 is older than the keep window."""
        keep_ms = int(self.config.keep_after_receipt_h * 3_600_000)
        max_age = self.trust.policy.max_age_ms
        b = self.store.batch()
        dropped = 0
        for doc_id, rec in self.store.docs():
            if rec.role is not DocRole.RELAYED:
                continue
            receipts = {r.author: r.received_at for _, _, r in self.store.history(doc_id) if r.code == StatusCode.ARRIVED}
            all_in = all(c in receipts for c in rec.to)
            old_enough = all_in and max(receipts.values(), default=now) + keep_ms <= now
            if old_enough or rec.received_at + max_age < now:
                h = self.doc_header(doc_id)
                if h is not None and not h.body.inline:
                    for digest in h.body.blocks:
                        b.delete_block(digest)
                b.drop_envelope(doc_id, now)
                b.delete_doc(doc_id)
                b.set_awaiting(doc_id, False)
                dropped += 1
        if dropped:
            self.store.write(b, sync=True)
            self.metrics.inc("relay_documents_dropped", dropped)
            self.log.info("retention.dropped", documents=dropped)
        return dropped

    # --- views (IPC, CLI, tests) --------------------------------------------------------------

    def track(self, doc_id: Digest) -> dict[str, Any]:
        rec = self.store.doc(doc_id)
        doc = self.doc_header(doc_id)
        if rec is None or doc is None:
            raise NotFoundError(f"document {doc_id}")
        recipients = []
        for code in doc.to:
            delivery = self.outbox.get(doc.sender, doc_id, code) if doc.sender in self.hosted else None
            state, _, _ = self.thread_state(doc_id, code)
            history = sorted(self.store.history(doc_id, code), key=lambda x: (x[2].seq, x[2].at))
            if delivery is not None:
                dstate = delivery.state.value
            else:
                dstate = "delivered" if any(r.code == StatusCode.ARRIVED for _, _, r in history) else "pending"
            recipients.append(
                {
                    "code": str(code),
                    "state": dstate,
                    "phase": state.phase.value,
                    "waiting_for": state.pending.value if state.pending.value != "none" else "",
                    "statuses": [
                        {
                            "code": f"{r.code:02d}",
                            "at": r.at,
                            "received_at": r.received_at,
                            "author": r.author,
                            "note": r.note,
                            "seq": r.seq,
                            "id": str(sid),
                        }
                        for _, sid, r in history
                    ],
                    "attempts": delivery.attempts if delivery else 0,
                    "last_error": delivery.last_error if delivery else "",
                    "next_retry": delivery.next_at if delivery and delivery.state is DeliveryState.PENDING else None,
                    "first_sent": delivery.first_at if delivery else None,
                    "delivered_at": delivery.delivered_at if delivery and delivery.delivered_at else None,
                }
            )
        return {
            "id": str(doc_id),
            "from": str(doc.sender),
            "subject": rec.subject,
            "created_at": doc.at,
            "size": rec.size,
            "role": rec.role.value,
            "complete": rec.complete,
            "problem": rec.problem,
            "recipients": recipients,
        }

    def block_progress(self, doc_id: Digest) -> tuple[int, int]:
        h = self.doc_header(doc_id)
        if h is None:
            return 0, 0
        return sum(1 for d in h.body.blocks if self.store.has_block(d)), len(h.body.blocks)

    def document_blocks_missing(self, h: MessageHeader) -> list[int]:
        return [i for i, d in enumerate(h.body.blocks) if not self.store.has_block(d)]
