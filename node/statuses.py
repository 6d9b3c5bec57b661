"""Statuses and receipts: what hosted agencies say about documents, and what the node says for them.

A document whole at its recipient's node is *delivered* here: into each
hosted recipient's inbox, with the node's own signed 01 (``deliver``), or —
when it does not open as its sender signed it — a signed 02 with the reason
(``refuse``). Integrators' statuses (``send``) and those of other nodes
(``record``) go through the same thread history and the state table of
``protocol/status.py``; what a status means for a delivery (a 01 is the
receipt; a 02 before any 01 is a refusal) is an outbox event (``apply_effects``).
This part owns the inbox and the status history in the store.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from identity.sealing import read_document, read_status_note, seal_status
from protocol.agency import AgencyCode
from protocol.delivery import DeliveryKind
from protocol.document import MAX_NOTE_CHARS, BusinessType, DocumentMeta
from protocol.edxml.carry import carried_package, names_of
from protocol.envelope import Envelope, MessageHeader
from protocol.errors import DecodeError, DecryptError, NotAuthorizedError, NotFoundError, RemoteError, SchemaError
from protocol.ids import Digest
from protocol.status import HistoryItem, Phase, Role, StatusCode, ThreadState, check_author, replay, transition
from store.records import DocRecord, EdxmlRef, HistoryRecord, InboxEntry
from store.store import Batch

from .core import NodeCore, Part, Post
from .outbox import Outbox


def edxml_ref(meta: DocumentMeta, sender: AgencyCode, doc_id: Digest, fingerprint: bytes = b"") -> EdxmlRef:
    """The edXML names a node files a document under for its agencies (protocol/edxml/carry.py)."""
    names = names_of(meta, str(sender), doc_id.hex())
    return EdxmlRef(names.document_id, names.number, names.notation, names.date, str(sender), fingerprint)


class Statuses(Part):
    def __init__(self, n: NodeCore, outbox: Outbox) -> None:
        super().__init__(n)
        self.outbox = outbox

    def check_open(self, h: MessageHeader, code: AgencyCode, blocks: Any) -> DocumentMeta | RemoteError:
        """Open the whole document as recipient ``code``: the receipt means it arrived intact and readable.

        ``blocks`` are the envelope's inline block or the stored ones: each was
        compared with the signed hash when it entered the node, so it is not
        hashed again (decryption still authenticates it).

        An edXML header must agree with the signed envelope (its From is the
        sender, its To the recipients) and with the files: a sender cannot
        make a recipient's software see another agency's name.
        """
        try:
            meta = None
            for ev in read_document(h, self.hosted[code], blocks, checked=True):
                if isinstance(ev, DocumentMeta):
                    meta = ev
            assert meta is not None
            if meta.edxml:
                carried_package(meta, str(h.sender), [str(c) for c in h.to])
            return meta
        except RemoteError as exc:
            return exc

    def deliver(
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
                self.refuse(doc_id, h, opened, b, now, post)
            return dataclasses.replace(rec, complete=True, problem=opened.message)
        meta = opened
        fresh = [c for c in h.to if c in self.hosted and self.store.inbox_entry(c, doc_id) is None]
        if fresh:
            b.put_edxml(doc_id, edxml_ref(meta, h.sender, doc_id), fresh)
        for code in fresh:
            b.add_inbox(code, InboxEntry(doc_id, str(h.sender), now))
            receipt = self.author(
                code, doc_id, h, StatusCode.ARRIVED, note="", seq=1, to=h.sender, role=Role.RECIPIENT, b=b, now=now, post=post
            )
            if receipts is not None:
                receipts[code] = receipt
            self.metrics.inc("documents_delivered")
            post.append(functools.partial(self._told_delivered, doc_id, h.sender, code, receipt, meta.subject))
        return dataclasses.replace(
            rec,
            complete=True,
            subject=meta.subject,
            business=meta.business.value,
            ref=bytes(meta.ref) if meta.ref else b"",
            problem="",
        )

    def refuse(self, doc_id: Digest, h: MessageHeader, why: RemoteError, b: Batch, now: int, post: Post) -> None:
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
            self.author(
                code, doc_id, h, StatusCode.REJECTED, note=note, seq=1, to=h.sender, role=Role.RECIPIENT, b=b, now=now, post=post
            )
            self.metrics.inc("documents_refused", reason=why.code)
            post.append(
                functools.partial(
                    self.log.warning, "document.refused", id=doc_id.short(), sender=str(h.sender), to=str(code), reason=why.code
                )
            )

    def _told_delivered(self, doc_id: Digest, sender: AgencyCode, to: AgencyCode, receipt: Digest, subject: str) -> None:
        self.log.info("document.delivered", id=doc_id.short(), sender=str(sender), to=str(to), receipt=receipt.short())
        self.n.emit("document.received", id=str(doc_id), to=str(to), sender=str(sender), subject=subject)

    def author(
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
            net=self.n.trust.net,
            sender=self.hosted[author],
            recipient=self.n.trust.recipient(to),
            doc=doc_id,
            code=code,
            seq=seq,
            note=note,
            at=now,
            rng=self.n.rng,
        )
        assert isinstance(env.header, MessageHeader)
        b.put_envelope(env.id, env.encode())
        b.append_log(to.shard, env.id)
        thread = author if role is Role.RECIPIENT else to
        b.add_history(doc_id, thread, env.id, HistoryRecord(int(code), role.value, str(author), seq, now, now, note))
        if to in self.hosted:
            # Both parties on this node: the status is delivered where it is made.
            self.outbox.delivered_here(b, (author, bytes(env.id), to), DeliveryKind.STATUS, now)
            self.apply_effects(env.id, env.header, doc_id, doc, role, thread, b, now, post, note=note)
        else:
            self.outbox.queued(b, (author, bytes(env.id), to), DeliveryKind.STATUS, now)
        return env.id

    def record(self, env: Envelope, h: MessageHeader, doc: MessageHeader, b: Batch, now: int, post: Post) -> None:
        assert h.doc is not None and h.code is not None
        role, thread = self.n.trust.status_role(h, doc)  # NotAuthorizedError: the author is not a party
        note = ""
        if h.to[0] in self.hosted:
            try:
                note = read_status_note(env, self.hosted[h.to[0]]).note
            except RemoteError as exc:
                note = f"(note unreadable: {exc.code})"
        b.add_history(h.doc, thread, env.id, HistoryRecord(int(h.code), role.value, str(h.sender), h.seq, h.at, now, note))
        self.apply_effects(env.id, h, h.doc, doc, role, thread, b, now, post, note=note)
        if h.to[0] in self.hosted:
            told = {"doc": str(h.doc), "code": str(h.code), "author": str(h.sender), "to": str(h.to[0])}

            def tell() -> None:
                self.log.info("status.received", **(told | {"doc": h.doc.short() if h.doc else ""}))
                self.n.emit("status.received", **told, note=note)

            post.append(tell)

    def apply_effects(
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

            def tell() -> None:
                self.log.info("receipt.received", doc=doc_id.short(), recipient=str(thread), latency_ms=latency)
                self.n.emit("receipt.received", doc=str(doc_id), sender=str(doc.sender), recipient=str(thread), at=now)

            post.append(tell)

    def thread_state(self, doc_id: Digest, recipient: AgencyCode) -> tuple[ThreadState, list[HistoryItem], int]:
        """Replay a thread's history: (state, items, highest seq)."""

        rec = self.store.doc(doc_id)
        business = BusinessType(rec.business) if rec is not None and rec.business else BusinessType.NEW
        items = [
            HistoryItem(r.seq, r.at, bytes(sid), StatusCode(r.code), Role(r.role))
            for _, sid, r in self.store.history(doc_id, recipient)
        ]
        result = replay(business, items)
        return result.state, items, max((i.seq for i in items), default=0)

    async def send(
        self, doc_id: Digest, author: AgencyCode, code: StatusCode, *, note: str = "", to: AgencyCode | None = None
    ) -> Digest:
        """Send a processing status about a document, as hosted agency ``author``.

        A recipient writes to the document's sender; the sender (only with
        13) writes to one recipient, named by ``to``. Raises NotHostedError,
        NotFoundError, NotAuthorizedError or IllegalTransitionError.
        """
        self.n.keys(author)
        now = self.clock()
        self.n.trust.check_current(now)
        self.n.check_own_key(author)
        doc = self.n.doc_header(doc_id)
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
        sid = self.author(author, doc_id, doc, code, note=note, seq=top + 1, to=target, role=role, b=b, now=now, post=post)
        await self.committer.commit(b)
        self.metrics.inc("statuses_sent", code=str(code))
        self.log.info("status.sent", doc=doc_id.short(), code=str(code), author=str(author), to=str(target))
        for action in post:
            action()
        return sid

    async def ack_status(self, code: AgencyCode, status_id: Digest) -> bool:
        """Hosted agency ``code``'s document system took status ``status_id`` (durable); False if it had before."""
        if self.store.status_acked(code, status_id):
            return False
        b = self.store.batch()
        b.ack_status(code, status_id, self.clock())
        await self.committer.commit(b)
        return True
