"""Upkeep: relays forget what every recipient has receipted; a loud line while the directory is expired.

Hourly (every minute while the directory is expired): relayed documents
whose every recipient's 01 is older than ``relay.keep_after_receipt_h``
(or that are past the age window) are dropped with their blocks, leaving a
tombstone so a late copy stays a duplicate; parked statuses past the age
window are dropped (node/inbound.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from protocol.status import StatusCode
from store.records import DocRole

from .core import NodeCore


class Retention:
    def __init__(self, n: NodeCore, *, expire_parked: Callable[[int], Awaitable[int]]) -> None:
        self.n = n
        self.expire_parked = expire_parked

    async def run(self) -> None:
        n = self.n
        while True:
            now = n.clock()
            directory = n.trust.directory
            if now > directory.valid_until:
                n.log.error(
                    "directory.expired",
                    serial=directory.serial,
                    expired_s_ago=(now - directory.valid_until) // 1000,
                    fix="ask the network authority for a newer directory",
                )
            await n.offload(self.sweep, now)
            await self.expire_parked(now)
            await trio.sleep(3600 if now <= directory.valid_until else 60)

    def sweep(self, now: int) -> int:
        """Drop relayed documents (and their blocks) once every recipient's 01 is older than the keep window."""
        n = self.n
        store = n.store
        keep_ms = int(n.config.keep_after_receipt_h * 3_600_000)
        max_age = n.trust.policy.max_age_ms
        b = store.batch()
        dropped = 0
        for doc_id, rec in store.docs():
            if rec.role is not DocRole.RELAYED:
                continue
            receipts = {r.author: r.received_at for _, _, r in store.history(doc_id) if r.code == StatusCode.ARRIVED}
            all_in = all(c in receipts for c in rec.to)
            old_enough = all_in and max(receipts.values(), default=now) + keep_ms <= now
            if old_enough or rec.received_at + max_age < now:
                h = n.doc_header(doc_id)
                if h is not None and not h.body.inline:
                    for digest in h.body.blocks:
                        b.delete_block(digest)
                b.drop_envelope(doc_id, now)
                b.delete_doc(doc_id)
                b.set_awaiting(doc_id, False)
                dropped += 1
        if dropped:
            store.write(b, sync=True)
            n.metrics.inc("relay_documents_dropped", dropped)
            n.log.info("retention.dropped", documents=dropped)
        return dropped
