"""Fetch the blocks of large documents addressed here, from any peer that has them.

Blocks are requested one hash per request from the sender's node first, then
from every other connected peer; each block is checked against the signed
hash and size before it is stored. Memory stays at a few blocks whatever the
document size. Progress is on disk (one key per block), so a restart resumes
where it stopped: documents still waiting are listed in keyspace ``A``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from protocol import messages as m
from protocol.envelope import MessageHeader
from protocol.errors import RemoteError
from protocol.ids import Digest

from .core import NodeCore, Part
from .overlay import BLOCKS, Overlay, OverlayError
from .tasks import TaskStatus

BLOCK_TIMEOUT_S = 60.0
WINDOW = 8  # blocks in flight per document (measured: 3 left the stream idle between blocks; docs/performance.md)
PARALLEL_DOCUMENTS = 2
RETRY_S = (2.0, 300.0)


class BlockFetcher(Part):
    def __init__(self, n: NodeCore, overlay: Overlay, *, complete: Callable[[Digest], Awaitable[None]]) -> None:
        """``complete`` is called once every block of a document is here (node/inbound.py opens and delivers it)."""
        super().__init__(n)
        self.overlay = overlay
        self.complete = complete
        self._nursery: trio.Nursery | None = None
        self._queue: list[Digest] = []
        self._active: set[Digest] = set()
        self._wake = trio.Event()
        self._limit = trio.Semaphore(PARALLEL_DOCUMENTS)
        self._stalls: dict[Digest, int] = {}

    def want(self, doc_id: Digest) -> None:
        if doc_id not in self._queue and doc_id not in self._active:
            self._queue.append(doc_id)
            self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for doc_id in self.store.awaiting():
            self.want(doc_id)
        task_status.started()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                while not self._queue:
                    await self._wake.wait()
                    self._wake = trio.Event()
                doc_id = self._queue.pop(0)
                await self._limit.acquire()
                self._active.add(doc_id)
                nursery.start_soon(self._fetch, doc_id)

    async def _fetch(self, doc_id: Digest) -> None:
        try:
            h = self.n.doc_header(doc_id)
            if h is None:
                return
            missing = self.n.blocks_missing(h)
            if missing:
                failed: list[int] = []
                async with trio.open_nursery() as nursery:
                    window = trio.Semaphore(WINDOW)
                    for index in missing:
                        await window.acquire()
                        nursery.start_soon(self._one, doc_id, h, index, window, failed)
                if failed:
                    self._stalled(doc_id, len(failed))
                    return
            self._stalls.pop(doc_id, None)
            await self.complete(doc_id)
        finally:
            self._active.discard(doc_id)
            self._limit.release()

    def _sources(self, h: MessageHeader) -> list[str]:
        connected = self.overlay.connected_peers()
        first = []
        try:
            sender_node = self.n.host_peer(h.sender)
            if sender_node in connected:
                first.append(sender_node)
        except RemoteError:
            pass
        others = sorted(p for p in connected if p not in first and p != self.n.peer_id)
        self.n.random.shuffle(others)
        return first + others

    async def _one(self, doc_id: Digest, h: MessageHeader, index: int, window: trio.Semaphore, failed: list[int]) -> None:
        digest = h.body.blocks[index]
        try:
            for peer in self._sources(h):
                if not self.store.has_doc(doc_id):
                    return  # dropped meanwhile (retention at a relay): its blocks are not wanted
                try:
                    data = await self.overlay.request(
                        peer,
                        BLOCKS,
                        m.BlockRequest((digest,)).encode(),
                        timeout=BLOCK_TIMEOUT_S,
                        max_response_bytes=m.MAX_BLOCKS_RESPONSE_BYTES,
                    )
                except OverlayError:
                    continue
                # On the event loop: in a worker thread the decoding (which holds the GIL) made both threads
                # wait for each other (py-spy: most of the fetching node's time at the hand-over to the thread).
                verdict = self._check_and_store(data, h, index, digest)
                if verdict == "bad":
                    self.metrics.inc("blocks_rejected", reason="hash_mismatch")
                    self.log.warning("block.rejected", reason="hash_mismatch", peer=peer[:16], block=digest.short())
                    continue
                if verdict == "none":
                    continue
                if not self.store.has_doc(doc_id):
                    # Retention dropped the document (with the blocks it had) while this one was on its
                    # way. Checked after the write: a drop that lands later deletes this block itself.
                    b = self.store.batch()
                    b.delete_block(digest)
                    self.store.write(b, sync=False)
                    return
                self.metrics.inc("blocks_fetched")
                self.metrics.inc("block_bytes_fetched", h.body.sealed_size(index))
                return
            failed.append(index)
        finally:
            window.release()

    def _check_and_store(self, data: bytes, h: MessageHeader, index: int, digest: Digest) -> str:
        """A block answer: "ok" (the block matched its signed hash and size, and is written), "bad" (it did not), or
        "none" (an error answer, no block, or a malformed answer: ask the next peer)."""
        try:
            if m.peek_error(data) is not None:
                return "none"
            block = m.BlockResponse.decode(data).blocks[0]
        except (RemoteError, IndexError):
            return "none"
        if block is None:
            return "none"
        if len(block) != h.body.sealed_size(index) or Digest.of(block) != digest:
            return "bad"
        b = self.store.batch()
        b.put_block(digest, block)
        self.store.write(b, sync=False)  # made durable by the commit that completes the document
        return "ok"

    def _stalled(self, doc_id: Digest, missing: int) -> None:
        n = self._stalls.get(doc_id, 0) + 1
        self._stalls[doc_id] = n
        delay = min(RETRY_S[1], RETRY_S[0] * 2**n)
        self.log.info("blocks.stalled", id=doc_id.short(), missing=missing, retry_in_s=round(delay))

        async def later() -> None:
            await trio.sleep(delay)
            self.want(doc_id)

        assert self._nursery is not None
        self._nursery.start_soon(later)
