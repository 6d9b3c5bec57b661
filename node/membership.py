"""Membership: the directory in use, the peers that come and go, and this node's own keys changing.

A newer directory serial arrives by gossip (``dir_handle``), by sync, or from
the operator (``publish_directory``); once applied, every part reads the new
``NodeCore.trust`` and the overlay re-reads who may connect. A peer that
connects makes what waits for its agencies due now and starts a catch-up
round. After a key change (``reissue_stale``, at start), what is still
undelivered and signed with an old key is re-signed or failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from identity.directory import Directory, apply_link, verify_link
from identity.trust import Trust
from protocol import messages as m
from protocol.agency import AgencyCode
from protocol.delivery import DeliveryState
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, DirectoryHeader, Envelope, Kind, MessageHeader
from protocol.errors import DirectoryError, SchemaError, TrucError
from protocol.status import Role

from .core import NodeCore, Part, Post
from .inbound import Inbound
from .outbox import REFUSALS_SHOWN_MS, REFUSED_BY_RECIPIENT, Outbox
from .overlay import Overlay, directory_topic, shard_topic
from .statuses import Statuses


class Membership(Part):
    def __init__(
        self,
        n: NodeCore,
        overlay: Overlay,
        outbox: Outbox,
        statuses: Statuses,
        inbound: Inbound,
        *,
        sync_soon: Callable[[str], None],
        peer_seen: Callable[[Sequence[AgencyCode]], None],
    ) -> None:
        """``sync_soon`` queues a catch-up round with a peer; ``peer_seen`` makes what waits for its agencies due."""
        super().__init__(n)
        self.overlay = overlay
        self.outbox = outbox
        self.statuses = statuses
        self.inbound = inbound
        self.sync_soon = sync_soon
        self.peer_seen = peer_seen
        self.last_seen: dict[str, int] = {}

    def dir_validate(self, topic: str, peer: str, data: bytes) -> bool:
        try:
            batch = m.EnvelopeBatch.decode(data, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
            newer = False
            for raw in batch.envs:
                env = Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
                if not isinstance(env.header, DirectoryHeader):
                    raise SchemaError("not a directory envelope")
                verify_link(env, self.n.trust.authority)
                newer = newer or env.header.serial > self.n.trust.directory.serial
        except TrucError as exc:
            self.metrics.inc("gossip_rejected", reason=exc.code)
            self.log.warning("directory.rejected", reason=exc.code, detail=exc.detail[:200], peer=peer[:16])
            return False
        return newer

    async def dir_handle(self, topic: str, peer: str, data: bytes) -> None:
        batch = m.EnvelopeBatch.decode(data, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
        envs = [Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES) for raw in batch.envs]
        if not await self.apply_directory(envs, source=peer):
            self.sync_soon(peer)  # we are missing links in between: ask that peer

    async def apply_directory(self, envs: Sequence[Envelope], *, source: str) -> bool:
        """Apply newer directory links in serial order; returns False if a gap kept some out."""
        current = self.n.trust.directory
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
                current = apply_link(current, env, self.n.trust.authority)
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
        old = self.n.trust.directory
        self.n.trust = Trust(directory, self.n.trust.authority, self.n.trust.policy)
        self.n.chain.extend(links)
        self.overlay.refresh()
        self.log.info("directory.updated", serial=directory.serial, previous=old.serial, agencies=len(directory.agencies))
        self.n.emit("directory.updated", serial=directory.serial)
        for shard in self.n.interested_shards() - old.shards() - (set(self.config.relay_shards or ())):
            self.n.spawn(
                self.overlay.subscribe,
                shard_topic(self.n.trust.net, shard),
                self.inbound.gossip_validate,
                self.inbound.gossip_handle,
            )

    async def publish_directory(self, envs: Sequence[Envelope]) -> int:
        """Apply directory links handed in by an operator and gossip them to the network.

        Every link of the file must be the pinned authority's, and the newer
        ones must apply; otherwise DirectoryError says which link and why
        (``apply_directory`` only logs, as for links from peers).
        """
        before = self.n.trust.directory.serial
        current = self.n.trust.directory
        for env in sorted(envs, key=lambda e: e.header.serial if isinstance(e.header, DirectoryHeader) else 0):
            serial = env.header.serial if isinstance(env.header, DirectoryHeader) else 0
            try:
                h = verify_link(env, self.n.trust.authority)
                if h.serial > current.serial and (h.is_snapshot or h.base == current.serial):
                    current = apply_link(current, env, self.n.trust.authority)
            except TrucError as exc:
                raise DirectoryError(f"serial {serial} of the file: {exc.message}") from None
        if not await self.apply_directory(envs, source="local"):
            raise DirectoryError(f"the links do not continue this node's serial {before}")
        if self.n.trust.directory.serial == before:
            return before
        fresh = [e.encode() for e in envs if isinstance(e.header, DirectoryHeader) and e.header.serial > before]
        await self.overlay.publish(directory_topic(self.n.trust.net), m.EnvelopeBatch(tuple(fresh)).encode())
        return self.n.trust.directory.serial

    async def peer_up(self, peer: str) -> None:
        self.last_seen[peer] = self.clock()
        codes = self.n.trust.directory.hosted_by(peer)
        self.log.info("peer.connected", peer=peer[:16], codes=",".join(c.short() for c in codes))
        self.n.emit("peer.up", peer=peer, codes=[str(c) for c in codes])
        if codes:
            self.peer_seen(codes)
        self.sync_soon(peer)

    async def peer_down(self, peer: str) -> None:
        self.last_seen[peer] = self.clock()
        self.log.info("peer.disconnected", peer=peer[:16])
        self.n.emit("peer.down", peer=peer)

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
                env = self.n.envelope(env_id)
                if env is None or not isinstance(env.header, MessageHeader) or env.header.kid == keys.signing.kid:
                    continue
                h = env.header
                changed += 1
                key = (code, bytes(env_id), recipient)
                if h.kind is Kind.DOCUMENT:
                    self.outbox.reissued(b, key, rec, "signed with a key that is no longer current: send it again")
                    continue
                assert h.doc is not None and h.code is not None
                doc = self.n.doc_header(h.doc)
                if doc is None:
                    continue
                role = Role.SENDER if code == doc.sender else Role.RECIPIENT
                thread = recipient if role is Role.SENDER else code
                notes = [r.note for _, sid, r in self.store.history(h.doc, thread) if sid == env_id]
                b.delete_history(h.doc, thread, h.seq, env_id)
                self.outbox.reissued(b, key, rec, "re-signed with the new key")
                self.statuses.author(
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
