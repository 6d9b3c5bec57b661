"""Writer process for test_crash.py: documents made the way a submit makes them.

Usage: python -m tests.store.seal_writer DB_PATH START
Round ``n`` writes six blocks through ``InflightBlocks`` (two per write, not
synced, as sealing does), then commits its "document" (an envelope key
listing the block hashes) with the marks settled, synced, and prints ``n``.
Every third round fails before its commit and discards its blocks instead.
"""

from __future__ import annotations

import os
import sys

from protocol.ids import Digest
from store import keys as k
from store.store import Store


def round_id(n: int) -> Digest:
    return Digest.of(b"sealed" + n.to_bytes(8, "big"))


def main() -> None:
    store = Store(sys.argv[1])
    n = int(sys.argv[2])
    while True:
        blocks = store.inflight_blocks(2)
        for _ in range(6):
            block = os.urandom(48 << 10)
            blocks.put(Digest.of(block), block)
        if n % 3 == 2:
            blocks.discard()
        else:
            b = store.batch()
            b.put(k.ENVELOPE + round_id(n), b"".join(blocks.hashes))
            blocks.settle(b)
            store.write(b, sync=True)
            sys.stdout.write(f"{n}\n")
            sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    main()
