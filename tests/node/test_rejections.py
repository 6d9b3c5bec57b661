"""Hostile and stale envelopes are refused before they are stored or forwarded, with a reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from identity.directory import DirectoryDelta, NodeRecord, sign_delta
from identity.keys import AgencyKeys, NodeKey, SigningKey
from identity.provision import DeterministicRng, agency_record
from identity.sealing import FileSource, Recipient, seal_document
from node import views
from node.engine import Engine
from node.inbound import Arrival
from protocol import messages as m
from protocol.envelope import Envelope
from simnet.cluster import DAY_MS, wait_until
from tests.node.helpers import G22, H01, H29, C, cluster, delivered, in_inbox, meta, run_virtual, send


def forge(c: object, engine: Engine, sender: AgencyKeys, to: str, *, size: int = 10, at: int | None = None) -> Envelope:
    env, _ = seal_document(
        meta(),
        [FileSource("a.bin", "application/octet-stream", data=b"x" * size)],
        net=engine.trust.net,
        sender=sender,
        recipients=[engine.trust.recipient(C(to))],
        at=engine.clock() if at is None else at,
        rng=DeterministicRng(b"forge"),
    )
    return env


def test_each_kind_of_bad_envelope_is_refused_with_its_reason_and_not_stored(tmp_path: Path) -> None:
    c = cluster(tmp_path)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            h01 = c.node("h01").e()
            g22_keys = c.keys[C(G22)]
            good = forge(c, h01, g22_keys, H01)
            # forged: a valid envelope with its signature damaged
            forged = Envelope(good.header, good.header_bytes, bytes(64), good.inline)
            # unknown sender: an agency that is not in the directory
            stranger = forge(c, h01, AgencyKeys.generate(C("H05"), DeterministicRng(b"s")), H01)
            # a key G22 never registered, claiming to be G22
            impostor = forge(c, h01, dataclasses.replace(g22_keys, signing=SigningKey.generate(DeterministicRng(b"i"))), H01)
            # too old, and from the future
            stale = forge(c, h01, g22_keys, H01, at=h01.clock() - 40 * DAY_MS)
            future = forge(c, h01, g22_keys, H01, at=h01.clock() + DAY_MS)
            cases = {
                "bad_signature": forged.encode(),
                "unknown_agency": stranger.encode(),
                "unknown_key": impostor.encode(),
                "stale": stale.encode(),
                "malformed": good.encode()[:-3],
            }
            peer = c.node("g22").peer_id
            for reason, raw in cases.items():
                (result,) = await h01.ingest([raw], peer=peer, path=Arrival.PUSH)
                assert result.status == reason, (reason, result)
                assert not h01.store.has_envelope(Envelope.decode(good.encode()).id if reason == "malformed" else result.id)
                assert h01.metrics.get("envelopes_rejected", reason=reason, path="push") == 1
            # Future: also refused.
            (result,) = await h01.ingest([future.encode()], peer=peer, path=Arrival.PUSH)
            assert result.status == "stale"
            # The gossip validator refuses a batch with any bad envelope in it (so it is not forwarded).
            assert not h01.inbound.gossip_validate("t", peer, m.EnvelopeBatch((good.encode(), forged.encode())).encode())
            assert h01.inbound.gossip_validate("t", peer, m.EnvelopeBatch((good.encode(),)).encode())
            # Replay: the same valid envelope again is a duplicate, stored once, delivered once.
            first = await h01.ingest([good.encode()], peer=peer, path=Arrival.PUSH)
            again = await h01.ingest([good.encode()], peer=peer, path=Arrival.GOSSIP)
            assert [first[0].status, again[0].status] == ["ok", "duplicate"]
            assert not h01.inbound.gossip_validate(
                "t", peer, m.EnvelopeBatch((good.encode(),)).encode()
            )  # nothing new: not forwarded
            assert h01.store.inbox_count(C(H01)) == 1
            n.cancel_scope.cancel()

    run_virtual(main)


def test_oversize_documents_are_refused_by_the_receiving_node(tmp_path: Path) -> None:
    c = cluster(tmp_path, config=lambda cfg: dataclasses.replace(cfg, max_document_mb=0.5) if C(H01) in cfg.codes else cfg)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g22 = c.node("g22").e()
            doc = await send(c, G22, [H01], 1_000_000)
            await wait_until(lambda: "too_large" in views.track(g22, doc)["recipients"][0]["last_error"], timeout=60)
            h01 = c.node("h01").e()
            assert not h01.store.has_envelope(doc)
            assert h01.metrics.get("envelopes_rejected", reason="too_large", path="push") >= 1
            n.cancel_scope.cancel()

    run_virtual(main)


def test_directory_update_mid_run_revokes_a_key_and_admits_a_new_node(tmp_path: Path) -> None:
    c = cluster(tmp_path, {"g22": [G22], "h01": [H01], "h29": [H29]})
    newcomer_keys = AgencyKeys.generate(C("H79"), DeterministicRng(b"h79"))
    newcomer = NodeKey(DeterministicRng(b"n79")(32))

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g22 = c.node("g22").e()
            before = await send(c, H29, [G22], 10)
            await wait_until(lambda: delivered(c, H29, before), timeout=30)
            delta = DirectoryDelta(
                put_agencies=(agency_record(newcomer_keys, "UBND tỉnh Hậu Giang", newcomer.peer_id),),
                put_nodes=(NodeRecord(newcomer.peer_id, ()),),
                revoke=((c.keys[C(H29)].signing.kid, c.clock()),),
            )
            link = sign_delta(delta, net=c.net, base=1, serial=2, until=c.clock() + 30 * DAY_MS, key=c.authority, at=c.clock())
            assert await g22.membership.publish_directory([link]) == 2
            await wait_until(lambda: all(x.e().trust.directory.serial == 2 for x in c.nodes.values()), timeout=60)
            # H29's key is revoked everywhere: what it signs now is refused.
            h29 = c.node("h29").e()
            late = forge(c, h29, c.keys[C(H29)], G22)
            (res,) = await g22.ingest([late.encode()], peer=c.node("h29").peer_id, path=Arrival.PUSH)
            assert res.status == "revoked_key"
            # What was accepted before stays.
            assert in_inbox(c, G22, before)
            # The new agency is addressable (documents wait for its node to appear).
            doc = await g22.submit(C(G22), [C("H79")], meta(), [])
            assert views.track(g22, doc)["recipients"][0]["code"] == "000.00.00.H79"
            assert g22.trust.recipient(C("H79")) == Recipient(C("H79"), newcomer_keys.encryption.public)
            # The change survives a restart (links are kept in the store).
            await c.stop("h01")
            await c.start(n, "h01")
            assert c.node("h01").e().trust.directory.serial == 2
            n.cancel_scope.cancel()

    run_virtual(main)


def test_a_stranger_node_gets_nothing_from_the_request_handlers(tmp_path: Path) -> None:
    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]})
    stranger = NodeKey(b"\x42" * 32).peer_id

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g22 = c.node("g22").e()
            for handler, req in (
                (g22.inbound.on_push, m.EnvelopeBatch(()).encode()),
                (g22.inbound.on_sync, m.SyncRequest(m.SyncOp.HEADS).encode()),
                (g22.inbound.on_blocks, m.BlockRequest(()).encode()),
            ):
                err = m.peek_error(await handler(stranger, req))
                assert err is not None and err.code == "not_authorized"
            n.cancel_scope.cancel()

    run_virtual(main)
