"""What a recipient will refuse is refused at submit; what a recipient refuses anyway reaches its sender.

Before: file names like ``../../etc/passwd`` or an empty media type were
accepted at the sender, refused at the recipient, and retried for 30 days
while ``truc queues`` said "waiting for its signed receipt".

Real engines, stores and crypto on the virtual wire, in virtual time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import trio

import node.submission
from identity.sealing import FileSource, seal
from node import views
from node.inbound import Arrival
from protocol import cbor
from protocol import messages as m
from protocol.body import manifest_prefix
from protocol.envelope import Kind
from protocol.errors import SchemaError
from protocol.status import StatusCode
from simnet.cluster import wait_until
from tests.node.helpers import G22, H01, C, cluster, meta, run_virtual, send

PLAIN = "text/plain"


@pytest.mark.parametrize(
    ("name", "mime", "why"),
    [
        ("../../etc/passwd", PLAIN, "not a plain file name"),
        ("..", PLAIN, "not a plain file name"),
        ("a\\b.txt", PLAIN, "not a plain file name"),
        ("bell\x07.txt", PLAIN, "control character"),
        ("x" * 256, PLAIN, "at most 255 bytes"),
        ("a.txt", "", "not a media type"),
        ("a.txt", "pdf", "not a media type"),
    ],
)
def test_submit_refuses_what_the_recipient_would_refuse_and_stores_nothing(
    tmp_path: Path, name: str, mime: str, why: str
) -> None:
    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]})

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g22 = c.node("g22").e()
            with pytest.raises(SchemaError, match=why) as err:
                await g22.submit(C(G22), [C(H01)], meta(), [FileSource(name, mime, data=b"x")], idempotency_key="k")
            assert err.value.code == "bad_schema"
            assert list(g22.store.docs()) == [] and list(g22.store.pending()) == []
            assert g22.store.idempotent(C(G22), "k") is None
            n.cancel_scope.cancel()

    run_virtual(main)


def careless_seal(name: str) -> Any:
    """``seal_document`` as a sender without today's checks (an older node) would: a file named ``name``."""

    def seal_document(meta: Any, files: Any, *, entries: Any, max_length: Any = None, **kw: Any) -> Any:
        full = dataclasses.replace(meta, files=entries)
        manifest_map = full.to_cbor()
        manifest_map["files"][0]["name"] = name
        manifest = cbor.encode(manifest_map)
        plaintext = [manifest_prefix(manifest), manifest, *(f.data for f in files)]
        env = seal(Kind.DOCUMENT, length=len(manifest) + 4 + full.files_size, plaintext=plaintext, **kw)
        return env, full

    return seal_document


@pytest.mark.parametrize("size", [10, 200_000], ids=["inline", "blocks"])
def test_a_document_its_recipient_cannot_open_fails_at_the_sender_with_the_recipients_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]})

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g22, h01 = c.node("g22").e(), c.node("h01").e()
            monkeypatch.setattr(node.submission, "seal_document", careless_seal("../../etc/passwd"))
            doc = await g22.submit(C(G22), [C(H01)], meta(), [FileSource("a.txt", PLAIN, data=b"x" * size)])
            monkeypatch.undo()

            def track() -> dict[str, Any]:
                return views.track(g22, doc)["recipients"][0]  # type: ignore[no-any-return]

            await wait_until(lambda: track()["state"] == "failed", timeout=600)
            r = track()
            assert r["last_error"].startswith("refused by the recipient: bad_schema"), r
            assert "not a plain file name" in r["last_error"]
            # The refusal is the recipient's signed 02, recorded at both ends.
            assert [s["code"] for s in r["statuses"]] == ["02"] and r["phase"] == "rejected"
            assert r["statuses"][0]["author"] == H01 and "not a plain file name" in r["statuses"][0]["note"]
            failed = [e for e in g22.events.recent if e.kind == "delivery.failed"]
            assert failed and failed[-1].fields["id"] == str(doc) and "refused by the recipient" in failed[-1].fields["reason"]
            # truc queues says so, instead of "waiting for its signed receipt".
            (q,) = views.queues(g22)
            assert q["recipient"] == H01 and q["pending"] == 0 and q["refused"] == 1
            assert q["reason"].startswith("refused by the recipient: bad_schema"), q
            # Nothing is retried any more, and the recipient's inbox never saw it.
            attempts = r["attempts"]
            await trio.sleep(1800)  # 15 receipt timeouts of this cluster
            assert track()["attempts"] == attempts and track()["state"] == "failed"
            assert h01.store.inbox_count(C(H01)) == 0
            rec = h01.store.doc(doc)
            assert rec is not None and "not a plain file name" in rec.problem
            n.cancel_scope.cancel()

    run_virtual(main)


def test_a_permanent_refusal_by_the_recipients_node_fails_the_delivery_at_once(tmp_path: Path) -> None:
    def small_h01(cfg: Any) -> Any:
        return dataclasses.replace(cfg, max_document_mb=0.5) if C(H01) in cfg.codes else cfg

    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]}, config=small_h01)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            g22 = c.node("g22").e()
            doc = await send(c, G22, [H01], 1_000_000)
            await wait_until(lambda: views.track(g22, doc)["recipients"][0]["state"] == "failed", timeout=60)
            r = views.track(g22, doc)["recipients"][0]
            assert r["last_error"].startswith("refused by the recipient: too_large"), r
            assert r["attempts"] == 1, "refused for good: not retried"
            assert any(e.kind == "delivery.failed" and e.fields["id"] == str(doc) for e in g22.events.recent)
            (q,) = views.queues(g22)
            assert q["refused"] == 1 and q["reason"].startswith("refused by the recipient: too_large")
            n.cancel_scope.cancel()

    run_virtual(main)


def test_which_refusals_are_for_good() -> None:
    """A refusal that depends on the envelope alone is final; one that depends on the recipient's view may pass later."""
    final = ["malformed", "too_large", "bad_schema", "bad_signature", "hash_mismatch", "cannot_decrypt", "wrong_network",
             "revoked_key", "not_authorized"]  # fmt: skip
    later = ["unknown_agency", "unknown_key", "key_not_valid", "stale", "directory_expired", "too_many_parked", "rejected",
             "internal", "some_future_code"]  # fmt: skip
    for code in final:
        assert m.refused_for_good(code), code
    for code in later:
        assert not m.refused_for_good(code), code


def test_a_recipient_cannot_send_02_before_the_document_arrived(tmp_path: Path) -> None:
    """02 before 01 is the node's own refusal of a document that does not open: an integrator cannot send it."""
    from identity.provision import DeterministicRng
    from identity.sealing import seal_document
    from protocol.errors import NotAuthorizedError

    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]})

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            h01 = c.node("h01").e()
            # A document whose blocks never come (nobody kept them): its header is here, it has not arrived.
            env, _ = seal_document(
                meta(),
                [FileSource("a.bin", "application/octet-stream", data=b"x" * 200_000)],
                net=h01.trust.net,
                sender=c.keys[C(G22)],
                recipients=[h01.trust.recipient(C(H01))],
                at=h01.clock(),
                rng=DeterministicRng(b"lost blocks"),
            )
            (res,) = await h01.ingest([env.encode()], peer=c.node("g22").peer_id, path=Arrival.PUSH)
            assert res.status == "ok" and h01.store.inbox_entry(C(H01), env.id) is None
            with pytest.raises(NotAuthorizedError, match="has not arrived"):
                await h01.send_status(env.id, C(H01), StatusCode.REJECTED, note="no")
            # After its 01 a recipient rejects as before.
            doc = await send(c, G22, [H01], 10)
            await wait_until(lambda: h01.store.inbox_entry(C(H01), doc) is not None, timeout=60)
            await h01.send_status(doc, C(H01), StatusCode.REJECTED, note="không thuộc thẩm quyền")
            n.cancel_scope.cancel()

    run_virtual(main)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_through_the_socket_and_the_cli_a_bad_attachment_is_bad_schema_with_the_reason(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import cli
    from tests.procs import provision, running

    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    with running(homes) as nodes:
        g22 = nodes["g22"]
        for name, mime, why in [("../../etc/passwd", PLAIN, "not a plain file name"), ("a.txt", "", "not a media type")]:
            with g22.client() as client, pytest.raises(SchemaError, match=why) as err:
                client.call(
                    "submit", **{"from": G22, "to": [H01], "subject": "x", "files": [{"name": name, "mime": mime, "data": b"x"}]}
                )
            assert err.value.code == "bad_schema"
        attachment = tmp_path / "bao-cao.txt"
        attachment.write_text("x")
        result = CliRunner().invoke(
            cli,
            [
                "send",
                "--home",
                str(homes["g22"]),
                "--from",
                "G22",
                "--to",
                "H01",
                "--subject",
                "x",
                "--mime",
                "",
                str(attachment),
            ],
        )
        assert result.exit_code == 2 and "not a media type" in result.output, result.output
        assert g22.call("documents.list", role="sent") == []
