"""Writer process for test_crash.py: multi-key batches, each reported once durable.

Usage: python -m tests.store.crash_writer DB_PATH START
Each round ``n`` writes, in ONE batch: an envelope, a document record, an
inbox entry, a sync log entry and an outbox record (five keyspaces). After
``write(sync=True)`` returns it prints ``n`` on stdout: from then on the
round must survive anything.
"""

from __future__ import annotations

import sys

from protocol.agency import AgencyCode
from protocol.ids import Digest
from store.records import DeliveryKind, DeliveryRecord, DeliveryState, DocRecord, DocRole, InboxEntry
from store.store import Store

H01, G22 = AgencyCode.parse("H01"), AgencyCode.parse("G22")


def round_id(n: int) -> Digest:
    return Digest.of(b"round" + n.to_bytes(8, "big"))


def main() -> None:
    store = Store(sys.argv[1])
    n = int(sys.argv[2])
    while True:
        rid = round_id(n)
        b = store.batch()
        b.put_envelope(rid, n.to_bytes(8, "big") * 64)
        b.put_doc(rid, DocRecord(DocRole.RECEIVED, str(G22), (str(H01),), n, n, 512, 1, True))
        b.add_inbox(H01, InboxEntry(rid, str(G22), n))
        b.append_log("H01", rid)
        b.put_delivery(G22, rid, H01, DeliveryRecord(DeliveryKind.DOCUMENT, DeliveryState.PENDING, next_at=n), None)
        store.write(b, sync=True)
        sys.stdout.write(f"{n}\n")
        sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    main()
