"""Opening a document while its blocks arrive (node/fetcher.py, _EarlyOpen): real worker threads, a real store.

The early opening runs the same check as the opening after the fetch, over
blocks it reads from the store as they are written; it must give the same
verdict, whatever order the blocks arrive in, and let go at once when the
fetch fails or the node stops, leaving the document to the usual opening.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from identity.provision import DeterministicRng
from identity.sealing import FileSource, read_document, seal_document
from node.fetcher import Open, _EarlyOpen
from protocol.document import DocumentMeta
from protocol.envelope import MessageHeader
from protocol.errors import RemoteError
from protocol.ids import Digest
from store.store import Store
from tests.conftest import NET, NOW, Net

BLOCK = 1 << 20
H01 = "000.00.00.H01"


def sealed(net: Net, size: int) -> tuple[MessageHeader, dict[Digest, bytes]]:
    blocks: dict[Digest, bytes] = {}
    env, _ = seal_document(
        DocumentMeta(subject="Báo cáo tổng hợp"),
        [FileSource("bao-cao.bin", "application/octet-stream", data=DeterministicRng(b"data")(size))],
        net=NET,
        sender=net.k("000.00.00.G22"),
        recipients=[net.trust.recipient(net.k(H01).code)],
        at=NOW,
        rng=DeterministicRng(b"seal"),
        on_block=blocks.__setitem__,
    )
    assert isinstance(env.header, MessageHeader)
    return env.header, blocks


def opener(net: Net) -> tuple[list[str], Open]:
    """The opening the node runs (as recipient H01), noting which thread ran it."""
    threads: list[str] = []

    def open_(h: MessageHeader, blocks: Iterator[bytes]) -> DocumentMeta | RemoteError:
        threads.append(threading.current_thread().name)
        try:
            meta = None
            for ev in read_document(h, net.k(H01), blocks, checked=True):
                if isinstance(ev, DocumentMeta):
                    meta = ev
            assert meta is not None
            return meta
        except RemoteError as exc:
            return exc

    return threads, open_


@contextmanager
def nothing_stored_yet(tmp_path: Path, net: Net) -> Iterator[tuple[_EarlyOpen, Open]]:
    """An early opening of a 3-block document none of whose blocks is in the store, and the opening it runs."""
    h, _ = sealed(net, 2 * BLOCK + 10)
    _, open_ = opener(net)
    with Store(tmp_path / "db") as store:
        yield _EarlyOpen(store, h, set()), open_


def put(store: Store, digest: Digest, block: bytes) -> None:
    b = store.batch()
    b.put_block(digest, block)
    store.write(b, sync=False)


@pytest.mark.timeout(60)
def test_blocks_arriving_in_any_order_give_the_verdict_of_the_opening_after_the_fetch(tmp_path: Path, net: Net) -> None:
    h, blocks = sealed(net, 3 * BLOCK + 5000)  # 4 blocks
    order = [0, 2, 3, 1]  # the fetcher has several in flight: they land out of order
    threads, open_ = opener(net)
    with Store(tmp_path / "db") as store:
        put(store, h.body.blocks[0], blocks[h.body.blocks[0]])  # already here (a fetch resumed after a restart)
        early = _EarlyOpen(store, h, {0})

        async def main() -> None:
            async with trio.open_nursery() as n:
                n.start_soon(early.run, open_)
                for i in order[1:]:
                    await trio.sleep(0.05)
                    assert early.result is None, "it finished before every block was here"
                    put(store, h.body.blocks[i], blocks[h.body.blocks[i]])
                    early.arrived(i)

        trio.run(main)
        assert isinstance(early.result, DocumentMeta) and early.result.subject == "Báo cáo tổng hợp"
        assert threads and threads[0] != "MainThread", "the opening ran on the event loop"


@pytest.mark.timeout(60)
def test_a_failed_fetch_stops_the_early_opening_at_once_and_leaves_no_verdict(tmp_path: Path, net: Net) -> None:
    with nothing_stored_yet(tmp_path, net) as (early, open_):

        async def main() -> float:
            async with trio.open_nursery() as n:
                n.start_soon(early.run, open_)
                await trio.sleep(0.1)
                start = time.monotonic()
                early.stop.set()  # what the fetcher does when blocks failed
            return time.monotonic() - start

        took = trio.run(main)
        assert early.result is None
        assert took < 1.0, f"the waiting thread took {took:.1f} s to let go"


@pytest.mark.timeout(60)
def test_a_node_stopping_mid_fetch_is_not_held_by_the_waiting_thread(tmp_path: Path, net: Net) -> None:
    with nothing_stored_yet(tmp_path, net) as (early, open_):

        async def main() -> None:
            with trio.move_on_after(0.2):
                await early.run(open_)
            early.stop.set()

        start = time.monotonic()
        trio.run(main)
        assert time.monotonic() - start < 1.5 and early.result is None


@pytest.mark.timeout(60)
def test_a_block_gone_from_the_store_hands_the_document_back_to_the_usual_opening(tmp_path: Path, net: Net) -> None:
    """Never a verdict from the mechanics: a block announced but not in the store (a relay's drop) is not 'unreadable'."""
    with nothing_stored_yet(tmp_path, net) as (early, open_):

        async def main() -> None:
            async with trio.open_nursery() as n:
                n.start_soon(early.run, open_)
                early.arrived(0)  # announced, never written

        trio.run(main)
        assert early.result is None
