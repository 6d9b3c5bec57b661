"""Fetch the blocks of large documents addressed here, from any peer that has them.

Blocks are requested one hash per request from the sender's node first, then
from every other connected peer; each block is checked against the signed
hash and size before it is stored. Memory stays at a few blocks whatever the
document size. Progress is on disk (one key per block), so a restart resumes
where it stopped: documents still waiting are listed in keyspace ``A``.

A document addressed to an agency hosted here is opened while its blocks
arrive (:class:`_EarlyOpen`): a worker thread decrypts and checks each block
as soon as it and those before it are stored, so the receipt does not wait
for a second pass over the whole document after the last block.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator

import trio

from protocol import messages as m
from protocol.document import DocumentMeta
from protocol.envelope import MessageHeader
from protocol.errors import RemoteError
from protocol.ids import Digest
from store.store import Store

from .committer import run_in_thread
from .core import NodeCore, Part
from .overlay import BLOCKS, Overlay, OverlayError
from .tasks import TaskStatus

BLOCK_TIMEOUT_S = 60.0
WINDOW = 8  # blocks in flight per document (measured: 3 left the stream idle between blocks; docs/performance.md)
PARALLEL_DOCUMENTS = 2
RETRY_S = (2.0, 300.0)


Opened = DocumentMeta | RemoteError  # what opening a document as its hosted recipient found (Statuses.check_open)
Open = Callable[[MessageHeader, Iterator[bytes]], Opened | None]  # None: no hosted recipient, nothing to open


class _Stopped(Exception):
    """The early opening gave up (the fetch failed, or a block went away): the document is opened the usual way."""


class _EarlyOpen:
    """Open a document in a worker thread while its blocks are fetched.

    The thread runs the same opening as after the fetch (``open``, i.e.
    ``Statuses.check_open``) over an iterator that waits for each block to
    be stored and reads it from the store. Its verdict stands for the
    document's only if it finished on its own; if the fetch fails or a block
    is not there, it stops (``_Stopped``) and the document is opened from the
    store once complete, as before.
    """

    POLL_S = 0.2  # how soon a waiting thread notices it was stopped

    def __init__(self, store: Store, h: MessageHeader, present: set[int]) -> None:
        self.store = store
        self.h = h
        self.ready = [threading.Event() for _ in h.body.blocks]
        for i in present:
            self.ready[i].set()
        self.stop = threading.Event()
        self.result: Opened | None = None

    def arrived(self, index: int) -> None:
        self.ready[index].set()

    def _blocks(self) -> Iterator[bytes]:
        for index, digest in enumerate(self.h.body.blocks):
            while not self.ready[index].wait(self.POLL_S):
                if self.stop.is_set():
                    raise _Stopped
            block = None if self.stop.is_set() else self.store.get_block(digest)
            if block is None:
                raise _Stopped
            yield block

    async def run(self, open_: Open) -> None:
        try:
            # Abandoned when cancelled (the node stops): the caller sets ``stop`` and the thread ends within POLL_S.
            self.result = await trio.to_thread.run_sync(  # type: ignore[call-arg]  # stale trio stubs
                lambda: open_(self.h, self._blocks()), abandon_on_cancel=True
            )
        except _Stopped:
            self.result = None


class BlockFetcher(Part):
    def __init__(
        self,
        n: NodeCore,
        overlay: Overlay,
        *,
        complete: Callable[[Digest, Opened | None], Awaitable[None]],
        open_early: Open | None = None,
    ) -> None:
        """``complete`` is called once every block of a document is here (node/inbound.py opens and delivers it),
        with what ``open_early`` found while the blocks arrived, or None (then it opens the document itself)."""
        super().__init__(n)
        self.overlay = overlay
        self.complete = complete
        self.open_early = open_early
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
            early = None
            if missing:
                failed: list[int] = []
                # Only with real worker threads: under simnet's virtual time the opening runs inline, and waiting in
                # it for a block would stop the clock.
                if self.open_early is not None and self.n.offload is run_in_thread:
                    early = _EarlyOpen(self.store, h, set(range(len(h.body.blocks))) - set(missing))
                try:
                    async with trio.open_nursery() as outer:
                        if early is not None:
                            outer.start_soon(early.run, self.open_early)
                        async with trio.open_nursery() as nursery:
                            window = trio.Semaphore(WINDOW)
                            for index in missing:
                                await window.acquire()
                                nursery.start_soon(self._one, doc_id, h, index, window, failed, early)
                        if failed:
                            outer.cancel_scope.cancel()  # abandons the early opening's thread; stopped just below
                finally:
                    if early is not None:
                        early.stop.set()  # whatever ended the fetch, the thread does not wait on
                if failed:
                    self._stalled(doc_id, len(failed))
                    return
            self._stalls.pop(doc_id, None)
            if early is not None and early.result is not None:
                self.metrics.inc("documents_opened_early")
            await self.complete(doc_id, early.result if early is not None else None)
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

    async def _one(
        self,
        doc_id: Digest,
        h: MessageHeader,
        index: int,
        window: trio.Semaphore,
        failed: list[int],
        early: _EarlyOpen | None = None,
    ) -> None:
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
                if early is not None:
                    early.arrived(index)
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
