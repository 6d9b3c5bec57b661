"""The node's logic on a simulated network, in virtual time: delivery, receipts, failures.

Real engines, stores and crypto; only the wire is simulated (simnet/virtual.py).
The same scenarios over real py-libp2p hosts are in test_p2p.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

import node.fetcher
from node import views
from node.inbound import Arrival
from protocol.errors import (
    IllegalTransitionError,
    NotAuthorizedError,
    NotFoundError,
    NotHostedError,
    SchemaError,
    TooLargeError,
    UnknownAgencyError,
)
from protocol.ids import Digest
from protocol.status import StatusCode
from simnet.cluster import wait_until
from tests.node.helpers import G22, H01, H29, H31, SUB, C, cluster, delivered, in_inbox, meta, read_files, run_virtual, send


def test_document_with_blocks_reaches_both_recipients_and_receipts_return(tmp_path: Path) -> None:
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            doc = await send(c, G22, [H01, H29], 5_000_000, 1000)
            await wait_until(lambda: delivered(c, G22, doc), timeout=30)
            for code in (H01, H29):
                assert read_files(c, code, doc) == [b"\x00" * 5_000_000, b"\x01" * 1000]
            track = views.track(c.by_code(G22).e(), doc)
            assert [s["code"] for r in track["recipients"] for s in r["statuses"]] == ["01", "01"]
            # The relay holds the envelope (catch-up) but cannot read it.
            relay = c.node("relay").e()
            await wait_until(lambda: relay.store.has_envelope(doc), timeout=60)
            rec = relay.store.doc(doc)
            assert rec is not None and rec.role.value == "relayed" and rec.subject == ""
            with pytest.raises(NotAuthorizedError):
                list(relay.read_document(doc, C(H31)))
            n.cancel_scope.cancel()

    run_virtual(main)


def test_sender_and_recipient_on_one_node(tmp_path: Path) -> None:
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            doc = await send(c, G22, [SUB, H01], 100)
            assert in_inbox(c, SUB, doc)  # delivered in the submit commit itself
            await wait_until(lambda: delivered(c, G22, doc), timeout=30)
            n.cancel_scope.cancel()

    run_virtual(main)


def test_offline_recipient_catches_up_and_receipts_arrive(tmp_path: Path) -> None:
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            await c.stop("h29")
            docs = [await send(c, G22, [H29], 100 * i) for i in range(1, 6)]
            big = await send(c, G22, [H29], 3_000_000)
            await trio.sleep(30)
            g = c.by_code(G22).e()
            for r in views.track(g, docs[0])["recipients"]:
                assert r["state"] == "pending" and "not connected" in r["last_error"] and r["attempts"] >= 2
            # Relays got each one on gossip after its first attempt; retries do not publish it again.
            assert g.metrics.total("gossip_fallbacks") == 6
            await c.start(n, "h29")
            await wait_until(lambda: all(delivered(c, G22, d) for d in [*docs, big]), timeout=120)
            inbox = c.node("h29").e().store.inbox(C(H29))
            assert sorted(e.id for _, e in inbox) == sorted([*docs, big])  # each exactly once, any order
            n.cancel_scope.cancel()

    run_virtual(main)


def test_store_and_forward_when_the_sender_goes_away(tmp_path: Path) -> None:
    """Recipient down, sender publishes (relays keep it), sender goes down, recipient comes back."""
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            await c.stop("h29")
            doc = await send(c, G22, [H29], 2000)
            relay = c.node("relay").e()
            await wait_until(lambda: relay.store.has_envelope(doc), timeout=30)
            await c.stop("g22")
            await c.start(n, "h29")
            await wait_until(lambda: in_inbox(c, H29, doc), timeout=120)
            h29 = c.node("h29").e()
            assert h29.store.doc(doc).subject  # type: ignore[union-attr]
            await trio.sleep(20)
            await c.start(n, "g22")  # the receipt waited in H29's outbox
            await wait_until(lambda: delivered(c, G22, doc), timeout=300)
            n.cancel_scope.cancel()

    run_virtual(main)


def test_partition_heals_and_everything_arrives(tmp_path: Path) -> None:
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g, others = c.node("g22").peer_id, {c.node(x).peer_id for x in ("h01", "h29", "relay")}
            await c.network.partition({g}, others)
            docs = [await send(c, G22, [H01, H29], 500) for _ in range(10)]
            answer = [await send(c, H01, [G22], 100) for _ in range(3)]
            await trio.sleep(60)
            assert not any(in_inbox(c, H01, d) for d in docs)
            await c.network.heal()
            await wait_until(lambda: all(delivered(c, G22, d) for d in docs), timeout=300)
            await wait_until(lambda: all(delivered(c, H01, d) for d in answer), timeout=300)
            assert c.node("h01").e().store.inbox_count(C(H01)) == 10
            n.cancel_scope.cancel()

    run_virtual(main)


def test_a_node_starting_among_many_peers_queues_its_sync_rounds(tmp_path: Path) -> None:
    """Every connecting peer is caught up with, never more than sync.parallel rounds at once.

    A round is skipped only when the peer's own heads request showed it holds
    nothing unread (at a cold start: nothing at all), so each pair costs one round, not two.
    """
    codes = [f"000.00.00.H{i:02d}" for i in range(1, 25)]
    c = cluster(
        tmp_path,
        {f"n{i}": [code] for i, code in enumerate(codes)},
        config=lambda cfg: dataclasses.replace(cfg, sync_parallel=2, sync_interval_s=3600.0),
    )

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)

            # each round is one heads exchange over 5-40 ms links; 23 peers at 2 in flight
            def done(x: str) -> bool:
                syncer = c.node(x).e().syncer
                return syncer.rounds + syncer.skipped >= len(codes) - 1 and not syncer._soon and not syncer._active

            await wait_until(lambda: all(done(x) for x in c.nodes), timeout=60)
            for name in c.nodes:
                syncer = c.node(name).e().syncer
                assert syncer.peak_active == 2, (name, syncer.peak_active)
                assert syncer.rounds + syncer.skipped == len(codes) - 1, name  # one per peer, no periodic round yet
            pairs = len(codes) * (len(codes) - 1) // 2
            rounds = sum(c.node(x).e().syncer.rounds for x in c.nodes)
            # each pair once, but for pairs whose rounds crossed in flight (2 per node start at once):
            # 1.15-1.20 x pairs over repeated runs (trio's scheduling varies); without the skip, 2 x
            assert pairs <= rounds <= 1.4 * pairs, (rounds, pairs)
            n.cancel_scope.cancel()

    run_virtual(main)


def test_burst_of_500_documents_over_lossy_links_is_fully_delivered(tmp_path: Path) -> None:
    from simnet.virtual import VirtualNetwork

    c = cluster(tmp_path, network=VirtualNetwork(seed=7, loss=0.2))

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            docs = [await send(c, G22, [H01] if i % 2 else [H29], 200) for i in range(500)]
            await wait_until(lambda: all(delivered(c, G22, d) for d in docs), timeout=3000, step=1)
            assert c.node("h01").e().store.inbox_count(C(H01)) == 250
            assert c.node("h29").e().store.inbox_count(C(H29)) == 250
            stats = c.network.stats
            assert stats.lost >= 10 and stats.lost >= 0.1 * stats.requests  # the loss was real: ~20% of requests
            n.cancel_scope.cancel()

    run_virtual(main, limit_s=4000)


def test_status_flow_and_illegal_transitions(tmp_path: Path) -> None:
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            doc = await send(c, G22, [H01, H29], 10)
            await wait_until(lambda: delivered(c, G22, doc), timeout=30)
            h01 = c.node("h01").e()
            with pytest.raises(IllegalTransitionError, match="allowed now: 02 from the recipient, 03"):
                await h01.send_status(doc, C(H01), StatusCode.ASSIGNED)
            for code in (StatusCode.ACCEPTED, StatusCode.ASSIGNED, StatusCode.PROCESSING, StatusCode.PROCESSING):
                await h01.send_status(doc, C(H01), code, note=f"bước {int(code)}")
            await h01.send_status(doc, C(H01), StatusCode.FINISHED, note="Đã xong")
            g = c.node("g22").e()

            def codes(code: str) -> list[str]:
                return [s["code"] for r in views.track(g, doc)["recipients"] if r["code"] == code for s in r["statuses"]]

            await wait_until(lambda: codes(H01) == ["01", "03", "04", "05", "05", "06"], timeout=60)
            track = {r["code"]: r for r in views.track(g, doc)["recipients"]}
            assert track[H01]["phase"] == "finished" and track[H01]["statuses"][-1]["note"] == "Đã xong"
            # Take-back: only the sender asks, only the recipient answers.
            with pytest.raises(SchemaError, match="which recipient"):
                await g.send_status(doc, C(G22), StatusCode.TAKEBACK_REQUESTED)
            await g.send_status(doc, C(G22), StatusCode.TAKEBACK_REQUESTED, to=C(H29), note="Gửi nhầm")
            h29 = c.node("h29").e()
            await wait_until(lambda: h29.thread_state(doc, C(H29))[0].pending.value == "takeback", timeout=60)
            with pytest.raises(IllegalTransitionError, match="not allowed"):
                await g.send_status(doc, C(G22), StatusCode.TAKEBACK_REQUESTED, to=C(H29))  # one question at a time
            await h29.send_status(doc, C(H29), StatusCode.ACCEPTED)  # processing may go on meanwhile
            await h29.send_status(doc, C(H29), StatusCode.AGREED)
            await wait_until(lambda: g.thread_state(doc, C(H29))[0].phase.value == "withdrawn", timeout=60)
            with pytest.raises(NotAuthorizedError):
                await c.node("relay").e().send_status(doc, C(H31), StatusCode.ACCEPTED)
            with pytest.raises(NotAuthorizedError, match="01 is sent by the recipient's node itself"):
                await h01.send_status(doc, C(H01), StatusCode.ARRIVED)
            n.cancel_scope.cancel()

    run_virtual(main)


def test_submit_errors_and_idempotency(tmp_path: Path) -> None:
    import dataclasses

    c = cluster(tmp_path, config=lambda cfg: dataclasses.replace(cfg, max_document_mb=1))

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g = c.node("g22").e()
            first = await send(c, G22, [H01], 10, idempotency_key="cv-2026-15")
            again = await send(c, G22, [H01], 99, idempotency_key="cv-2026-15")
            assert first == again
            with pytest.raises(UnknownAgencyError):
                await send(c, G22, ["000.00.00.H05"], 10)
            with pytest.raises(TooLargeError, match="accepts documents up to"):
                await send(c, G22, [H01], 2 << 20)
            # Attachments exactly at the limit: the manifest makes the document larger than any recipient accepts,
            # so the sender refuses it rather than store a document nobody can receive.
            with pytest.raises(TooLargeError, match=r"\d+ of manifest\), this node accepts documents up to 1048576"):
                await send(c, G22, [H01], 1 << 20)
            with pytest.raises(SchemaError, match="itself"):
                await send(c, G22, [G22], 1)
            with pytest.raises(NotHostedError, match=r"this node hosts 000\.00\.00\.G22, 000\.00\.01\.G22"):
                await g.submit(C(H01), [C(G22)], meta(), [])
            with pytest.raises(NotFoundError):
                views.track(g, Digest.of(b"no such document"))
            await wait_until(lambda: c.node("h01").e().store.inbox_count(C(H01)) == 1, timeout=30)
            n.cancel_scope.cancel()

    run_virtual(main)


def test_recipient_restart_mid_fetch_resumes_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node.fetcher, "WINDOW", 3)  # fewer blocks in flight than the document has: it stops midway
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            doc = await send(c, G22, [H29], 8_000_000)
            h29 = c.node("h29")
            await wait_until(lambda: h29.running and views.block_progress(h29.e(), doc)[0] >= 2, timeout=30, step=0.001)
            have, total = views.block_progress(h29.e(), doc)
            assert 0 < have < total
            await c.stop("h29")
            await c.start(n, "h29")
            await wait_until(lambda: delivered(c, G22, doc), timeout=120)
            assert h29.e().store.inbox_count(C(H29)) == 1
            assert read_files(c, H29, doc) == [b"\x00" * 8_000_000]
            n.cancel_scope.cancel()

    run_virtual(main)


def test_status_that_arrives_before_its_document_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Catch-up can bring a status before the document (they live in different shards). Applying the parked
    statuses decodes no envelope again: the document's header and the parked statuses are still at hand (a relay
    parks most receipts; decoding both again was a sixth of its busy time in bench.node)."""
    from protocol.envelope import Envelope

    c = cluster(tmp_path)
    decoded: list[int] = []
    library_decode = Envelope.decode.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Envelope], data: bytes, **kw: int) -> Envelope:
        decoded.append(len(data))
        return library_decode(cls, data, **kw)  # type: ignore[no-any-return]

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            doc = await send(c, G22, [H01], 10)
            await wait_until(lambda: delivered(c, G22, doc), timeout=30)
            h01 = c.node("h01").e()
            await h01.send_status(doc, C(H01), StatusCode.ACCEPTED)
            await trio.sleep(5)
            statuses = [sid for _, sid, _ in h01.store.history(doc, C(H01))]
            raws = [h01.store.get_envelope(s) for s in statuses]
            doc_raw = h01.store.get_envelope(doc)
            # A fresh node that knows nothing gets the statuses first, then the document.
            await c.stop("relay")
            import shutil

            shutil.rmtree(c.node("relay").home)
            await c.network.partition({c.node("relay").peer_id}, {c.node(x).peer_id for x in ("g22", "h01", "h29")})
            await c.start(n, "relay")
            relay = c.node("relay").e()
            res = await relay.ingest([r for r in raws if r], peer=c.node("h01").peer_id, path=Arrival.SYNC)
            assert {r.status for r in res} == {"ok"}
            assert relay.store.parked(doc) and not relay.store.history(doc)
            assert doc_raw is not None
            monkeypatch.setattr(Envelope, "decode", classmethod(counting))
            await relay.ingest([doc_raw], peer=c.node("h01").peer_id, path=Arrival.SYNC)
            await wait_until(lambda: len(relay.store.history(doc)) == 2 and not relay.store.parked(doc), timeout=10)
            assert decoded == [len(doc_raw)], f"{len(decoded)} envelopes decoded to apply 2 parked statuses"
            n.cancel_scope.cancel()

    run_virtual(main)


def test_relays_drop_documents_after_receipts_and_the_keep_window(tmp_path: Path) -> None:
    import dataclasses

    c = cluster(tmp_path, config=lambda cfg: dataclasses.replace(cfg, keep_after_receipt_h=1.0))

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            doc = await send(c, G22, [H01], 10)
            relay = c.node("relay").e()
            await wait_until(lambda: relay.store.has_envelope(doc) and len(relay.store.history(doc)) == 1, timeout=120)
            assert relay.retention.sweep(c.clock()) == 0  # receipt seen, but within the keep window
            assert relay.retention.sweep(c.clock() + 3_600_001) == 1
            assert not relay.store.has_envelope(doc) and relay.store.known(doc)
            # A replay of the dropped envelope is a duplicate, not a new document.
            raw = c.node("h01").e().store.get_envelope(doc)
            assert raw is not None
            res = await relay.ingest([raw], peer=c.node("h01").peer_id, path=Arrival.GOSSIP)
            assert res[0].status == "duplicate"
            n.cancel_scope.cancel()

    run_virtual(main)


def test_a_receipt_lost_by_the_sender_is_sent_again(tmp_path: Path) -> None:
    import dataclasses as dc

    from store.records import DeliveryState

    c = cluster(
        tmp_path,
        {"g22": [G22], "h01": [H01]},
        config=lambda cfg: dc.replace(cfg, retry=dc.replace(cfg.retry, receipt_timeout_s=20)),
    )

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g = c.node("g22").e()
            doc = await send(c, G22, [H01], 10)
            await wait_until(lambda: delivered(c, G22, doc), timeout=30)
            await trio.sleep(10)
            # Simulate a sender that lost the receipt (e.g. restored from an older backup): the record as it was
            # before the receipt, written under the outbox (only a restore writes records behind its back).
            old = g.delivery_record(C(G22), doc, C(H01))
            assert old is not None
            lost = dc.replace(old, state=DeliveryState.PENDING, receipt=b"", delivered_at=0, next_at=c.clock() + 20_000)
            b = g.store.batch()
            b.put_delivery(C(G22), doc, C(H01), lost, old)
            await g.committer.commit(b)
            g.outbox.kick()  # a restored node's worker reads the schedule at start; this one is told
            assert not delivered(c, G22, doc)
            await wait_until(lambda: delivered(c, G22, doc), timeout=120)
            assert c.node("h01").e().metrics.total("receipts_resent") >= 1
            assert c.node("h01").e().store.inbox_count(C(H01)) == 1
            n.cancel_scope.cancel()

    run_virtual(main)


def test_the_delivery_worker_keeps_at_most_its_limit_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond MAX_IN_FLIGHT, due work waits in the store's schedule, and all of it is still delivered.

    Without the limit a backlog was claimed at once: the claims aged past their
    backoff while waiting their turn and every pass over the schedule stepped
    over them (a quarter of the sender's time at 6,000 documents, py-spy).
    """
    import node.delivery

    monkeypatch.setattr(node.delivery, "MAX_IN_FLIGHT", 8)
    seen: list[int] = []
    attempt = node.delivery.DeliveryWorker._attempt_inner

    async def counting(self: node.delivery.DeliveryWorker, peer: str, items: list[node.delivery.Item]) -> None:
        seen.append(len(self._claimed))
        await trio.sleep(0.5)  # slow pushes: the backlog builds up behind them
        await attempt(self, peer, items)

    monkeypatch.setattr(node.delivery.DeliveryWorker, "_attempt_inner", counting)
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            docs = [await send(c, G22, [H29], 100) for _ in range(40)]
            await wait_until(lambda: all(delivered(c, G22, d) for d in docs), timeout=600, step=1)
            assert c.node("h29").e().store.inbox_count(C(H29)) == 40
            n.cancel_scope.cancel()

    run_virtual(main, limit_s=700)
    assert seen and max(seen) <= 8 and len(seen) >= 5  # claimed in several rounds, never more than the limit at once


def test_a_node_catching_up_from_two_peers_gets_each_envelope_once(tmp_path: Path) -> None:
    """Two relays' logs hold the same envelopes; after a restart, rounds with both run at once.

    Without the shared list of ids being fetched, both rounds asked for every
    envelope (bench.node: 3,401 of 10,000 documents came twice over sync).
    """
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            await c.stop("h29")
            docs = [await send(c, G22, [H29], 2000) for _ in range(600)]
            relays = [c.node(x).e() for x in ("relay", "h01")]
            await wait_until(lambda: all(r.store.has_envelope(d) for r in relays for d in docs), timeout=600, step=1)
            await c.stop("g22")  # no push, no gossip: only the two relays' logs
            await c.start(n, "h29")
            h29 = c.node("h29").e()
            await wait_until(lambda: h29.store.inbox_count(C(H29)) == 600, timeout=600, step=1)
            accepted = h29.metrics.get("envelopes_accepted", kind="doc", path="sync")
            twice = h29.metrics.get("envelopes_duplicate", path="sync")
            assert accepted == 600 and h29.syncer.rounds >= 2 and twice == 0, (accepted, h29.syncer.rounds, twice)
            n.cancel_scope.cancel()

    run_virtual(main, limit_s=1500)


def test_ids_another_round_failed_to_get_are_got_by_the_one_that_waited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A round skips ids another round is getting; if that get fails, it asks for them itself before its cursor moves."""
    from node.overlay import OverlayError

    c = cluster(tmp_path)
    ids = [Digest.of(i.to_bytes(2, "big")) for i in range(300)]
    got: dict[str, list[Digest]] = {"bad": [], "good": []}
    have: set[Digest] = set()

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            syncer = c.node("h29").e().syncer

            async def pull(peer: str, want: list[Digest]) -> int:
                await trio.sleep(1)
                got[peer] += want
                if peer == "bad":
                    raise OverlayError(peer, "reset")
                have.update(want)
                return len(want)

            monkeypatch.setattr(syncer, "_pull", pull)
            monkeypatch.setattr(syncer.n, "known", lambda i: i in have)
            failed: list[Exception] = []

            async def bad() -> None:
                try:
                    await syncer._pull_page("bad", ids)
                except OverlayError as exc:
                    failed.append(exc)

            async with trio.open_nursery() as rounds:
                rounds.start_soon(bad)
                await trio.sleep(0.1)  # the bad round has claimed the ids
                assert await syncer._pull_page("good", ids) == 300
            assert failed and have == set(ids) and not syncer._fetching
            assert set(got["good"]) == set(ids)  # it waited, then got what the bad round did not bring
            n.cancel_scope.cancel()

    run_virtual(main)


def test_a_recipient_node_down_is_one_deferred_line_per_attempt_not_per_envelope(tmp_path: Path) -> None:
    """A restarted node with 512 receipts for a peer not yet connected logged 512 lines in 0.3 s (bench.node).

    Retries are jittered one by one, so later attempts are small; what comes due together (a restart, a
    peer seen again) is one attempt and now one line.
    """
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            await c.stop("h29")
            docs = [await send(c, G22, [H29], 100) for _ in range(40)]
            attempts = sum(r["attempts"] for d in docs for r in views.track(c.by_code(G22).e(), d)["recipients"])
            await c.stop("g22")
            await trio.sleep(120)  # every one of them is due when the sender starts again
            await c.start(n, "g22")
            g = c.by_code(G22).e()
            await trio.sleep(0.3)  # the first attempt, before any retry (backoff from 1 s)
            now = sum(r["attempts"] for d in docs for r in views.track(g, d)["recipients"])
            assert now == attempts + 40, (attempts, now)
            assert g.log.counts.get("delivery.deferred", 0) == 1  # this start's log: 40 lines before
            n.cancel_scope.cancel()

    run_virtual(main)


def test_an_idle_sender_pushes_at_once_and_a_busy_one_gathers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flush wait gathers envelopes under load; an idle node paid it on every document (20 ms each way).

    With a 1 s flush period: the first document after a quiet spell leaves
    at once, and the four that follow it while the flush runs leave together.
    """
    import node.delivery

    attempts: list[tuple[float, int]] = []
    attempt = node.delivery.DeliveryWorker._attempt_inner

    async def recording(self: node.delivery.DeliveryWorker, peer: str, items: list[node.delivery.Item]) -> None:
        if self.overlay.peer_id == c.node("g22").peer_id:
            attempts.append((trio.current_time(), len(items)))
        await attempt(self, peer, items)

    monkeypatch.setattr(node.delivery.DeliveryWorker, "_attempt_inner", recording)
    c = cluster(tmp_path, config=lambda cfg: dataclasses.replace(cfg, gossip_flush_ms=1000.0))

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            await trio.sleep(30)  # quiet: connected, synced, nothing under way
            first = await send(c, G22, [H29], 100)
            sent_at = trio.current_time()
            await wait_until(lambda: bool(attempts), timeout=5, step=0.01)
            assert attempts[0][0] - sent_at < 0.1, (attempts, sent_at)  # not after the 1 s flush
            rest = [await send(c, G22, [H29], 100) for _ in range(4)]
            await wait_until(lambda: all(delivered(c, G22, d) for d in [first, *rest]), timeout=60)
            assert [size for _, size in attempts] == [1, 4], attempts
            n.cancel_scope.cancel()

    run_virtual(main)


def test_tracking_reports_only_what_is_written_so_a_delivered_state_comes_with_its_01(tmp_path: Path) -> None:
    """``document.track`` read the delivery state from the outbox's not-yet-written change and the history from the
    store: between a receipt's ingest and its commit it said "delivered" with no 01 in the statuses (seen once by
    `truc demo`). Both now come from what is written."""
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            await c.stop("h29")
            doc = await send(c, G22, [H29], 100)
            g = c.by_code(G22).e()
            (before,) = views.track(g, doc)["recipients"]
            b = g.store.batch()  # a receipt being ingested: its batch not yet written
            assert g.outbox.receipted(b, (C(G22), bytes(doc), C(H29)), Digest.of(b"a 01 not yet stored"), 0)
            (during,) = views.track(g, doc)["recipients"]
            assert during["state"] == before["state"] == "pending"
            assert during["statuses"] == before["statuses"] == []
            n.cancel_scope.cancel()

    run_virtual(main)
