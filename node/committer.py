"""Group commit: many concurrent writers, one fsync.

Writers call ``await commit(batch)``; the committer takes every batch that
queued while the previous fsync ran and writes them with one
``Store.write(..., sync=True)``. A writer returns only when its batch is
durable, so "accepted" and status 01 are never sent for data a power cut
could lose.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from store.store import Batch, Store

from .tasks import TaskStatus

Offload = Callable[..., Awaitable[Any]]


async def run_inline(fn: Callable[..., Any], *args: Any) -> Any:
    """Offload that runs in the event loop: for virtual time (simnet), where threads would let time jump."""
    return fn(*args)


async def run_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


class GroupCommitter:
    def __init__(self, store: Store, offload: Offload) -> None:
        self.store = store
        self.offload = offload
        self._queue: list[tuple[Batch, trio.Event, list[BaseException], bool]] = []
        self._wake = trio.Event()
        self.commits = 0

    async def commit(self, batch: Batch) -> None:
        """Return once ``batch`` is durable; raises StoreError if the write failed."""
        done = trio.Event()
        errors: list[BaseException] = []
        self._queue.append((batch, done, errors, True))
        self._wake.set()
        await done.wait()
        if errors:
            raise errors[0]

    def enqueue(self, batch: Batch) -> None:
        """Write ``batch`` with the next group, without waiting (bookkeeping that may be lost in a crash).

        Batches are written in the order they were handed in, whether
        committed or enqueued, so a later change never lands under an older one.
        """
        self._queue.append((batch, trio.Event(), [], False))
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            taken, self._queue = self._queue, []
            if not taken:
                continue
            durable = any(d for _, _, _, d in taken)  # a group of bookkeeping only needs no fsync
            try:
                await self.offload(functools.partial(self.store.write, *(b for b, _, _, _ in taken), sync=durable))
            except BaseException as exc:  # hand the failure to every writer, then stop the node
                for _, done, errors, _ in taken:
                    errors.append(exc)
                    done.set()
                raise
            self.commits += 1
            for batch, done, _, _ in taken:
                for callback in batch.after_write:
                    callback()
                done.set()
