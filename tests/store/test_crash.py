"""SIGKILL a process writing to the store at random points, many times.

What a kill -9 can and cannot show: the kernel keeps the page cache of a
killed process, so this test proves atomicity of batches and that nothing
reported durable is lost to a *process* crash (LevelDB log replay). Power
loss is covered by ``sync=True`` (fsync), which this test exercises but a
kill cannot prove; see docs/storage.md.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol.agency import AgencyCode
from store import keys as k
from store.store import Store
from tests.store.crash_writer import round_id
from tests.store.seal_writer import round_id as sealed_id

ROOT = Path(__file__).resolve().parents[2]
H01, G22 = AgencyCode.parse("H01"), AgencyCode.parse("G22")
ROUNDS = 25


def presence(store: Store):  # type: ignore[no-untyped-def]
    logged = {i for _, i in store.log_range("H01", after=0, limit=1 << 30)}

    def present(n: int) -> list[bool]:
        rid = round_id(n)
        return [
            store.has_envelope(rid),
            store.doc(rid) is not None,
            store.inbox_entry(H01, rid) is not None,
            rid in logged,
            store.delivery(G22, rid, H01) is not None,
        ]

    return present


def killed_after(writer: str, db: Path, start: int, seconds: float) -> list[int]:
    """Run writer module ``writer`` on ``db`` from round ``start``, SIGKILL it after ``seconds``; the rounds it reported."""
    proc = subprocess.Popen(
        [sys.executable, "-m", writer, str(db), str(start)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        time.sleep(seconds)  # interpreter start-up is ~0.1 s; kill mid-run
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    return [int(line) for line in out.decode().split()]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_loses_nothing_reported_durable_and_batches_are_all_or_nothing(tmp_path: Path) -> None:
    rnd = random.Random(20261122)
    db = tmp_path / "db"
    next_round = 0
    kills = 0
    for _ in range(ROUNDS):
        reported = killed_after("tests.store.crash_writer", db, next_round, rnd.uniform(0.12, 0.35))
        kills += 1
        with Store(db) as store:
            present = presence(store)
            # Every round either fully present or fully absent.
            for n in range(next_round, (reported[-1] if reported else next_round) + 3):
                flags = present(n)
                assert all(flags) or not any(flags), f"round {n} is half-written: {flags}"
            # Everything reported durable is there.
            for n in reported:
                assert all(present(n)), f"round {n} was reported durable and is missing"
            # The round in flight may have landed; continue after whatever is there.
            n = reported[-1] + 1 if reported else next_round
            while all(present(n)):
                n += 1
            next_round = n
    assert kills == ROUNDS and next_round > ROUNDS, f"the writer made too little progress ({next_round} rounds)"
    with Store(db) as store:
        inbox = store.inbox(H01, limit=1 << 30)
        assert [e.id for _, e in inbox] == [round_id(i) for i in range(next_round)], "inbox lost or reordered entries"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_while_blocks_are_written_leaves_only_blocks_of_committed_documents(tmp_path: Path) -> None:
    """Blocks written ahead of their document (sealing) never outlive a crash without it."""
    rnd = random.Random(20261201)
    db = tmp_path / "db"
    committed: dict[int, list[bytes]] = {}
    for run in range(ROUNDS):
        start = run * 1_000_000  # each writer its own round numbers: a round cut before its report is never redone
        reported = killed_after("tests.store.seal_writer", db, start, rnd.uniform(0.15, 0.4))
        with Store(db) as store:  # opening sweeps what the kill left in flight
            assert not list(store._scan(k.INFLIGHT)), "marks survived the open"
            lists = {key[1:]: [v[i : i + 32] for i in range(0, len(v), 32)] for key, v in store._scan(k.ENVELOPE)}
            listed = {h for hashes in lists.values() for h in hashes}
            stored = {h for h, _ in store.blocks.scan()}
            assert not store.blocks.strays(), "half-written block files survived the open"
            assert stored <= listed, f"{len(stored - listed)} blocks of uncommitted documents survived"
            assert stored == listed, "a committed document lost blocks"
            for n in reported:
                assert bytes(sealed_id(n)) in lists, f"round {n} was reported durable and is missing"
                committed[n] = lists[bytes(sealed_id(n))]
    assert len(committed) > ROUNDS, f"the writer made too little progress ({len(committed)} documents)"
