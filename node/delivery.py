"""The outbox worker: deliver what this node authored until it is acknowledged.

Per (envelope, recipient agency): push directly to the node hosting the
recipient (batched, one request per ``push_batch`` envelopes); if that node
cannot be reached, publish on the recipient's shard topic instead, so relays
store and forward it, and retry with capped exponential backoff and jitter.
Seeing the peer again resets the backoff. A document counts as delivered when
the recipient's signed 01 arrives (engine.py); after a transport ack it is
re-sent only if no receipt came within ``receipt_timeout_s``. A status
counts as delivered when the recipient's node acknowledged storing it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from protocol import messages as m
from protocol.agency import AgencyCode
from protocol.errors import RemoteError, TrucError
from protocol.ids import Digest
from store import keys as k
from store.records import DeliveryRecord, DeliveryState

from .overlay import PUSH, OverlayError, shard_topic

if TYPE_CHECKING:
    from .engine import Engine

PUSH_TIMEOUT_S = 30.0
MAX_PARALLEL_PUSHES = 64  # a broadcast reaches 94 nodes: push to them at once, not eight at a time
Item = tuple[Digest, AgencyCode, AgencyCode, DeliveryRecord]  # envelope, recipient, sender, record


class DeliveryWorker:
    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self._wake = trio.Event()
        self._limit = trio.Semaphore(MAX_PARALLEL_PUSHES)
        self._claimed: set[tuple[bytes, AgencyCode]] = set()  # attempts under way

    def kick(self) -> None:
        self._wake.set()

    def backoff_ms(self, failures: int) -> int:
        p = self.e.config.retry
        base = min(p.cap_s, p.initial_s * 2 ** min(failures, 40))
        jitter = base * p.jitter * (2 * self.e.random.random() - 1)
        return max(1, int((base + jitter) * 1000))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            flush_s = self.e.config.gossip_flush_ms / 1000
            while True:
                if self.e.stopping:  # shutting down: no new attempt (what is due stays due for the next start)
                    await trio.sleep_forever()
                groups, busy = self._take_due()
                for peer, items in groups.items():
                    nursery.start_soon(self._attempt, peer, items)
                if groups:
                    # Let the next envelopes gather: one libp2p request costs the same for one or sixty-four.
                    await trio.sleep(flush_s)
                    continue
                if busy:
                    wait = 1.0  # due slots are being attempted or rewritten; their writes kick us
                else:
                    nxt = self.e.store.next_due()
                    wait = math.inf if nxt is None else max(0.0, (nxt - self.e.clock()) / 1000)
                with trio.move_on_after(wait):
                    await self._wake.wait()
                    await trio.sleep(flush_s)  # woken by new work: wait for its companions
                self._wake = trio.Event()

    def _take_due(self) -> tuple[dict[str, list[Item]], bool]:
        """Claim every due delivery: reschedule it (as if it will fail) and group it by peer.

        Returns the groups and whether some due slots were skipped because an
        attempt or a write for them is under way (then the caller waits for a
        kick instead of spinning on slots the pending write will move).
        """
        e = self.e
        now = e.clock()
        give_up_ms = int(e.config.retry.give_up_days * 86_400_000)
        groups: dict[str, list[Item]] = {}
        busy = False
        b = e.store.batch()
        for due, eid, recipient, sender in e.store.due(now, limit=2000):
            if (bytes(eid), recipient) in self._claimed or e.write_pending(sender, eid, recipient):
                busy = True
                continue
            rec = e.store.delivery(sender, eid, recipient)
            if rec is None or rec.state is not DeliveryState.PENDING:
                b.delete(k.RETRY + k.u64(due) + eid + k.code(recipient))  # stale slot (record moved on meanwhile)
                continue
            if rec.next_at != due:
                b.delete(k.RETRY + k.u64(due) + eid + k.code(recipient))
                continue
            if now - rec.first_at > give_up_ms:
                failed = dataclasses.replace(
                    rec,
                    state=DeliveryState.FAILED,
                    last_error=f"gave up after {e.config.retry.give_up_days:g} days: {rec.last_error or 'no receipt'}",
                )
                e.put_delivery(b, sender, eid, recipient, failed, rec)
                e.metrics.inc("deliveries_failed")
                e.log.warning("delivery.failed", id=eid.short(), recipient=str(recipient), reason=failed.last_error)
                e.emit("delivery.failed", id=str(eid), sender=str(sender), recipient=str(recipient), reason=failed.last_error)
                continue
            claimed = dataclasses.replace(
                rec,
                attempts=rec.attempts + 1,
                failures=rec.failures + 1,
                last_at=now,
                next_at=now + self.backoff_ms(rec.failures),
            )
            try:
                peer = e.host_peer(recipient)
            except TrucError as exc:
                e.put_delivery(
                    b, sender, eid, recipient, dataclasses.replace(claimed, last_error=f"recipient: {exc.message}"), rec
                )
                continue
            e.put_delivery(b, sender, eid, recipient, claimed, rec)
            self._claimed.add((bytes(eid), recipient))
            groups.setdefault(peer, []).append((eid, recipient, sender, claimed))
        if len(b):
            b.after_write.append(self.kick)
            e.committer.enqueue(b)  # scheduling only: after a crash the entry is simply due again
        return groups, busy

    async def _attempt(self, peer: str, items: list[Item]) -> None:
        try:
            await self._attempt_inner(peer, items)
        finally:
            self._claimed.difference_update((bytes(eid), recipient) for eid, recipient, _, _ in items)
            self.kick()

    async def _attempt_inner(self, peer: str, items: list[Item]) -> None:
        e = self.e
        async with self._limit:
            raws: dict[Digest, bytes] = {}
            for eid, _, _, _ in items:
                raw = e.store.get_envelope(eid)
                if raw is not None:
                    raws[eid] = raw
            results: dict[Digest, m.PushResult] = {}
            error = ""
            if peer == e.peer_id:
                error = "the directory says this node hosts the recipient, but it is not in this node's config"
            elif not e.config.direct_push:
                error = "sent by gossip only (gossip.direct_push = false)"
            elif peer not in e.overlay.connected_peers():
                error = "recipient node not connected"
            else:
                for chunk in _chunks(list(raws.items()), e.config.push_batch, m.MAX_PUSH_BYTES - 4096):
                    try:
                        results.update(await self._push(peer, [raw for _, raw in chunk]))
                    except (OverlayError, RemoteError) as exc:
                        error = f"push to {peer[:16]}…: {exc}"
                        break
            await self._record(peer, items, raws, results, error)

    async def _push(self, peer: str, envs: Sequence[bytes]) -> dict[Digest, m.PushResult]:
        e = self.e
        data = await e.overlay.request(
            peer, PUSH, m.EnvelopeBatch(tuple(envs)).encode(), timeout=PUSH_TIMEOUT_S, max_response_bytes=1 << 20
        )
        err = m.peek_error(data)
        if err is not None:
            raise OverlayError(peer, f"refused: {err.code}: {err.detail}")
        e.metrics.inc("pushes")
        e.metrics.inc("pushed_envelopes", len(envs))
        return {r.id: r for r in m.PushResponse.decode(data).results}

    async def _record(
        self, peer: str, items: list[Item], raws: dict[Digest, bytes], results: dict[Digest, m.PushResult], error: str
    ) -> None:
        e = self.e
        now = e.clock()
        receipt_wait = int(e.config.retry.receipt_timeout_s * 1000)
        b = e.store.batch()
        post: list[Callable[[], None]] = []
        for eid, recipient, sender, _claimed in items:
            cur = e.delivery_record(sender, eid, recipient)
            if cur is None or cur.state is not DeliveryState.PENDING:
                continue  # a receipt landed meanwhile
            r = results.get(eid)
            if r is not None and r.stored:
                if cur.kind == "status":
                    new = dataclasses.replace(cur, state=DeliveryState.DELIVERED, delivered_at=now, failures=0, last_error="")
                else:
                    new = dataclasses.replace(cur, failures=0, last_error="", next_at=now + receipt_wait)
                e.log.debug("delivery.pushed", id=eid.short(), recipient=str(recipient), kind=cur.kind, result=r.status)
            elif r is not None and m.refused_for_good(r.status):
                e.delivery_refused(b, sender, eid, recipient, cur, f"{r.status}: {r.detail}", now, post)
                continue
            elif r is not None:
                new = dataclasses.replace(cur, last_error=f"refused by the recipient's node: {r.status}: {r.detail}")
                e.log.warning(
                    "delivery.refused", id=eid.short(), recipient=str(recipient), reason=r.status, detail=r.detail[:200]
                )
            else:
                new = dataclasses.replace(cur, last_error=error or "no answer for this envelope")
                raw = raws.get(eid)
                if raw is not None:
                    # Store-and-forward through relays: whoever holds the shard keeps it for catch-up.
                    e.batcher.add(shard_topic(e.trust.net, recipient.shard), raw)
                    e.metrics.inc("gossip_fallbacks")
                e.log.info(
                    "delivery.deferred",
                    id=eid.short(),
                    recipient=str(recipient),
                    reason=new.last_error,
                    retry_in_s=(cur.next_at - now) // 1000,
                )
            e.put_delivery(b, sender, eid, recipient, new, cur)
        if len(b):
            await e.committer.commit(b)
        for action in post:
            action()

    async def peer_seen(self, codes: Sequence[AgencyCode]) -> None:
        """A node hosting ``codes`` connected: retry what waits for them now, with the backoff reset."""
        e = self.e
        now = e.clock()
        b = e.store.batch()
        for code in codes:
            for _, eid, sender in e.store.pending(code):
                rec = e.delivery_record(sender, eid, code)
                if rec is not None and rec.state is DeliveryState.PENDING and rec.failures and rec.next_at > now:
                    e.put_delivery(b, sender, eid, code, dataclasses.replace(rec, next_at=now, failures=0), rec)
        if len(b):
            e.committer.enqueue(b)
            self.kick()


def _chunks(items: list[tuple[Digest, bytes]], count: int, max_bytes: int) -> list[list[tuple[Digest, bytes]]]:
    out: list[list[tuple[Digest, bytes]]] = []
    cur: list[tuple[Digest, bytes]] = []
    size = 0
    for item in items:
        if cur and (len(cur) >= count or size + len(item[1]) > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += len(item[1])
    if cur:
        out.append(cur)
    return out
