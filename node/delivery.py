"""The delivery worker: deliver what this node authored until it is acknowledged.

Per (envelope, recipient agency): push directly to the node hosting the
recipient (batched, one request per ``push_batch`` envelopes); if that node
cannot be reached, publish on the recipient's shard topic instead, so relays
store and forward it, and retry with capped exponential backoff and jitter.
Seeing the peer again resets the backoff. A document counts as delivered when
the recipient's signed 01 arrives (node/statuses.py); after a transport ack
it is re-sent only if no receipt came within ``receipt_timeout_s``. A status
counts as delivered when the recipient's node acknowledged storing it.

The worker owns no state but its attempts under way: records are the
outbox's (node/outbox.py), and each outcome is one outbox event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import trio

from protocol import messages as m
from protocol.agency import AgencyCode
from protocol.config import NodeConfig
from protocol.delivery import DeliveryState
from protocol.errors import RemoteError, TrucError
from protocol.ids import Digest
from store import keys as k
from store.records import DeliveryRecord
from store.store import Store

from .batcher import GossipBatcher
from .committer import GroupCommitter
from .log import Log
from .metrics import Metrics
from .outbox import Key, Outbox
from .overlay import PUSH, Overlay, OverlayError
from .tasks import TaskStatus

PUSH_TIMEOUT_S = 30.0
MAX_PARALLEL_PUSHES = 64  # a broadcast reaches 94 nodes: push to them at once, not eight at a time
# Envelopes claimed and not yet through their attempt. Beyond this, due work
# waits in the store's schedule: a larger queue in memory only ages its claims
# (an attempt waiting longer than its backoff is due again while under way,
# and every pass over the schedule had to step over it).
MAX_IN_FLIGHT = 1024
Item = tuple[Digest, AgencyCode, AgencyCode, DeliveryRecord]  # envelope, recipient, sender, record


class DeliveryWorker:
    def __init__(
        self,
        outbox: Outbox,
        *,
        store: Store,
        committer: GroupCommitter,
        overlay: Overlay,
        batcher: GossipBatcher,
        config: NodeConfig,
        locate: Callable[[AgencyCode], str],
        topic_of: Callable[[AgencyCode], str],
        clock: Callable[[], int],
        accepting: Callable[[], bool],
        metrics: Metrics,
        log: Log,
    ) -> None:
        """``locate`` names the peer hosting a recipient (TrucError if none); ``topic_of`` its shard topic."""
        self.outbox = outbox
        self.store = store
        self.committer = committer
        self.overlay = overlay
        self.batcher = batcher
        self.config = config
        self.locate = locate
        self.topic_of = topic_of
        self.clock = clock
        self.accepting = accepting
        self.metrics = metrics
        self.log = log
        self._limit = trio.Semaphore(MAX_PARALLEL_PUSHES)
        self._claimed: set[bytes] = set()  # attempts under way, by keys.delivery_tail (as the schedule's keys end)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            flush_s = self.config.gossip_flush_ms / 1000
            last_dispatch = -math.inf
            while True:
                if not self.accepting():  # shutting down: no new attempt (what is due stays due for the next start)
                    await trio.sleep_forever()
                room = MAX_IN_FLIGHT - len(self._claimed)
                groups, busy = self._take_due(room) if room > 0 else ({}, True)
                for peer, items in groups.items():
                    nursery.start_soon(self._attempt, peer, items)
                if groups:
                    # Let the next envelopes gather: one libp2p request costs the same for one or sixty-four.
                    last_dispatch = trio.current_time()
                    await trio.sleep(flush_s)
                    continue
                if busy:
                    wait = 1.0  # due slots are being attempted or rewritten; their writes wake us
                else:
                    nxt = self.store.next_due()
                    wait = math.inf if nxt is None else max(0.0, (nxt - self.clock()) / 1000)
                with trio.move_on_after(wait):
                    await self.outbox.wait_changed()
                    # Woken by new work: wait for its companions, unless the worker was idle (nothing under way,
                    # nothing sent for a flush period): then the first envelope leaves at once, and the sleep
                    # after its dispatch gathers what follows it. Under load nothing changes.
                    idle = not self._claimed and trio.current_time() - last_dispatch >= flush_s
                    await trio.sleep(0 if idle else flush_s)

    def _take_due(self, room: int) -> tuple[dict[str, list[Item]], bool]:
        """Claim due deliveries (at most ``room``) and group them by peer.

        Returns the groups and whether some due slots were skipped because an
        attempt or a write for them is under way (then the caller waits for a
        wake-up instead of spinning on slots the pending write will move).
        """
        now = self.clock()
        give_up_ms = int(self.config.retry.give_up_days * 86_400_000)
        groups: dict[str, list[Item]] = {}
        b = self.store.batch()
        due_now, skipped = self.store.due_except(now, limit=room, skip=self._claimed)
        busy = skipped > 0
        for due, eid, recipient, sender in due_now:
            key: Key = (sender, bytes(eid), recipient)
            if self.outbox.unwritten(*key):
                busy = True
                continue
            rec = self.store.delivery(sender, eid, recipient)
            if rec is None or rec.state is not DeliveryState.PENDING or rec.next_at != due:
                b.delete(k.RETRY + k.u64(due) + k.delivery_tail(eid, recipient))  # stale slot (the record moved on meanwhile)
                continue
            if now - rec.first_at > give_up_ms:
                self.outbox.gave_up(b, key, rec)
                continue
            try:
                peer = self.locate(recipient)
            except TrucError as exc:
                self.outbox.claim(b, key, rec, now, error=f"recipient: {exc.message}")
                continue
            claimed = self.outbox.claim(b, key, rec, now)
            assert claimed is not None
            self._claimed.add(k.delivery_tail(eid, recipient))
            groups.setdefault(peer, []).append((eid, recipient, sender, claimed))
        if len(b):
            self.committer.enqueue(b)  # scheduling only: after a crash the entry is simply due again
        return groups, busy

    async def _attempt(self, peer: str, items: list[Item]) -> None:
        try:
            await self._attempt_inner(peer, items)
        finally:
            self._claimed.difference_update(k.delivery_tail(eid, recipient) for eid, recipient, _, _ in items)
            self.outbox.kick()

    async def _attempt_inner(self, peer: str, items: list[Item]) -> None:
        async with self._limit:
            raws: dict[Digest, bytes] = {}
            for eid, _, _, _ in items:
                raw = self.store.get_envelope(eid)
                if raw is not None:
                    raws[eid] = raw
            results: dict[Digest, m.PushResult] = {}
            error = ""
            if peer == self.overlay.peer_id:
                error = "the directory says this node hosts the recipient, but it is not in this node's config"
            elif not self.config.direct_push:
                error = "sent by gossip only (gossip.direct_push = false)"
            elif peer not in self.overlay.connected_peers():
                error = "recipient node not connected"
            else:
                for chunk in _chunks(list(raws.items()), self.config.push_batch, m.MAX_PUSH_BYTES - 4096):
                    try:
                        results.update(await self._push(peer, [raw for _, raw in chunk]))
                    except (OverlayError, RemoteError) as exc:
                        error = f"push to {peer[:16]}…: {exc}"
                        break
            await self._record(items, raws, results, error)

    async def _push(self, peer: str, envs: Sequence[bytes]) -> dict[Digest, m.PushResult]:
        data = await self.overlay.request(
            peer, PUSH, m.EnvelopeBatch(tuple(envs)).encode(), timeout=PUSH_TIMEOUT_S, max_response_bytes=1 << 20
        )
        err = m.peek_error(data)
        if err is not None:
            raise OverlayError(peer, f"refused: {err.code}: {err.detail}")
        self.metrics.inc("pushes")
        self.metrics.inc("pushed_envelopes", len(envs))
        return {r.id: r for r in m.PushResponse.decode(data).results}

    async def _record(
        self, items: list[Item], raws: dict[Digest, bytes], results: dict[Digest, m.PushResult], error: str
    ) -> None:
        """Each envelope's outcome, as one outbox event (the table ignores what a receipt overtook)."""
        now = self.clock()
        receipt_wait = int(self.config.retry.receipt_timeout_s * 1000)
        b = self.store.batch()
        # One log line per recipient and reason per attempt, not per envelope (a recipient node that is down
        # while 10,000 envelopes wait for it is one line per retry batch): the first id, and how many.
        deferred_lines: dict[tuple[AgencyCode, str], tuple[int, Digest, int]] = {}
        for eid, recipient, sender, claimed in items:
            key: Key = (sender, bytes(eid), recipient)
            r = results.get(eid)
            if r is not None and r.stored:
                if self.outbox.pushed(b, key, now, receipt_wait_ms=receipt_wait) is not None:
                    self.log.debug("delivery.pushed", id=eid.short(), recipient=str(recipient), result=r.status)
            elif r is not None and m.refused_for_good(r.status):
                self.outbox.refused(b, key, f"{r.status}: {r.detail}", now)
            elif r is not None:
                if self.outbox.deferred(b, key, f"refused by the recipient's node: {r.status}: {r.detail}") is not None:
                    self.log.warning(
                        "delivery.refused", id=eid.short(), recipient=str(recipient), reason=r.status, detail=r.detail[:200]
                    )
            elif (deferred := self.outbox.deferred(b, key, error or "no answer for this envelope")) is not None:
                raw = raws.get(eid)
                if raw is not None and claimed.attempts == 1:
                    # Store-and-forward through relays: whoever holds the shard keeps it for catch-up. Once is
                    # enough: relays also read this node's log, so every retry publishing it again (58,901
                    # messages for 10,000 documents while bench.node's recipient was down) only cost the
                    # sender and every relay.
                    self.batcher.add(self.topic_of(recipient), raw)
                    self.metrics.inc("gossip_fallbacks")
                line = (recipient, deferred.last_error)
                count, first, retry_s = deferred_lines.get(line, (0, eid, (claimed.next_at - now) // 1000))
                deferred_lines[line] = (count + 1, first, retry_s)
        for (recipient, reason), (count, first, retry_s) in deferred_lines.items():
            self.log.info(
                "delivery.deferred",
                id=first.short(),
                recipient=str(recipient),
                reason=reason,
                retry_in_s=retry_s,
                envelopes=count,
            )
        if len(b):
            await self.committer.commit(b)

    def peer_seen(self, codes: Sequence[AgencyCode]) -> None:
        """A node hosting ``codes`` connected: what waits for them is due now, with the backoff reset."""
        now = self.clock()
        b = self.store.batch()
        for code in codes:
            for _, eid, sender in self.store.pending(code):
                self.outbox.retry_now(b, (sender, bytes(eid), code), now)
        if len(b):
            self.committer.enqueue(b)
            self.outbox.kick()


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
