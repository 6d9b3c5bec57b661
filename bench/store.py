"""What the store's integrity checks cost, and what keeping blocks as files (format 4) saves.

    python -m bench.store [--seconds S] [--envelopes N]

The store (store/store.py) opens LevelDB with ``paranoid_checks=True``,
reads with ``verify_checksums=True`` and scans with raw iterators (plyvel's
plain iterator ends quietly at a table it cannot read). Each row measures one
operation both ways on the same database in the same run: the baseline is
the same call without the check (what the store did before). Reads are
random over a store several times larger than LevelDB's 8 MiB block cache,
so most of them read (and, with the check, checksum) a block from the file:
the check's worst case. The OS page cache still holds the files; a cold disk
would make both sides slower by the same I/O.

Blocks: 100 sealed 1 MiB blocks written the way a document's arrive (one
write each, then one durable commit), as files (``Store``, format 4) and as
LevelDB values (formats 1-3), alternating; wall time, and the process's CPU
time until LevelDB's background compactions are over, and the bytes each
wrote (``/proc/self/io``).

Bloom filter: ``Store.known`` for ids the store does not have (what a sync
page mostly lists), as shipped against the same tables opened without a
filter policy.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import plyvel

from bench.common import cpu_seconds, rate, report
from protocol.ids import Digest
from store import keys as k
from store.store import Store

ENVELOPE_BYTES = 1500  # a typical small document or status envelope
BLOCK_BYTES = 1 << 20
BLOCKS = 48
BATCH = 100


def populate(path: Path, envelopes: int) -> tuple[list[bytes], list[bytes]]:
    """A store with ``envelopes`` envelopes, their sync log entries and BLOCKS blocks, all in table files."""
    env_keys, block_keys = [], []
    with Store(path) as s:
        for start in range(0, envelopes, 5000):
            b = s.batch()
            for i in range(start, min(start + 5000, envelopes)):
                eid = Digest.of(i.to_bytes(8, "big"))
                b.put_envelope(eid, os.urandom(ENVELOPE_BYTES))
                b.append_log("H01", eid)
                env_keys.append(k.ENVELOPE + eid)
            s.write(b, sync=False)
        for _ in range(BLOCKS):  # as formats 1-3 kept them (the LevelDB rows); Store keeps them as files now
            block = os.urandom(BLOCK_BYTES)
            s._db.put(k.BLOCK + Digest.of(block), block)
            block_keys.append(k.BLOCK + Digest.of(block))
        s._db.compact_range()
    return env_keys, block_keys


def _written() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


def write_blocks(path: Path, blocks: list[bytes], as_files: bool) -> tuple[float, float, int]:
    """(wall s, CPU s, bytes written) to store ``blocks`` one write each, then commit durably; a new store each time."""
    shutil.rmtree(path, ignore_errors=True)
    with Store(path) as s:
        cpu, wrote, start = cpu_seconds(), _written(), time.perf_counter()
        for block in blocks:
            h = Digest.of(block)
            if as_files:
                b = s.batch()
                b.put_block(h, block)
                s.write(b, sync=False)
            else:
                s._db.put(k.BLOCK + h, block)  # what Batch.put_block did in formats 1-3
        s.write(s.batch(), sync=True)
        wall = time.perf_counter() - start
        if not as_files:
            while s._db.get_property(b"leveldb.num-files-at-level0") not in (b"0", None):
                time.sleep(0.01)  # its compactions run in a background thread of this process: count their CPU
            time.sleep(0.5)
        return wall, cpu_seconds() - cpu, _written() - wrote


def alternate(a: Callable[[], float], b: Callable[[], float], rounds: int = 3) -> tuple[float, float]:
    """Measure ``a`` and ``b`` in turns and keep each one's best: machine noise hits both sides alike."""
    best_a = best_b = 0.0
    for _ in range(rounds):
        best_a = max(best_a, a())
        best_b = max(best_b, b())
    return best_a, best_b


def open_seconds(path: Path, paranoid: bool, times: int = 5) -> float:
    start = time.perf_counter()
    for _ in range(times):
        plyvel.DB(str(path), paranoid_checks=paranoid).close()
    return (time.perf_counter() - start) / times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement (each is taken 3 times)")
    ap.add_argument("--envelopes", type=int, default=60_000, help="envelopes in the test store (1.5 KiB each)")
    args = ap.parse_args()
    t = args.seconds
    rnd = random.Random(1)
    rows = []

    def row(operation: str, checked: float, unchecked: float, unit: str = "/s") -> None:
        rows.append(
            {
                "operation": operation,
                "with check": f"{checked:,.0f} {unit}" if unit == "/s" else f"{checked * 1000:.1f} ms",
                "without (baseline)": f"{unchecked:,.0f} {unit}" if unit == "/s" else f"{unchecked * 1000:.1f} ms",
                "ratio": checked / unchecked if unit == "/s" else unchecked / checked,
            }
        )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"
        env_keys, block_keys = populate(path, args.envelopes)
        size = sum(p.stat().st_size for p in path.iterdir())
        print(f"store: {args.envelopes:,} envelopes + {BLOCKS} blocks of 1 MiB, {size / 2**20:.0f} MiB on disk")

        row("open the store (paranoid_checks)", open_seconds(path, True), open_seconds(path, False), unit="s")

        with Store(path) as s:  # as shipped: paranoid_checks, checksummed reads, raw iterators
            db = s._db
            for _ in db.iterator():  # warm: map every table and read it once, so neither side pays the first touch
                pass

            def read_envelope(verify: bool) -> float:
                return rate(lambda: db.get(rnd.choice(env_keys), verify_checksums=verify), min_seconds=t)

            def read_block(verify: bool) -> float:
                return rate(lambda: db.get(rnd.choice(block_keys), verify_checksums=verify), min_seconds=t)

            file_keys = []
            for key in block_keys:
                b = s.batch()
                b.put_block(key[1:], db.get(key))
                s.write(b, sync=False)
                file_keys.append(key[1:])

            def plain_scan() -> None:  # what Store._scan did before: plain iterator, no checksums
                for _ in db.iterator(prefix=k.LOG):
                    pass

            def store_scan() -> None:
                for _ in s._scan(k.LOG):
                    pass

            env_on, env_off = alternate(lambda: read_envelope(True), lambda: read_envelope(False))
            blk_on, blk_off = alternate(lambda: read_block(True), lambda: read_block(False))
            scan_on, scan_off = alternate(
                lambda: rate(store_scan, min_seconds=t, per_call=args.envelopes),
                lambda: rate(plain_scan, min_seconds=t, per_call=args.envelopes),
            )
            shipped, _ = alternate(lambda: rate(lambda: s.get_envelope(rnd.choice(env_keys)[1:]), min_seconds=t), lambda: 0.0)
            file_read, _ = alternate(lambda: rate(lambda: s.get_block(rnd.choice(file_keys)), min_seconds=t), lambda: 0.0)
            absent = [os.urandom(32) for _ in range(4096)]
            known_on, _ = alternate(lambda: rate(lambda: s.known(rnd.choice(absent)), min_seconds=t), lambda: 0.0)
        with plyvel.DB(str(path), paranoid_checks=True, max_open_files=256) as plain:  # same tables, no filter policy
            for _ in plain.iterator():
                pass

            def known_unfiltered() -> None:  # what Store.known did before: two gets that read a block each
                eid = rnd.choice(absent)
                plain.get(k.ENVELOPE + eid, verify_checksums=True)
                plain.get(k.TOMBSTONE + eid, verify_checksums=True)

            _, known_off = alternate(lambda: 0.0, lambda: rate(known_unfiltered, min_seconds=t))
        row("random read of a 1.5 KiB envelope (verify_checksums)", env_on, env_off)
        row("random read of a 1 MiB value in LevelDB (verify_checksums; blocks were so in formats 1-3)", blk_on, blk_off)
        row("random read of a 1 MiB block file (Store.get_block, format 4) vs LevelDB checked", file_read, blk_on)
        row("scan of the sync log (Store._scan: raw iterator + checksums)", scan_on, scan_off)
        row("random envelope read through Store.get_envelope (as shipped)", shipped, env_off)
        row("Store.known of an absent id (Bloom filter, 10 bits/key) vs the same tables unfiltered", known_on, known_off)

        counter = iter(range(1 << 62))
        commit = {}
        for paranoid in (True, False):
            db = plyvel.DB(str(Path(tmp) / f"commit-{paranoid}"), create_if_missing=True, paranoid_checks=paranoid)
            payload = os.urandom(16 << 10)

            def durable_commit(db: plyvel.DB = db, payload: bytes = payload) -> None:
                with db.write_batch(transaction=True, sync=True) as wb:
                    for _ in range(BATCH):
                        i = next(counter).to_bytes(8, "big")
                        wb.put(b"E" + i * 4, payload)
                        wb.put(b"L" + i, i * 4)

            commit[paranoid] = rate(durable_commit, min_seconds=t, per_call=BATCH)
            db.close()
        row(f"durable commit, {BATCH} x 16 KiB envelopes per fsync (paranoid_checks)", commit[True], commit[False])

        blocks = [os.urandom(BLOCK_BYTES) for _ in range(100)]
        runs: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
        for _ in range(3):
            for as_files in (True, False):
                runs[as_files].append(write_blocks(Path(tmp) / "blocks-bench", blocks, as_files))
        for i, what in enumerate(("wall", "CPU incl. compactions")):
            files, leveldb = min(r[i] for r in runs[True]), min(r[i] for r in runs[False])
            rows.append(
                {
                    "operation": f"100 x 1 MiB blocks, one write each + durable commit: {what}",
                    "with check": f"files {files * 1000:.0f} ms",
                    "without (baseline)": f"LevelDB {leveldb * 1000:.0f} ms",
                    "ratio": leveldb / files,
                }
            )
        files_w, leveldb_w = min(r[2] for r in runs[True]), min(r[2] for r in runs[False])
        rows.append(
            {
                "operation": "100 x 1 MiB blocks: bytes written (wchar)",
                "with check": f"files {files_w >> 20} MiB",
                "without (baseline)": f"LevelDB {leveldb_w >> 20} MiB",
                "ratio": leveldb_w / files_w,
            }
        )
    report("store", rows)


if __name__ == "__main__":
    main()
