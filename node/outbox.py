"""The outbox: every delivery record of what this node's agencies authored, and the only code that writes them.

One record per (sender agency, envelope, recipient agency); its states and
events are the table of ``protocol/delivery.py``. Each event has one method
here: it reads the record's latest value — including a change built into a
batch not written yet — applies the table, and writes the new record into
the caller's batch. Writes reach the store through the group committer in the
order batches were built, so bookkeeping that read a record before a receipt
was built can never overwrite the receipt (the table ignores it).

The outbox knows nothing of the network: the delivery worker
(``node/delivery.py``) waits on :meth:`wait_changed`, takes due records with
:meth:`claim`, and reports each attempt's outcome with :meth:`pushed`,
:meth:`deferred` or :meth:`refused`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import trio

from protocol.agency import AgencyCode
from protocol.config import RetryPolicy
from protocol.delivery import DeliveryEvent, DeliveryKind, DeliveryState, next_state
from protocol.ids import Digest
from store.records import DeliveryRecord
from store.store import Batch, Store

from .log import Log
from .metrics import Metrics

Key = tuple[AgencyCode, bytes, AgencyCode]  # sender, envelope id, recipient
Emit = Callable[..., None]
# How a delivery that the recipient refused for good reads in last_error, the event and the queues.
REFUSED_BY_RECIPIENT = "refused by the recipient: "
REFUSALS_SHOWN_MS = 7 * 86_400_000  # truc queues lists refused deliveries this long after the refusal
MAX_REFUSALS_SHOWN = 10_000  # ... and at most this many (the latest)
E = DeliveryEvent


class Outbox:
    def __init__(
        self,
        store: Store,
        *,
        retry: RetryPolicy,
        random: random.Random,
        log: Log,
        metrics: Metrics,
        emit: Emit,
    ) -> None:
        self.store = store
        self.retry = retry
        self.random = random
        self.log = log
        self.metrics = metrics
        self.emit = emit
        # Records changed in batches not yet written; every read goes through it.
        self._unwritten: dict[Key, DeliveryRecord] = {}
        # Deliveries the recipient refused for good, recently: key -> when (the outbox has no index of failed
        # records; the queues view shows these). Filled at start by :meth:`note_refusal` during the start scan.
        self.refusals: dict[Key, int] = {}
        self._changed = trio.Event()

    # --- reading ----------------------------------------------------------------------

    def get(self, sender: AgencyCode, env_id: bytes, recipient: AgencyCode) -> DeliveryRecord | None:
        """The latest record, including a change not yet written."""
        pending = self._unwritten.get((sender, bytes(env_id), recipient))
        return pending if pending is not None else self.store.delivery(sender, env_id, recipient)

    def unwritten(self, sender: AgencyCode, env_id: bytes, recipient: AgencyCode) -> bool:
        """Whether a change to this record waits in a batch not yet written."""
        return (sender, bytes(env_id), recipient) in self._unwritten

    async def wait_changed(self) -> None:
        """Return when a record became pending or moved (the delivery worker's wake-up)."""
        await self._changed.wait()
        self._changed = trio.Event()

    def kick(self) -> None:
        self._changed.set()

    # --- writing ----------------------------------------------------------------------

    def _apply(
        self, b: Batch, key: Key, event: DeliveryEvent, old: DeliveryRecord | None, **fields: Any
    ) -> DeliveryRecord | None:
        """Apply ``event`` to ``old`` (None: NEW) per the table; write and return the new record, or None if ignored."""
        state = next_state(old.state if old is not None else DeliveryState.NEW, event)
        if state is None:
            return None
        new = DeliveryRecord(state=state, **fields) if old is None else dataclasses.replace(old, state=state, **fields)
        sender, env_id, recipient = key
        b.put_delivery(sender, env_id, recipient, new, old)
        self._unwritten[key] = new

        def written() -> None:
            if self._unwritten.get(key) is new:
                del self._unwritten[key]
            if new.state is DeliveryState.PENDING:
                self.kick()  # whoever wrote it, the worker sees the new schedule

        b.after_write.append(written)
        return new

    def _event(self, b: Batch, key: Key, event: DeliveryEvent, **fields: Any) -> DeliveryRecord | None:
        return self._apply(b, key, event, self.get(*key), **fields)

    # --- one method per event -----------------------------------------------------------

    def queued(self, b: Batch, key: Key, kind: DeliveryKind, now: int) -> None:
        """Authored here for a recipient on another node: deliver it from now on."""
        self._apply(b, key, E.QUEUED, None, kind=kind, next_at=now, first_at=now)

    def delivered_here(self, b: Batch, key: Key, kind: DeliveryKind, now: int, *, receipt: bytes = b"") -> None:
        """Authored here for a recipient hosted here too: delivered in the same commit."""
        self._apply(b, key, E.DELIVERED_HERE, None, kind=kind, first_at=now, delivered_at=now, receipt=receipt)

    def failed_here(self, b: Batch, key: Key, kind: DeliveryKind, now: int, *, reason: str) -> None:
        """Authored here for a recipient hosted here that could not open it."""
        self._apply(b, key, E.FAILED_HERE, None, kind=kind, first_at=now, delivered_at=now, last_error=reason)

    def claim(self, b: Batch, key: Key, rec: DeliveryRecord, now: int, *, error: str = "") -> DeliveryRecord | None:
        """An attempt starts: rescheduled as if it will fail (a crash then simply retries it)."""
        extra = {"last_error": error} if error else {}
        return self._apply(
            b,
            key,
            E.CLAIMED,
            rec,
            attempts=rec.attempts + 1,
            failures=rec.failures + 1,
            last_at=now,
            next_at=now + self.backoff_ms(rec.failures),
            **extra,
        )

    def pushed(self, b: Batch, key: Key, now: int, *, receipt_wait_ms: int) -> DeliveryRecord | None:
        """The recipient's node stored it: a status is delivered; a document now waits for its 01."""
        cur = self.get(*key)
        if cur is not None and cur.kind is DeliveryKind.STATUS:
            return self._apply(b, key, E.ACKED, cur, delivered_at=now, failures=0, last_error="")
        return self._apply(b, key, E.PUSHED, cur, failures=0, last_error="", next_at=now + receipt_wait_ms)

    def deferred(self, b: Batch, key: Key, error: str) -> DeliveryRecord | None:
        """The attempt did not get through; it stays scheduled as claimed, with the reason."""
        return self._event(b, key, E.DEFERRED, last_error=error)

    def refused(self, b: Batch, key: Key, reason: str, now: int) -> bool:
        """The recipient refused it for good: failed with its reason, never retried. Returns whether it was pending."""
        failed = self._event(b, key, E.REFUSED, last_error=REFUSED_BY_RECIPIENT + reason, last_at=now)
        if failed is None:
            return False
        self.metrics.inc("deliveries_failed")
        self.metrics.inc("deliveries_refused")

        def tell() -> None:
            self.note_refusal(key, now)
            self._tell_failed(key, failed.last_error)

        b.after_write.append(tell)
        return True

    def _tell_failed(self, key: Key, reason: str) -> None:
        sender, env_id, recipient = key
        self.log.warning("delivery.failed", id=Digest(env_id).short(), recipient=str(recipient), reason=reason[:300])
        self.emit("delivery.failed", id=str(Digest(env_id)), sender=str(sender), recipient=str(recipient), reason=reason)

    def receipted(self, b: Batch, key: Key, receipt: bytes, now: int) -> bool:
        """The recipient's signed 01 arrived; returns whether this changed the record."""
        return self._event(b, key, E.RECEIPTED, delivered_at=now, receipt=bytes(receipt), last_error="") is not None

    def gave_up(self, b: Batch, key: Key, rec: DeliveryRecord) -> None:
        failed = self._apply(
            b, key, E.GAVE_UP, rec, last_error=f"gave up after {self.retry.give_up_days:g} days: {rec.last_error or 'no receipt'}"
        )
        assert failed is not None
        self.metrics.inc("deliveries_failed")
        self._tell_failed(key, failed.last_error)

    def retry_now(self, b: Batch, key: Key, now: int) -> None:
        """The recipient's node is reachable again: a delivery waiting out its backoff is due now."""
        cur = self.get(*key)
        if cur is not None and cur.state is DeliveryState.PENDING and cur.failures and cur.next_at > now:
            self._apply(b, key, E.RETRY_NOW, cur, next_at=now, failures=0)

    def reissued(self, b: Batch, key: Key, rec: DeliveryRecord, reason: str) -> None:
        """Signed with a key that is no longer current: failed, with the reason (a status is sealed again by the caller)."""
        self._apply(b, key, E.REISSUED, rec, last_error=reason)
        if rec.kind is DeliveryKind.DOCUMENT:
            sender, env_id, recipient = key
            self.emit("delivery.failed", id=str(Digest(env_id)), sender=str(sender), recipient=str(recipient), reason=reason)

    def reopened(self, b: Batch, key: Key, rec: DeliveryRecord, now: int) -> None:
        """The sender pushed a document we hold and receipted: its 01 is lost there, so it travels again."""
        self._apply(b, key, E.REOPENED, rec, next_at=now, failures=0)

    # --- helpers ----------------------------------------------------------------------

    def backoff_ms(self, failures: int) -> int:
        p = self.retry
        base = min(p.cap_s, p.initial_s * 2 ** min(failures, 40))
        jitter = base * p.jitter * (2 * self.random.random() - 1)
        return max(1, int((base + jitter) * 1000))

    def note_refusal(self, key: Key, at: int) -> None:
        self.refusals[key] = at
        if len(self.refusals) > MAX_REFUSALS_SHOWN:  # a flood of refusals must not grow it forever
            del self.refusals[min(self.refusals, key=self.refusals.__getitem__)]
