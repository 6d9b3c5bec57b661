"""Blocks written for a document that never commits do not stay in the store (issue 10, item 3).

A submit writes the blocks of a large document as it seals them, before the
document itself is committed. If the submit fails half-way (a file changed
under it, a read error) or the node dies mid-seal, those blocks belong to
nothing. Likewise blocks a relay fetches for a document that retention drops
meanwhile. Each test counts blocks no stored document lists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import trio

import node.fetcher
from identity.sealing import FileSource
from node import views
from protocol.errors import HashMismatchError
from simnet.cluster import wait_until
from tests.node.helpers import G22, H01, C, cluster, meta, run_virtual
from tests.procs import ROOT, provision, running
from tests.store.blocks import orphan_blocks, orphans_at

BLOCK = 1 << 20


class _FailingReader(io.BytesIO):
    def __init__(self, data: bytes, after: int) -> None:
        super().__init__(data)
        self.after = after

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.after:
            raise OSError(5, "Input/output error")
        return super().read(size)


@dataclass(frozen=True)
class FlakyFile(FileSource):
    """Reads fine the first time (hashing); the second time (sealing) it has changed, or fails."""

    how: str = "changed"
    opens: list[int] = field(default_factory=list)

    def open(self) -> BinaryIO:
        assert self.data is not None
        self.opens.append(1)
        if len(self.opens) == 1:
            return io.BytesIO(self.data)
        if self.how == "changed":
            return io.BytesIO(self.data[:-1] + bytes([self.data[-1] ^ 1]))
        return _FailingReader(self.data, after=5 * BLOCK)


@pytest.mark.parametrize("how", ["changed", "read_error"])
def test_a_submit_that_fails_half_way_leaves_no_blocks(tmp_path: Path, how: str) -> None:
    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]})

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g = c.node("g22").e()
            flaky = FlakyFile("bao-cao.bin", "application/octet-stream", data=os.urandom(8 * BLOCK), how=how)
            with pytest.raises(HashMismatchError if how == "changed" else OSError):
                await g.submit(C(G22), [C(H01)], meta(), [flaky])
            assert len(flaky.opens) == 2, "the failure must come from the sealing pass"
            assert not orphan_blocks(g.store), "blocks of the failed submit are still in the store"
            # The node still works, and its next document's blocks are all referenced.
            ok = await g.submit(C(G22), [C(H01)], meta(), [FileSource("a.bin", "x/y", data=os.urandom(3 * BLOCK))])
            assert g.store.doc(ok) is not None and not orphan_blocks(g.store)
            n.cancel_scope.cancel()

    run_virtual(main)


def test_a_client_file_changed_after_it_was_hashed_is_refused_and_leaves_no_blocks(tmp_path: Path) -> None:
    """A file named by path is hashed once and sealed through the same descriptor (no spool copy): a client that
    rewrites it in between gets hash_mismatch, and nothing of it is stored."""
    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]})
    path = tmp_path / "cong-van.bin"
    data = os.urandom(6 * BLOCK + 123)
    path.write_bytes(data)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g = c.node("g22").e()
            fd = os.open(path, os.O_RDONLY)
            try:
                size, sha256 = os.fstat(fd).st_size, hashlib.sha256(data).digest()  # what the hashing pass found
                with open(path, "r+b") as f:  # the client rewrites one byte before sealing reads it
                    f.seek(4 * BLOCK)
                    f.write(bytes([data[4 * BLOCK] ^ 1]))
                source = FileSource("cong-van.bin", "application/octet-stream", fd=fd, size=size, sha256=sha256)
                with pytest.raises(HashMismatchError, match="changed while it was being sent"):
                    await g.submit(C(G22), [C(H01)], meta(), [source])
                assert not orphan_blocks(g.store), "blocks of the refused file are still in the store"
                path.write_bytes(data)  # put back: the same descriptor now seals, from its start
                doc = await g.submit(C(G22), [C(H01)], meta(), [source])
                assert g.store.doc(doc) is not None and not orphan_blocks(g.store)
            finally:
                os.close(fd)
            n.cancel_scope.cancel()

    run_virtual(main)


def test_blocks_fetched_for_a_document_retention_dropped_are_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relay that fetches blocks keeps none of a document it dropped while they were on their way."""
    monkeypatch.setattr(node.fetcher, "WINDOW", 3)  # fewer blocks in flight than the document has: it stops midway
    c = cluster(tmp_path, config=lambda cfg: dataclasses.replace(cfg, fetch_relayed_blocks=True))

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g = c.node("g22").e()
            doc = await g.submit(C(G22), [C(H01)], meta(), [FileSource("a.bin", "x/y", data=os.urandom(12 * BLOCK))])
            relay = c.node("relay").e()
            await wait_until(lambda: 0 < views.block_progress(relay, doc)[0] < 6, timeout=120, step=0.001)
            assert relay.retention.sweep(c.clock() + relay.trust.policy.max_age_ms + 1) == 1
            assert not relay.store.has_envelope(doc)
            await trio.sleep(600)  # whatever was on its way has arrived or given up
            assert not relay.store._db.get(b"D" + bytes(doc))
            assert not orphan_blocks(relay.store), "blocks of the dropped document were written after the drop"
            n.cancel_scope.cancel()

    run_virtual(main)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_node_killed_while_sealing_keeps_no_blocks_after_restart(tmp_path: Path) -> None:
    """SIGKILL in the middle of sealing a large document: after a restart its blocks are gone."""
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    big = tmp_path / "ho-so.bin"
    with open(big, "wb") as f:
        for _ in range(160):
            f.write(os.urandom(BLOCK))
    store = homes["g22"] / "store"

    def written() -> int:  # LevelDB's files and the block files
        total = 0
        for p in [*store.iterdir(), *((store / "blocks").iterdir() if (store / "blocks").is_dir() else ())]:
            if p.suffix in (".log", ".ldb") or len(p.name) == 64:
                try:
                    total += p.stat().st_size
                except FileNotFoundError:  # a compaction removed it between the listing and the stat
                    pass
        return total

    with running({"g22": homes["g22"]}) as nodes:
        g22 = nodes["g22"]
        base = written()
        send = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "send",
                "--home",
                str(homes["g22"]),
                "--from",
                G22,
                "--to",
                H01,
                "--subject",
                "Hồ sơ",
                str(big),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 60
            while written() - base < 24 * BLOCK and time.monotonic() < deadline and send.poll() is None:
                time.sleep(0.01)
            assert send.poll() is None, f"the submit finished before the kill; the test proves nothing: {send.communicate()}"
            assert written() - base >= 24 * BLOCK, "the node wrote no blocks within 60 s"
            g22.kill()
        finally:
            send.kill()
            send.communicate(timeout=30)
        left, _ = orphans_at(store)
        assert left, "the kill left no blocks behind; the test proves nothing"
        g22.start()
        info: Any = g22.call("node.info")
        g22.stop(signal.SIGTERM)
    orphans, markers = orphans_at(store)
    assert not orphans and not markers, f"{len(orphans)} dead blocks survived the restart"
    assert info["dead_blocks_removed"] == len(left), info
    assert '"event": "store.dead_blocks_removed"' in g22.log()
