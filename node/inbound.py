"""Inbound: every envelope from another node goes through here.

Paths an envelope can arrive by: direct push (``/truc/push/1``), gossip
(shard topics, batched), catch-up sync (``/truc/sync/1``). All three go
through :meth:`Inbound.ingest`: dedup, trust checks, one durable commit for
the whole batch, then side effects (events, block fetches, deliveries). A
status whose document has not arrived waits ("parked") until it does.
This part owns the stored envelopes, the sync log and the parked statuses.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import trio

from protocol import messages as m
from protocol.agency import AgencyCode
from protocol.delivery import DeliveryState
from protocol.document import DocumentMeta
from protocol.envelope import MAX_ENVELOPE_BYTES, Envelope, Kind, MessageHeader
from protocol.errors import (
    NotAuthorizedError,
    ParkedLimitError,
    RemoteError,
    SchemaError,
    ShuttingDownError,
    TooLargeError,
    TrucError,
)
from protocol.ids import Digest
from protocol.status import Role, StatusCode
from store.records import DocRecord, DocRole
from store.store import Batch

from .core import NodeCore, Part, Post, in_flight
from .outbox import Outbox
from .statuses import Statuses

Rejections = dict[str, list[Any]]  # reason -> [count, first detail, first envelope id]
RESEND_RECEIPT_AFTER_MS = 5_000  # a re-pushed document earlier than this is a race, not a lost receipt
# A status that arrives before its document waits ("parked") until the document does. Statuses about
# documents that never come must not pile up: at most this many wait per author agency (more are
# refused, too_many_parked), and one older than the trust policy's age window (30 days) is dropped.
MAX_PARKED_PER_SENDER = 10_000
PARKED_DECODED = 4096  # parked statuses kept decoded in memory for their unparking (~2 KiB each)


class Arrival(enum.Enum):
    """How an envelope reached this node (a label of the ``envelopes_*`` metrics and the rejection log)."""

    PUSH = "push"
    GOSSIP = "gossip"
    SYNC = "sync"
    PARKED = "parked"  # re-checked when its document arrived


class Inbound(Part):
    def __init__(
        self,
        n: NodeCore,
        outbox: Outbox,
        statuses: Statuses,
        *,
        want_blocks: Callable[[Digest], None],
        answer_sync: Callable[[m.SyncRequest, str], bytes],
    ) -> None:
        """``want_blocks`` queues a document's blocks for fetching; ``answer_sync`` answers a peer's sync request."""
        super().__init__(n)
        self.outbox = outbox
        self.statuses = statuses
        self.want_blocks = want_blocks
        self.answer_sync = answer_sync
        self._parking: dict[Digest, set[Digest]] = {}  # parked statuses in batches not yet written
        # Recently parked statuses as decoded, for their unparking (a relay parks most receipts: they often come
        # before their document). An id names one envelope's bytes, so a cached one is what the store holds.
        self._parked_envs: OrderedDict[Digest, Envelope] = OrderedDict()
        self.parked_by: Counter[AgencyCode] = Counter()  # parked statuses per author, counted at start

    async def start(self) -> None:
        self.parked_by = await self.n.offload(self._count_parked)

    @in_flight
    async def ingest(self, raws: Sequence[bytes], *, peer: str, path: Arrival) -> list[m.PushResult]:
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
            if eid in self.n.inflight:
                waits.append(self.n.inflight[eid])
                results.append(m.PushResult(eid, m.DUPLICATE))
                continue
            if self.store.known(eid):
                self.metrics.inc("envelopes_duplicate", path=path.value)
                if path is Arrival.PUSH and env.kind is Kind.DOCUMENT:
                    self._resend_receipts(env, batch, now)
                elif env.kind is Kind.STATUS:
                    self._reapply_receipt(env, batch, now, post)
                results.append(m.PushResult(eid, m.DUPLICATE))
                continue
            try:
                if env.kind is Kind.DIRECTORY:
                    raise SchemaError("directory envelopes travel on the directory topic or sync, not with documents")
                self.n.trust.verify(env, now, check_age=path is not Arrival.SYNC)
                self._accept(env, raw, batch, now, post)
            except TrucError as exc:
                self._reject(path, peer, exc, eid, tally)
                results.append(m.PushResult(eid, exc.code, exc.message))
                continue
            self.n.inflight[eid] = trio.Event()
            mine.append(eid)
            self.metrics.inc("envelopes_accepted", kind=env.kind.value, path=path.value)
            results.append(m.PushResult(eid, m.OK))
        for reason, (count, detail, first_id) in tally.items():
            self._log_rejected(path, peer, reason, count, detail, first_id)
        written = False
        try:
            if len(batch):
                await self.committer.commit(batch)
            written = True
        finally:
            for eid in mine:
                h = self.n.pending_docs.pop(eid, None)
                if written and h is not None:
                    # Its receipt and statuses need it next (at a relay they often wait for it, parked): decoding it
                    # again from the stored envelope was a sixth of a relay's busy time (bench.node, H17).
                    self.n.remember_header(eid, h)
                self.n.inflight.pop(eid).set()
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
        doc = self.n.doc_header(h.doc)
        if doc is None or doc.sender != h.to[0] or h.sender not in doc.to:
            return
        note = next((r.note for _, sid, r in self.store.history(h.doc, h.sender) if sid == env.id), "")
        self.statuses.apply_effects(env.id, h, h.doc, doc, Role.RECIPIENT, h.sender, b, now, post, note=note)

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
        self.n.pending_docs[env.id] = h
        if hosted_to and env.inline:
            rec = self.statuses.deliver(env.id, h, rec, self.statuses.check_open(h, hosted_to[0], env.inline), b, now, post)
        elif not env.inline and (hosted_to or self.config.fetch_relayed_blocks):
            b.set_awaiting(env.id, True)
            post.append(lambda: self.want_blocks(env.id))
        b.put_doc(env.id, rec)
        if self.store.parked(env.id) or self._parking.get(env.id):
            post.append(lambda: self.n.spawn(self._unpark, env.id))
        self.log.debug("document.stored", id=env.id.short(), sender=str(h.sender), role=rec.role.value, size=h.body.length)

    def _accept_status(self, env: Envelope, h: MessageHeader, raw: bytes, b: Batch, now: int, post: Post) -> None:
        assert h.doc is not None and h.code is not None
        doc = self.n.doc_header(h.doc)
        b.put_envelope(env.id, raw)
        b.append_log(h.to[0].shard, env.id)
        if doc is None:
            # The document is in the recipient's shard (the author's, or the 13's target): if this node
            # neither hosts nor relays that shard, the document never comes here; keep the status only.
            doc_shard = (h.to[0] if h.code is StatusCode.TAKEBACK_REQUESTED else h.sender).shard
            if doc_shard not in self.n.interested_shards():
                return
            if self.parked_by[h.sender] >= MAX_PARKED_PER_SENDER:
                raise ParkedLimitError(
                    f"{h.sender} has {self.parked_by[h.sender]} statuses waiting here for documents not seen yet "
                    f"(limit {MAX_PARKED_PER_SENDER})"
                )
            b.park(h.doc, env.id)  # applied when the document arrives
            self._parked_envs[env.id] = env
            if len(self._parked_envs) > PARKED_DECODED:
                self._parked_envs.popitem(last=False)
            self._parking.setdefault(h.doc, set()).add(env.id)
            self.parked_by[h.sender] += 1
            return
        self.statuses.record(env, h, doc, b, now, post)

    def _count_parked(self) -> Counter[AgencyCode]:
        counts: Counter[AgencyCode] = Counter()
        for _, sid in self.store.parked_all():
            env = self.n.envelope(sid)
            if env is not None and isinstance(env.header, MessageHeader):
                counts[env.header.sender] += 1
        return counts

    async def expire_parked(self, now: int) -> int:
        """Drop parked statuses older than the age window (their document never came); returns how many."""
        max_age = self.n.trust.policy.max_age_ms

        def sweep() -> Counter[AgencyCode]:
            b = self.store.batch()
            dropped: Counter[AgencyCode] = Counter()
            for doc_id, sid in self.store.parked_all():
                env = self.n.envelope(sid)
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

        dropped: Counter[AgencyCode] = await self.n.offload(sweep)
        self.parked_by.subtract(dropped)
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

    def open_as_recipient(self, h: MessageHeader, blocks: Iterator[bytes]) -> DocumentMeta | RemoteError | None:
        """Open a document as the first of its recipients hosted here (None if none is): what its receipt rests on.

        Blocking; the fetcher runs it in a worker thread while the blocks arrive (node/fetcher.py)."""
        hosted_to = [c for c in h.to if c in self.hosted]
        return self.statuses.check_open(h, hosted_to[0], blocks) if hosted_to else None

    @in_flight
    async def complete_document(self, doc_id: Digest, opened: DocumentMeta | RemoteError | None = None) -> None:
        """Every block is here: check the document opens, then deliver it (inbox + 01) in one durable commit.

        ``opened``: what opening it found while its blocks arrived, if that
        finished (node/fetcher.py); otherwise it is opened here, from the store.
        """
        h = self.n.doc_header(doc_id)
        rec = self.store.doc(doc_id)
        if h is None or rec is None or rec.complete:
            return
        now = self.clock()
        b = self.store.batch()
        post: Post = []
        hosted_to = [c for c in h.to if c in self.hosted]
        if hosted_to:
            if opened is None:
                opened = await self.n.offload(lambda: self.open_as_recipient(h, self.n.blocks_from(h)))
            assert opened is not None
            rec = self.statuses.deliver(doc_id, h, rec, opened, b, now, post)
        else:
            rec = dataclasses.replace(rec, complete=True)
        b.put_doc(doc_id, rec)
        b.set_awaiting(doc_id, False)
        await self.committer.commit(b)
        for action in post:
            action()

    @in_flight
    async def _unpark(self, doc_id: Digest) -> None:
        for sid in list(self._parking.get(doc_id, ())):
            if sid in self.n.inflight:
                await self.n.inflight[sid].wait()  # its park must be on disk before we read it back
        doc = self.n.doc_header(doc_id)
        if doc is None:
            return
        now = self.clock()
        b = self.store.batch()
        post: Post = []
        for sid in self.store.parked(doc_id):
            b.unpark(doc_id, sid)
            env = self._parked_envs.pop(sid, None) or self.n.envelope(sid)
            if env is None or not isinstance(env.header, MessageHeader):
                continue
            self.parked_by[env.header.sender] -= 1
            try:
                self.statuses.record(env, env.header, doc, b, now, post)
            except NotAuthorizedError as exc:
                self._reject(Arrival.PARKED, "", exc, sid)
                b.drop_envelope(sid, now)
        await self.committer.commit(b)
        for action in post:
            action()

    async def on_push(self, peer: str, data: bytes) -> bytes:
        if not self.n.trust.is_member(peer):
            return m.ErrorResponse("not_authorized", "peer is not in the directory").encode()
        if self.n.stopping:  # the sender keeps it in its outbox and pushes again later
            return m.ErrorResponse(ShuttingDownError.code, ShuttingDownError().message).encode()
        try:
            batch = m.EnvelopeBatch.decode(data)
        except RemoteError as exc:
            self.metrics.inc("requests_rejected", protocol="push", reason=exc.code)
            return m.ErrorResponse.of(exc).encode()
        results = await self.ingest(batch.envs, peer=peer, path=Arrival.PUSH)
        return m.PushResponse(tuple(results)).encode()

    async def on_blocks(self, peer: str, data: bytes) -> bytes:
        if not self.n.trust.is_member(peer):
            return m.ErrorResponse("not_authorized", "peer is not in the directory").encode()
        try:
            req = m.BlockRequest.decode(data)
        except RemoteError as exc:
            return m.ErrorResponse.of(exc).encode()
        self.metrics.inc("blocks_served", len(req.want))
        return m.BlockResponse(tuple(self.store.get_block(h) for h in req.want)).encode()

    async def on_sync(self, peer: str, data: bytes) -> bytes:
        if not self.n.trust.is_member(peer):
            return m.ErrorResponse("not_authorized", "peer is not in the directory").encode()
        try:
            return self.answer_sync(m.SyncRequest.decode(data), peer)
        except RemoteError as exc:
            return m.ErrorResponse.of(exc).encode()

    def gossip_validate(self, topic: str, peer: str, data: bytes) -> bool:
        """Before any forward: only batches of valid envelopes, at least one new, travel on."""
        now = self.clock()
        try:
            batch = m.EnvelopeBatch.decode(data, max_bytes=m.MAX_BATCH_BYTES)
            fresh = 0
            for raw in batch.envs:
                env = Envelope.decode(raw)
                if env.kind is Kind.DIRECTORY:
                    raise SchemaError("directory envelope on a shard topic")
                if env.id in self.n.inflight or self.store.known(env.id):
                    continue
                self.n.trust.verify(env, now)
                fresh += 1
        except TrucError as exc:
            self.metrics.inc("gossip_rejected", reason=exc.code)
            self.log.warning("gossip.rejected", reason=exc.code, detail=exc.detail[:200], peer=peer[:16], topic=topic)
            return False
        if not fresh:
            self.metrics.inc("gossip_ignored_known")
        return fresh > 0

    async def gossip_handle(self, topic: str, peer: str, data: bytes) -> None:
        try:
            batch = m.EnvelopeBatch.decode(data, max_bytes=m.MAX_BATCH_BYTES)
        except RemoteError:
            return
        self.metrics.inc("gossip_messages_in")
        await self.ingest(batch.envs, peer=peer, path=Arrival.GOSSIP)

    def _reject(self, path: Arrival, peer: str, exc: TrucError, env_id: Digest | None, tally: Rejections | None = None) -> None:
        """Count a refused envelope; log it now, or once per reason for the batch when ``tally`` is given."""
        self.metrics.inc("envelopes_rejected", reason=exc.code, path=path.value)
        if tally is not None:
            first = tally.setdefault(exc.code, [0, exc.detail, env_id])
            first[0] += 1
            return
        self._log_rejected(path, peer, exc.code, 1, exc.detail, env_id)

    def _log_rejected(self, path: Arrival, peer: str, reason: str, count: int, detail: str, env_id: Digest | None) -> None:
        self.log.warning(
            "envelope.rejected",
            reason=reason,
            count=count,
            detail=detail[:200],
            path=path.value,
            peer=peer[:16],
            id=env_id.short() if env_id else "",
        )
