"""The outbox (node/outbox.py) over a real store, synchronously: batches built, then written in build order.

The committer writes batches in the order they were built; these tests play
that order by hand, with no event loop, network or clock.
"""

from __future__ import annotations

import random
from pathlib import Path

from node.log import NullLog
from node.metrics import Metrics
from node.outbox import REFUSED_BY_RECIPIENT, Outbox
from protocol.agency import AgencyCode
from protocol.config import RetryPolicy
from protocol.delivery import DeliveryKind, DeliveryState
from store.store import Batch, Store

G22, H01 = AgencyCode.parse("G22"), AgencyCode.parse("H01")
DOC = bytes(range(32))
KEY = (G22, DOC, H01)
RECEIPT = bytes(32 * [7])


def outbox(tmp_path: Path) -> tuple[Store, Outbox, list[tuple[str, dict[str, object]]]]:
    store = Store(tmp_path / "store")
    events: list[tuple[str, dict[str, object]]] = []
    box = Outbox(
        store,
        retry=RetryPolicy(),
        random=random.Random(1),
        log=NullLog(),
        metrics=Metrics(),
        emit=lambda kind, **fields: events.append((kind, fields)),
    )
    return store, box, events


def write(store: Store, *batches: Batch) -> None:
    """What the committer does: write in build order, then run each batch's after-write actions."""
    store.write(*batches, sync=False)
    for b in batches:
        for action in b.after_write:
            action()


def queued_and_claimed(store: Store, box: Outbox) -> None:
    b = store.batch()
    box.queued(b, KEY, DeliveryKind.DOCUMENT, 1000)
    write(store, b)
    rec = box.get(*KEY)
    assert rec is not None
    b = store.batch()
    box.claim(b, KEY, rec, 1000)
    write(store, b)


def test_a_receipt_built_before_the_pushs_bookkeeping_is_not_overwritten(tmp_path: Path) -> None:
    store, box, _ = outbox(tmp_path)
    queued_and_claimed(store, box)
    receipt = store.batch()
    assert box.receipted(receipt, KEY, RECEIPT, 2000)
    bookkeeping = store.batch()  # the push's answer, read after the receipt was built but before it was written
    assert box.pushed(bookkeeping, KEY, 2001, receipt_wait_ms=600_000) is None
    write(store, receipt, bookkeeping)
    final = store.delivery(*KEY)
    assert final is not None and final.state is DeliveryState.DELIVERED and final.receipt == RECEIPT
    assert not box.unwritten(*KEY)


def test_a_push_then_its_receipt_end_delivered_whichever_is_written_first(tmp_path: Path) -> None:
    store, box, _ = outbox(tmp_path)
    queued_and_claimed(store, box)
    pushed = store.batch()
    assert box.pushed(pushed, KEY, 2000, receipt_wait_ms=600_000) is not None
    receipt = store.batch()
    assert box.receipted(receipt, KEY, RECEIPT, 2001)
    write(store, pushed, receipt)
    final = store.delivery(*KEY)
    assert final is not None and final.state is DeliveryState.DELIVERED
    assert [d for _, d, _ in store.pending(H01)] == []  # and out of the pending index


def test_a_refusal_fails_for_good_and_says_so_once_written(tmp_path: Path) -> None:
    store, box, events = outbox(tmp_path)
    queued_and_claimed(store, box)
    b = store.batch()
    assert box.refused(b, KEY, "bad_schema: no", 2000)
    assert events == []  # told once durable, not before
    write(store, b)
    final = store.delivery(*KEY)
    assert (
        final is not None and final.state is DeliveryState.FAILED and final.last_error == REFUSED_BY_RECIPIENT + "bad_schema: no"
    )
    assert [k for k, _ in events] == ["delivery.failed"] and events[0][1]["sender"] == str(G22)
    late = store.batch()
    assert not box.refused(late, KEY, "again", 2001)  # nothing more to refuse
    assert box.deferred(late, KEY, "no answer") is None


def test_a_receipt_after_giving_up_is_still_a_receipt(tmp_path: Path) -> None:
    store, box, _ = outbox(tmp_path)
    queued_and_claimed(store, box)
    rec = box.get(*KEY)
    assert rec is not None
    b = store.batch()
    box.gave_up(b, KEY, rec)
    write(store, b)
    b = store.batch()
    assert box.receipted(b, KEY, RECEIPT, 9000)
    write(store, b)
    final = store.delivery(*KEY)
    assert final is not None and final.state is DeliveryState.DELIVERED


def test_a_claim_backs_off_and_seeing_the_peer_resets_it(tmp_path: Path) -> None:
    store, box, _ = outbox(tmp_path)
    queued_and_claimed(store, box)
    claimed = box.get(*KEY)
    assert claimed is not None and claimed.attempts == 1 and claimed.failures == 1 and claimed.next_at > 1000
    b = store.batch()
    box.retry_now(b, KEY, 1500)
    write(store, b)
    now_due = box.get(*KEY)
    assert now_due is not None and now_due.next_at == 1500 and now_due.failures == 0
    assert [d for _, d, _, _ in store.due(1500)] == [DOC]
