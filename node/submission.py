"""What integrators ask of the node for their agencies: submit a document, acknowledge one, open one.

``submit`` seals a document for its recipients (blocks written as they are
made, removed again if the submit fails), stores it durably and queues it in
the outbox; recipients hosted here too get it in the same commit. Statuses
are ``node/statuses.py``'s ``send``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import trio

from identity.keys import AgencyKeys
from identity.sealing import FileSource, Recipient, describe_files, read_document, seal_document
from protocol.agency import AgencyCode
from protocol.body import INLINE_MAX_BYTES
from protocol.delivery import DeliveryKind
from protocol.document import DocumentMeta, FileBytes, FileDone, check_attachments
from protocol.envelope import Envelope, MessageHeader
from protocol.errors import NotARecipientError, NotAuthorizedError, NotFoundError, SchemaError, TooLargeError
from protocol.ids import Digest
from store.records import DocRecord, DocRole
from store.store import InflightBlocks

from .core import NodeCore, Part, Post
from .outbox import Outbox
from .statuses import Statuses, edxml_ref

SEAL_WRITE_BLOCKS = 2  # blocks of a document being sealed are written this many at a time: memory stays flat
INLINE_DESCRIBE_BYTES = 256 << 10  # attachments in memory up to this size are hashed on the event loop (~0.1 ms)


class Submission(Part):
    def __init__(self, n: NodeCore, outbox: Outbox, statuses: Statuses) -> None:
        super().__init__(n)
        self.outbox = outbox
        self.statuses = statuses
        self._idempotency: dict[tuple[AgencyCode, str], trio.Event] = {}

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
        self.n.keys(sender)
        check_attachments(list(files))
        self.n.trust.check_current(self.clock())
        self.n.check_own_key(sender)  # a revoked key: ask the authority for a new one
        if not recipients:
            raise SchemaError("a document needs at least one recipient")
        if len(set(recipients)) != len(recipients):
            raise SchemaError("a recipient is listed twice")
        if sender in recipients:
            raise SchemaError(f"{sender} cannot send a document to itself")
        targets = [self.n.trust.recipient(c) for c in sorted(recipients, key=str)]  # UnknownAgencyError
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
        fingerprint: bytes = b"",
    ) -> Digest:
        """Seal, store durably and queue a document; returns its id once it is durable.

        With an ``idempotency_key`` the same key from the same sender returns
        the first document's id and creates nothing new. ``fingerprint`` is
        an imported edoc's (node/edxml.py), kept with its edXML names. Raises
        NotHostedError, UnknownAgencyError, DirectoryExpiredError,
        TooLargeError or SchemaError.
        """
        keys = self.n.keys(sender)
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
            return await self._submit(keys, to, targets, meta, files, idempotency_key, new_blocks, fingerprint)
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
        target = self.n.doc_header(meta.ref)
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
        fingerprint: bytes,
    ) -> Digest:
        """Seal and commit; blocks go to ``new_blocks`` as they are made, and the commit settles them."""
        in_memory = all(f.data is not None for f in files)
        if in_memory and sum(len(f.data or b"") for f in files) <= INLINE_DESCRIBE_BYTES:
            entries = describe_files(files)  # a few hashes of bytes in memory: cheaper than the trip to a worker thread
        else:
            entries = await self.n.offload(describe_files, files)
        limit = self.config.max_document_bytes
        total = sum(e.size for e in entries)
        if total > limit:
            raise TooLargeError(f"the attachments are {total} bytes, this node accepts documents up to {limit} bytes")

        def seal() -> tuple[Envelope, DocumentMeta]:  # in a worker thread, unless the document is small
            env, full = seal_document(
                meta,
                files,
                net=self.n.trust.net,
                sender=keys,
                recipients=targets,
                at=self.clock(),
                rng=self.n.rng,
                on_block=new_blocks.put,
                entries=entries,
                # What recipients check (their limit is the network's default, as ours): a document that passed on
                # its attachments alone would be stored here and refused by every recipient.
                max_length=limit,
            )
            new_blocks.flush()
            return env, full

        if in_memory and total <= INLINE_MAX_BYTES:
            # A document in memory whose body travels inline (at most one small block otherwise) is sealed on
            # the event loop: much of sealing is Python holding the GIL, and the trip to a worker thread was
            # 10 % of a saturated sender's loop (bench.node, 16 KiB documents: 612 against 568 documents/s,
            # four alternating pairs).
            sealed: tuple[Envelope, DocumentMeta] = seal()
        else:
            sealed = await self.n.offload(seal)
        env, full = sealed
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
        b.put_edxml(env.id, edxml_ref(full, keys.code, env.id, fingerprint), [keys.code])
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
            blocks = env.inline or self.n.blocks_from(h)
            rec = self.statuses.deliver(env.id, h, rec, self.statuses.check_open(h, local[0], blocks), b, now, post, receipts)
            for code in local:
                delivery = (keys.code, bytes(env.id), code)
                if code in receipts:
                    self.outbox.delivered_here(b, delivery, DeliveryKind.DOCUMENT, now, receipt=bytes(receipts[code]))
                else:
                    self.outbox.failed_here(b, delivery, DeliveryKind.DOCUMENT, now, reason=rec.problem)
        b.put_doc(env.id, rec)
        new_blocks.settle(b)
        await self.committer.commit(b)
        self.n.remember_header(env.id, h)
        self.metrics.inc("documents_submitted")
        self.log.info(
            "document.submitted", id=env.id.short(), sender=str(keys.code), to=",".join(str(c) for c in to), size=h.body.length
        )
        for action in post:
            action()
        return env.id

    async def ack(self, code: AgencyCode, doc_id: Digest) -> bool:
        """The integrator took the document; returns False if it was acknowledged before."""
        self.n.keys(code)
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
        keys = self.n.keys(code)
        doc = self.n.doc_header(doc_id)
        if doc is None:
            raise NotFoundError(f"document {doc_id}")
        if code not in doc.to and code != doc.sender:
            raise NotAuthorizedError(f"{code} is not a party to {doc_id.short()}")
        rec = self.store.doc(doc_id)
        if rec is None or not rec.complete:
            raise NotFoundError(f"document {doc_id.short()} is still arriving")
        env = self.n.envelope(doc_id)
        assert env is not None
        if code == doc.sender and code not in doc.to:
            raise NotARecipientError(f"{code} sent {doc_id.short()}; its content is in the sender's own document system")
        # Inline blocks were checked when the envelope was decoded, stored ones when they entered the store.
        return read_document(doc, keys, env.inline or self.n.blocks_from(doc), checked=True)
