"""Anti-entropy: catch up from any peer on whatever was missed.

Every node keeps, per shard, a log of the envelopes it stored, in local
order (store keyspace ``L``). To catch up from a peer, a node asks for the
peer's log heads, then for each shard it cares about reads the peer's log
from its cursor for that (shard, peer) onwards, pulls the envelopes it does
not know, ingests them, and moves the cursor. A cursor is tied to the peer
store's epoch: if the peer's store was recreated, reading restarts at 0.

This needs nothing from the senders: a node that was down or partitioned
receives everything stored anywhere it can reach. Rounds run every
``sync.interval_s`` with ``sync.fanout`` random peers, and soon after a peer
connects, with at most ``sync.parallel`` rounds in flight: a node that starts
among a thousand peers queues a thousand rounds, not a thousand tasks.
Directory links travel the same way (``dir``).

A heads request carries the asker's own heads (``mine``). When two peers
connect, both queue a round with the other; whichever asks first lets the
other see that it has already read everything the asker holds (its cursors
are at the asker's heads, same epoch, directory not newer), and the other
drops its queued round. At a cold start of N nodes that is N(N-1)/2 rounds
instead of N(N-1); after a partition, the side with news is never skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio

from identity.keys import b58decode
from protocol import messages as m
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, DirectoryHeader, Envelope
from protocol.errors import RemoteError
from protocol.ids import Digest
from store.records import Cursor

from .core import NodeCore, Part
from .overlay import SYNC, Overlay, OverlayError
from .tasks import TaskStatus

SYNC_TIMEOUT_S = 60.0
LOG_PAGE = 2000  # the most a peer answers (m.MAX_LOG_PAGE)
GET_CHUNK = 128  # envelopes per get: one request, and one durable commit when they are ingested
GET_AHEAD = 2  # gets of a page in flight while the previous ones are ingested (version-2 streams carry them at once)
MAX_MINE = 2000  # shards: our own heads ride along a heads request up to this many (about 20 KiB)


class Syncer(Part):
    def __init__(
        self,
        n: NodeCore,
        overlay: Overlay,
        *,
        ingest: Callable[[Sequence[bytes], str], Awaitable[list[m.PushResult]]],
        apply_directory: Callable[[Sequence[Envelope], str], Awaitable[bool]],
    ) -> None:
        """``ingest`` stores what a peer sent (node/inbound.py); ``apply_directory`` applies newer directory links."""
        super().__init__(n)
        self.overlay = overlay
        self.ingest = ingest
        self.apply_directory = apply_directory
        self._soon: dict[str, None] = {}  # an ordered set: peers waiting for a round
        self._wake = trio.Event()
        self._active: set[str] = set()
        self._fetching: dict[Digest, trio.Event] = {}  # ids some round is getting now: set when that get ends
        self.peak_active = 0  # most rounds ever in flight at once (never above sync.parallel)
        self.rounds = 0
        self.skipped = 0

    def sync_soon(self, peer: str) -> None:
        self._soon[peer] = None
        self._wake.set()

    # --- answering -------------------------------------------------------------------

    def answer(self, req: m.SyncRequest, peer: str = "") -> bytes:
        store = self.store
        if req.op is m.SyncOp.HEADS:
            if req.mine is not None and peer in self._soon and self._nothing_new(peer, req.mine):
                del self._soon[peer]  # its heads are all read already: our round back would find nothing
                self.skipped += 1
                self.metrics.inc("sync_rounds_skipped")
            wanted = set(req.shards)
            heads = tuple(sorted((s, n) for s, n in store.log_shards().items() if not wanted or s in wanted))
            return m.HeadsResponse(store.epoch, heads, self.n.trust.directory.serial).encode()
        if req.op is m.SyncOp.LOG:
            entries = tuple(store.log_range(req.shard, after=req.after, limit=req.limit))
            return m.LogResponse(store.epoch, entries, store.log_head(req.shard)).encode()
        if req.op is m.SyncOp.GET:
            out: list[bytes | None] = []
            size = 0
            for i in req.ids:
                raw = store.get_envelope(i)
                size += len(raw) if raw else 1
                if size > m.MAX_SYNC_RESPONSE_BYTES - 65536:
                    break  # a shorter answer: the asker requests the rest again
                out.append(raw)
            return m.EnvelopesResponse(tuple(out)).encode()
        links = [
            env.encode() for env in self.n.chain if isinstance(env.header, DirectoryHeader) and env.header.serial > req.after
        ]
        return m.EnvelopesResponse(tuple(links)).encode()

    def _nothing_new(self, peer: str, mine: m.HeadsResponse) -> bool:
        if mine.serial > self.n.trust.directory.serial:
            return False
        wanted = self.n.interested_shards()
        key = b58decode(peer)
        for shard, head in mine.heads:
            if head == 0 or shard not in wanted:
                continue
            cur = self.store.cursor(shard, key)
            if cur is None or cur.epoch != mine.epoch or cur.seq < head:
                return False
        return True

    def _mine(self) -> m.HeadsResponse | None:
        heads = self.store.log_shards()
        if len(heads) > MAX_MINE:
            return None  # too big to send along; the peer just runs its own round
        return m.HeadsResponse(self.store.epoch, tuple(sorted(heads.items())), self.n.trust.directory.serial)

    # --- asking ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        interval = self.n.config.sync_interval_s
        parallel = self.n.config.sync_parallel
        next_round = trio.current_time() + interval
        async with trio.open_nursery() as nursery:
            while True:
                if trio.current_time() >= next_round:
                    connected = sorted(self.overlay.connected_peers())
                    self.n.random.shuffle(connected)
                    for peer in connected[: self.n.config.sync_fanout]:
                        self._soon[peer] = None
                    next_round = trio.current_time() + interval
                while self._soon and len(self._active) < parallel:
                    peer = next(iter(self._soon))
                    del self._soon[peer]
                    if peer not in self._active and peer != self.n.peer_id:
                        self._active.add(peer)
                        self.peak_active = max(self.peak_active, len(self._active))
                        nursery.start_soon(self._round, peer)
                with trio.move_on_at(next_round):
                    await self._wake.wait()
                self._wake = trio.Event()

    async def _round(self, peer: str) -> None:
        try:
            await self.sync_with(peer)
        except (OverlayError, RemoteError) as exc:
            self.metrics.inc("sync_failures")
            self.log.info("sync.failed", peer=peer[:16], reason=str(exc)[:200])
        finally:
            self._active.discard(peer)
            self._wake.set()  # a slot is free

    async def _ask(self, peer: str, req: m.SyncRequest) -> bytes:
        data = await self.overlay.request(
            peer, SYNC, req.encode(), timeout=SYNC_TIMEOUT_S, max_response_bytes=m.MAX_SYNC_RESPONSE_BYTES
        )
        err = m.peek_error(data)
        if err is not None:
            raise OverlayError(peer, f"sync refused: {err.code}: {err.detail}")
        return data

    async def sync_with(self, peer: str) -> int:
        """One catch-up round with ``peer``; returns how many envelopes were new."""
        if not self.n.trust.is_member(peer):
            return 0
        wanted = self.n.interested_shards()
        heads = m.HeadsResponse.decode(
            await self._ask(peer, m.SyncRequest(m.SyncOp.HEADS, shards=tuple(sorted(wanted)), mine=self._mine()))
        )
        if heads.serial > self.n.trust.directory.serial:
            await self.pull_directory(peer)
        peer_key = b58decode(peer)
        new = 0
        for shard, head in heads.heads:
            if shard not in wanted:
                continue
            cur = self.store.cursor(shard, peer_key)
            start = cur.seq if cur is not None and cur.epoch == heads.epoch else 0
            while start < head:
                page = m.LogResponse.decode(
                    await self._ask(peer, m.SyncRequest(m.SyncOp.LOG, shard=shard, after=start, limit=LOG_PAGE))
                )
                if page.epoch != heads.epoch:
                    break  # the peer's store changed under us; next round starts over
                ids = [i for _, i in page.entries if not self.n.known(i)]
                new += await self._pull_page(peer, ids)
                start = page.entries[-1][0] if page.entries else head
                b = self.store.batch()
                b.put_cursor(shard, peer_key, Cursor(heads.epoch, start))
                self.store.write(b, sync=False)  # a lost cursor only means reading a page again
                if not page.entries:
                    break
        self.rounds += 1
        self.metrics.inc("sync_rounds")
        if new:
            self.metrics.inc("sync_envelopes_pulled", new)
            self.log.info("sync.caught_up", peer=peer[:16], envelopes=new)
        return new

    async def _pull_page(self, peer: str, ids: list[Digest]) -> int:
        """Pull a page's ids in chunks, the next gets asked while the envelopes already here are ingested.

        Ids another round is getting right now (a node catching up reads the
        same envelopes from the sender's log and from every relay's) are not
        asked twice: this round waits for that get to end, then asks for
        whatever it did not bring, before its cursor moves past them.

        Raises OverlayError or RemoteError (the first a chunk met; the other chunks stop)."""
        got = 0
        failed: list[OverlayError | RemoteError] = []
        theirs = {i: self._fetching[i] for i in ids if i in self._fetching}
        mine = [i for i in ids if i not in theirs]
        chunks = [mine[n : n + GET_CHUNK] for n in range(0, len(mine), GET_CHUNK)]
        done = [trio.Event() for _ in chunks]
        for chunk, event in zip(chunks, done, strict=True):
            self._fetching.update(dict.fromkeys(chunk, event))
        send, recv = trio.open_memory_channel[tuple[list[Digest], trio.Event]](0)

        async def puller(cancel: trio.CancelScope) -> None:
            nonlocal got
            async for chunk, event in recv:
                try:
                    got += await self._pull(peer, [i for i in chunk if not self.n.known(i)])  # a push may have brought some
                except (OverlayError, RemoteError) as exc:
                    failed.append(exc)
                    cancel.cancel()
                finally:
                    self._done_fetching(chunk, event)

        try:
            async with trio.open_nursery() as nursery, send:
                for _ in range(min(GET_AHEAD, len(chunks))):
                    nursery.start_soon(puller, nursery.cancel_scope)
                for chunk, event in zip(chunks, done, strict=True):
                    await send.send((chunk, event))
        finally:
            for chunk, event in zip(chunks, done, strict=True):
                self._done_fetching(chunk, event)  # chunks never handed out (cancelled): others may ask for them
        if failed:
            raise failed[0]
        for event in {id(e): e for e in theirs.values()}.values():
            await event.wait()
        left = [i for i in theirs if not self.n.known(i)]  # that round failed, or its peer did not have them
        for n in range(0, len(left), GET_CHUNK):
            got += await self._pull(peer, left[n : n + GET_CHUNK])
        return got

    def _done_fetching(self, chunk: list[Digest], event: trio.Event) -> None:
        for i in chunk:
            if self._fetching.get(i) is event:
                del self._fetching[i]
        event.set()

    async def _pull(self, peer: str, ids: list[Digest]) -> int:
        got = 0
        while ids:
            resp = m.EnvelopesResponse.decode(await self._ask(peer, m.SyncRequest(m.SyncOp.GET, ids=tuple(ids))))
            envs = [raw for raw in resp.envs if raw is not None]
            if envs:
                results = await self.ingest(envs, peer)
                got += sum(1 for r in results if r.status == m.OK)
            if len(resp.envs) >= len(ids) or not resp.envs:
                break
            ids = ids[len(resp.envs) :]  # the peer answered part of it: ask for the rest
        return got

    async def pull_directory(self, peer: str) -> None:
        resp = m.EnvelopesResponse.decode(await self._ask(peer, m.SyncRequest(m.SyncOp.DIR, after=self.n.trust.directory.serial)))
        envs = [Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES) for raw in resp.envs if raw is not None]
        if envs:
            await self.apply_directory(envs, peer)
