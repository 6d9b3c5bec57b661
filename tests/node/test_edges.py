"""Wrong answers at the edges: junk floods, statuses about documents nobody has, references to nothing.

Real engines, stores and crypto on the virtual wire, in virtual time.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import trio

import node.engine
import node.inbound
from identity.provision import DeterministicRng
from identity.sealing import FileSource, seal_document, seal_status
from identity.trust import TimePolicy
from node.inbound import Arrival
from node.log import Log
from protocol import messages as m
from protocol.document import BusinessType
from protocol.envelope import Envelope
from protocol.errors import NotAuthorizedError, NotFoundError
from protocol.ids import Digest
from protocol.status import StatusCode
from simnet.cluster import wait_until
from tests.node.helpers import G22, H01, H29, C, cluster, delivered, meta, run_virtual, send

HOUR_MS = 3_600_000


def log_lines(stream: io.StringIO, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [x for x in lines if x["event"] == event]


def test_a_push_of_50000_junk_envelopes_logs_one_line_per_reason_and_counts_each(tmp_path: Path) -> None:
    streams: dict[str, io.StringIO] = {}

    def make_log(name: str) -> Log:
        streams[name] = io.StringIO()
        return Log(stream=streams[name], fmt="json")

    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]}, log=make_log)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            h01 = c.node("h01").e()
            good, _ = seal_document(
                meta(),
                [FileSource("a.txt", "text/plain", data=b"x")],
                net=h01.trust.net,
                sender=c.keys[C(G22)],
                recipients=[h01.trust.recipient(C(H01))],
                at=h01.clock(),
                rng=DeterministicRng(b"junk"),
            )
            forged = Envelope(good.header, good.header_bytes, bytes(64), good.inline).encode()
            junk = [i.to_bytes(4, "big") for i in range(50_000)] + [forged] * 3
            before = len(log_lines(streams["h01"], "envelope.rejected"))
            assert len(m.EnvelopeBatch(tuple(junk)).encode()) < m.MAX_PUSH_BYTES, "one push request can carry it"
            results = await h01.ingest(junk, peer=c.node("g22").peer_id, path=Arrival.PUSH)
            assert len(results) == 50_003 and {r.status for r in results} == {"malformed", "bad_signature"}
            lines = log_lines(streams["h01"], "envelope.rejected")[before:]
            assert len(lines) == 2, f"{len(lines)} lines for one push"
            by_reason = {x["reason"]: x for x in lines}
            assert by_reason["malformed"]["count"] == 50_000 and by_reason["bad_signature"]["count"] == 3
            assert by_reason["malformed"]["path"] == "push" and by_reason["malformed"]["detail"]
            # Metrics stay per envelope.
            assert h01.metrics.get("envelopes_rejected", reason="malformed", path="push") == 50_000
            assert h01.metrics.get("envelopes_rejected", reason="bad_signature", path="push") == 3
            n.cancel_scope.cancel()

    run_virtual(main)


def _takeback_about(c: object, keys: object, engine: node.engine.Engine, doc: Digest, to: str) -> bytes:
    return seal_status(
        net=engine.trust.net,
        sender=keys,  # type: ignore[arg-type]
        recipient=engine.trust.recipient(C(to)),
        doc=doc,
        code=StatusCode.TAKEBACK_REQUESTED,
        seq=2,
        note="",
        at=engine.clock(),
        rng=DeterministicRng(bytes(doc)),
    ).encode()


def test_statuses_about_documents_nobody_has_are_bounded_per_sender_and_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.inbound, "MAX_PARKED_PER_SENDER", 5)
    streams: dict[str, io.StringIO] = {}

    def make_log(name: str) -> Log:
        streams[name] = io.StringIO()
        return Log(stream=streams[name], fmt="json")

    c = cluster(tmp_path, {"g22": [G22], "h01": [H01], "h29": [H29]}, log=make_log)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            h01 = c.node("h01").e()
            g22_peer = c.node("g22").peer_id
            # G22 (a member, validly signed) sends 13s about 8 documents that do not exist.
            ghosts = [Digest.of(b"ghost %d" % i) for i in range(8)]
            raws = [_takeback_about(c, c.keys[C(G22)], h01, d, H01) for d in ghosts]
            results = await h01.ingest(raws, peer=g22_peer, path=Arrival.PUSH)
            assert [r.status for r in results] == ["ok"] * 5 + ["too_many_parked"] * 3, results
            assert sum(len(h01.store.parked(d)) for d in ghosts) == 5
            assert h01.metrics.get("envelopes_rejected", reason="too_many_parked", path="push") == 3
            # Another agency's quota is its own: H29's statuses still park.
            (r29,) = await h01.ingest(
                [_takeback_about(c, c.keys[C(H29)], h01, Digest.of(b"other"), H01)], peer=c.node("h29").peer_id, path=Arrival.PUSH
            )
            assert r29.status == "ok"
            # A real document still gets its early status applied when it arrives (parking works as before).
            doc = await send(c, G22, [H01], 10)
            await wait_until(lambda: delivered(c, G22, doc), timeout=60)
            # Nobody will ever send those documents: after the age window (30 days; 2 hours here, to keep the
            # virtual run short) the node's hourly housekeeping drops them, counts them and logs them.
            h01.trust.policy = TimePolicy(max_age_ms=2 * HOUR_MS)
            await c.stop("g22")
            await c.stop("h29")
            await trio.sleep(3.5 * HOUR_MS / 1000)
            assert sum(len(h01.store.parked(d)) for d in ghosts) == 0
            assert all(not h01.store.has_envelope(Envelope.decode(raw).id) for raw in raws[:5])
            assert all(h01.store.known(Envelope.decode(raw).id) for raw in raws[:5]), "a replay stays a duplicate"
            assert h01.metrics.get("parked_statuses_expired") == 6
            expired = log_lines(streams["h01"], "status.parked_expired")
            assert expired and sum(int(x["count"]) for x in expired) == 6  # type: ignore[call-overload]
            # The quota is free again.
            fresh = [_takeback_about(c, c.keys[C(G22)], h01, Digest.of(b"later %d" % i), H01) for i in range(5)]
            assert [r.status for r in await h01.ingest(fresh, peer=g22_peer, path=Arrival.PUSH)] == ["ok"] * 5
            n.cancel_scope.cancel()

    run_virtual(main, limit_s=86_400)


def test_a_revoke_update_or_replace_must_name_a_document_this_node_sent_or_received(tmp_path: Path) -> None:
    c = cluster(tmp_path, {"g22": [G22], "h01": [H01], "h29": [H29]})

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g22 = c.node("g22").e()
            nowhere = Digest.of(b"a document nobody sent")
            for business in (BusinessType.REVOKE, BusinessType.UPDATE, BusinessType.REPLACE):
                with pytest.raises(NotFoundError, match=str(nowhere)):
                    await g22.submit(C(G22), [C(H01)], meta(business=business, ref=nowhere), [])
            # A document between two other agencies is not G22's to revoke, even if G22's node holds a copy.
            theirs = await send(c, H01, [H29], 10)
            await wait_until(lambda: g22.store.has_envelope(theirs), timeout=60)
            with pytest.raises(NotAuthorizedError, match="not a party"):
                await g22.submit(C(G22), [C(H29)], meta(business=BusinessType.REVOKE, ref=theirs), [])
            # Its own document it can revoke, update and replace.
            mine = await send(c, G22, [H01], 10)
            await wait_until(lambda: delivered(c, G22, mine), timeout=60)
            revoke = await g22.submit(C(G22), [C(H01)], meta(business=BusinessType.REVOKE, ref=mine), [])
            await wait_until(lambda: delivered(c, G22, revoke), timeout=60)
            n.cancel_scope.cancel()

    run_virtual(main)
