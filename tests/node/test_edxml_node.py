"""edXML through real nodes: every corpus package in at its sender's node, out at each recipient's, statuses back.

Real engines, stores, crypto and spool on a virtual wire (simnet/virtual.py);
the same over the IPC socket of a real daemon is in tests/node/test_ipc_edxml.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from identity.sealing import FileSource
from node import views
from node.committer import run_inline
from node.edxml import Imported
from node.upload import Spool
from protocol import errors
from protocol.agency import AgencyCode
from protocol.edxml import (
    BusinessDocType,
    EdocFields,
    FileSpec,
    Kind,
    ZipMode,
    build_edoc,
    encode_package,
    read_package,
    write_bytes,
)
from protocol.edxml.carry import names_of
from protocol.status import StatusCode
from simnet.cluster import Cluster, wait_until
from tests.node.helpers import G22, H01, H29, SUB, C, cluster, delivered, in_inbox, meta, run_virtual
from tests.vectors.edxml import generate as gen

G09 = "000.00.00.G09"
NODES = {"g22": [G22, SUB], "h29": [H29], "h01": [H01], "g09": [G09]}
EDOCS = ["vnpt-zipped", "bkav", "dotnet", "lgsp", "containers"]
CORPUS = gen.HERE / "corpus"


def corpus(name: str) -> bytes:
    return (CORPUS / f"{name}.edxml").read_bytes()


def spools(tmp: Path, c: Cluster, max_bytes: int = 1 << 30) -> dict[str, Spool]:
    out = {}
    for name in c.nodes:
        # Writes in the event loop, as simnet's virtual runs do: a worker thread would let virtual time jump
        # ahead while it writes, and a loaded machine could then run the clock past the run's limit.
        sp = Spool(tmp / "spool" / name, max_bytes, offload=run_inline)
        sp.prepare()
        out[name] = sp
    return out


def allow(code: AgencyCode) -> None:
    pass


async def pieces(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class Net:
    """A cluster and a spool per node; packages go in at the node hosting their From."""

    def __init__(self, tmp: Path, **kw: Any) -> None:
        self.c = cluster(tmp, dict(NODES), **kw)
        self.spool = spools(tmp, self.c)

    def host(self, code: str) -> str:
        return next(name for name, codes in NODES.items() if code in codes)

    async def submit(self, data: bytes, *, require: Callable[[AgencyCode], None] = allow, at: str | None = None) -> Imported:
        package, _ = read_package(data)
        sender = package.edoc.sender.organ_id if package.edoc else package.status.sender.organ_id  # type: ignore[union-attr]
        name = at or self.host(sender)
        return await self.c.node(name).e().edxml.submit(pieces(data), self.spool[name], require)

    async def submit_raw(self, data: bytes, at: str) -> Imported:
        return await self.c.node(at).e().edxml.submit(pieces(data), self.spool[at], allow)

    def export(self, doc: Any, code: str, zip_mode: ZipMode = ZipMode.AS_RECEIVED) -> tuple[str, bytes]:
        document_id, out = self.c.by_code(code).e().edxml.export(doc, C(code), zip_mode)
        return document_id, b"".join(out)

    def spool_empty(self) -> bool:
        return all(not any(sp.dir.iterdir()) and sp.reserved == 0 for sp in self.spool.values())


def run(tmp: Path, body: Callable[[Net], Any], **kw: Any) -> None:
    net = Net(tmp, **kw)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await net.c.start_all(n)
            await body(net)
            n.cancel_scope.cancel()

    run_virtual(main)


# --- edocs in and out ---------------------------------------------------------------------


@pytest.mark.parametrize("name", EDOCS)
def test_a_corpus_package_crosses_the_network_and_comes_out_whole_at_each_recipient(tmp_path: Path, name: str) -> None:
    original, files = read_package(corpus(name))
    assert original.edoc is not None
    sender = original.edoc.sender.organ_id
    recipients = [r.organ_id for r in original.edoc.recipients]

    async def body(net: Net) -> None:
        done = await net.submit(corpus(name))
        assert done.kind is Kind.EDOC and not done.duplicate and done.id == done.doc
        assert done.document_id == original.edoc.document_id  # type: ignore[union-attr]
        await wait_until(lambda: delivered(net.c, sender, done.id), timeout=60)
        assert net.spool_empty()
        for code in recipients:
            document_id, exported = net.export(done.id, code)
            assert document_id == original.edoc.document_id  # type: ignore[union-attr]
            again = net.export(done.id, code)[1]
            assert again == exported, "an export is the same bytes every time"
            out, out_files = read_package(exported)
            assert out.edoc is not None
            # Every header element is carried; two TraceHeaders are added: the sender's node and this one.
            assert dataclasses.replace(out.edoc, trace_headers=()) == dataclasses.replace(original.edoc, trace_headers=())  # type: ignore[arg-type]
            added = out.edoc.trace_headers[len(original.edoc.trace_headers) :]  # type: ignore[union-attr]
            assert [t.organ_id for t in added] == [sender, code]
            assert out_files == files
            assert [a.wrapper for a in out.attachments] == [a.wrapper for a in original.attachments]
            assert [(a.name, a.sha256) for a in out.attachments] == [(a.name, a.sha256) for a in original.attachments]
            # The manifest's own fields for Trục's views come from the header.
            doc_meta = next(iter(net.c.by_code(code).e().read_document(done.id, C(code))))
            assert doc_meta.subject == original.edoc.subject  # type: ignore[union-attr]
            assert len(doc_meta.files) == len(files)
            track = views.track(net.c.by_code(code).e(), done.id)
            assert track["document_id"] == original.edoc.document_id  # type: ignore[union-attr]

    run(tmp_path, body)


def test_zip_modes_wrap_every_file_or_none(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        done = await net.submit(corpus("bkav"))
        await wait_until(lambda: in_inbox(net.c, G22, done.id), timeout=60)
        zipped, files = read_package(net.export(done.id, G22, ZipMode.ZIP)[1])
        assert all(a.wrapper for a in zipped.attachments)
        raw = net.export(done.id, G22, ZipMode.RAW)[1]
        assert b"PK\x03\x04" not in raw[raw.index(b"ContentTransferEncoded") :][:8]
        assert read_package(raw)[1] == files

    run(tmp_path, body)


def test_a_document_submitted_without_edxml_is_exported_as_vnpt_writes_one_and_its_statuses_find_it(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        g = net.c.by_code(G22).e()
        m = meta(number="42", notation="VPCP-TH", date="2026-11-30", doc_type="Công văn", signer="Trần Văn B")
        doc = await g.submit(C(G22), [C(H29)], m, [FileSource("a.pdf", "application/pdf", data=b"%PDF-1.7 x")])
        await wait_until(lambda: delivered(net.c, G22, doc), timeout=60)
        document_id, exported = net.export(doc, H29)
        assert document_id == "000.00.00.G22,2026/11/30,42/VPCP-TH" == names_of(m, G22, doc.hex()).document_id
        package, files = read_package(exported)
        assert package.edoc is not None and files == [b"%PDF-1.7 x"]
        assert (package.edoc.subject, package.edoc.code_number, package.edoc.signer_full_name) == (m.subject, "42", "Trần Văn B")
        assert [t.organ_id for t in package.edoc.trace_headers] == [G22, H29]
        # The recipient's software answers with a status package naming that DocumentId.
        status = gen.status(3).replace(b"000.00.00.G22,2026/11/22,15/VPCP-KSTT", document_id.encode())
        done = await net.submit(status)
        assert done.kind is Kind.STATUS and done.doc == doc and done.code is StatusCode.ACCEPTED
        await wait_until(lambda: _codes(net, doc, G22) == ["01", "03"], timeout=60)
        # Without a number, the Trục id is the DocumentId.
        doc2 = await g.submit(C(G22), [C(H29)], meta(), [])
        await wait_until(lambda: in_inbox(net.c, H29, doc2), timeout=60)
        assert net.export(doc2, H29)[0] == doc2.hex()

    run(tmp_path, body)


# --- statuses -----------------------------------------------------------------------------


def _codes(net: Net, doc: Any, code: str) -> list[str]:
    return [f"{s.code.value:02d}" for s in net.c.by_code(code).e().edxml.status_packages(doc, C(code))]


def test_status_packages_travel_both_ways_and_repeats_are_duplicates(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        doc = (await net.submit(corpus("containers"))).id
        await wait_until(lambda: delivered(net.c, G22, doc), timeout=60)
        # The recipient's software sends its 01 too: the node sent its own at delivery.
        first = await net.submit(gen.status(1))
        assert first.duplicate and first.doc == doc and first.code is StatusCode.ARRIVED
        three = await net.submit(gen.status(3))
        assert not three.duplicate and three.doc == doc
        assert (await net.submit(gen.status(3))).id == three.id  # sent again: the same status
        await net.submit(gen.status(4))
        five = [await net.submit(gen.status(5)) for _ in range(2)]
        assert not five[0].duplicate and not five[1].duplicate  # 05 may repeat
        await wait_until(lambda: _codes(net, doc, G22) == ["01", "03", "04", "05", "05"], timeout=60)
        # What the sender's software reads back: status packages, as VNPT writes them.
        for sp in net.c.by_code(G22).e().edxml.status_packages(doc, C(G22)):
            p, _ = read_package(sp.package)
            assert p.status is not None and p.status.sender.organ_id == H29
            assert p.status.response_for.organ_id == G22
            assert p.status.response_for.document_id == "000.00.00.G22,2026/11/22,15/VPCP-KSTT"
            assert p.status.response_for.code == "15/VPCP-KSTT"
        notes = [r.note for _, _, r in net.c.by_code(G22).e().store.history(doc, C(H29)) if r.code == 3]
        assert notes == [gen.STATUS_DESCRIPTIONS[3]]
        # The sender asks to take it back (13); the recipient agrees (15).
        await net.submit(gen.status(13))
        await wait_until(lambda: _codes(net, doc, H29) == ["13"], timeout=60)
        await net.submit(gen.status(15))
        await wait_until(lambda: "15" in _codes(net, doc, G22), timeout=60)

    run(tmp_path, body)


def test_a_status_for_an_unknown_document_or_an_illegal_one_is_refused(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        with pytest.raises(errors.NotFoundError, match="ResponseFor"):
            await net.submit(gen.status(3))
        doc = (await net.submit(corpus("containers"))).id
        await wait_until(lambda: delivered(net.c, G22, doc), timeout=60)
        with pytest.raises(errors.IllegalTransitionError):
            await net.submit(gen.status(6))  # finished before accepted
        with pytest.raises(errors.SchemaError, match="StatusCode '07'"):
            await net.submit(gen.status(3).replace(b"<edXML:StatusCode>03<", b"<edXML:StatusCode>07<"))
        with pytest.raises(errors.NotHostedError):
            await net.submit(gen.status(3), at="g22")  # From H29 is not hosted on G22's node

    run(tmp_path, body)


# --- duplicates, changes ------------------------------------------------------------------


def test_the_same_package_sent_again_is_the_same_document_and_other_content_is_refused(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        first = await net.submit(corpus("containers"))
        again = await net.submit(corpus("containers"))
        assert again.duplicate and again.id == first.id
        changed = corpus("containers").replace("Về việc thử nghiệm".encode(), b"Other subject")
        assert changed != corpus("containers")
        with pytest.raises(errors.DocumentIdTakenError, match="update or replace"):
            await net.submit(changed)
        # The same DocumentId to other recipients is another document.
        other = corpus("containers").replace(b"<edXML:OrganId>000.00.00.H29<", b"<edXML:OrganId>000.00.00.H01<")
        third = await net.submit(other)
        assert not third.duplicate and third.id != first.id
        assert net.spool_empty()

    run(tmp_path, body)


def _original(document_id: str) -> bytes:
    fields = EdocFields(
        sender=G22, recipients=(H29,), subject="Văn bản gốc", number="10", notation="VPCP-KSTT", date="2026-11-01"
    )
    assert fields.derived_document_id() == document_id
    pkg = build_edoc(fields, names=lambda c: "", files=[FileSpec("goc.pdf", "application/pdf")])
    return write_bytes(pkg, [b"%PDF-1.4 goc"], zip=ZipMode.RAW)


@pytest.mark.parametrize(("name", "business"), [("revoke", "revoke"), ("update", "update"), ("replace", "replace")])
def test_a_change_names_its_target_by_document_id(tmp_path: Path, name: str, business: str) -> None:
    target_id = "000.00.00.G22,2026/11/01,10/VPCP-KSTT"

    async def body(net: Net) -> None:
        with pytest.raises(errors.NotFoundError, match="has not sent through this node"):
            await net.submit(corpus(name))
        original = (await net.submit(_original(target_id))).id
        change = await net.submit(corpus(name))
        await wait_until(lambda: in_inbox(net.c, H29, change.id), timeout=60)
        h29 = net.c.by_code(H29).e()
        m = next(iter(h29.read_document(change.id, C(H29))))
        assert m.business.value == business and m.ref == original
        out, _ = read_package(net.export(change.id, H29)[1])
        assert out.edoc is not None and out.edoc.business.document_id == target_id
        assert out.edoc.business.doc_type is BusinessDocType[business.upper()]
        # The recipient answers the change with 15: it goes to the change, not the original.
        agreed = await net.submit(gen.status(15))
        assert agreed.doc == change.id

    run(tmp_path, body)


# --- refused before anything is kept ------------------------------------------------------


def test_a_package_is_refused_at_its_header_before_any_attachment_is_kept(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        with pytest.raises(errors.NotHostedError):
            await net.submit(corpus("containers"), at="h29")  # From G22: not hosted on H29's node
        unknown = corpus("containers").replace(b"<edXML:OrganId>000.00.00.H29<", b"<edXML:OrganId>000.00.00.H55<")
        with pytest.raises(errors.UnknownAgencyError):
            await net.submit(unknown)

        def deny(code: AgencyCode) -> None:
            raise errors.AccessDeniedError(f"you may not act for {code}")

        with pytest.raises(errors.AccessDeniedError):
            await net.submit(corpus("containers"), require=deny)
        with pytest.raises(errors.SchemaError, match="does not make a document"):
            await net.submit(corpus("containers").replace("Về việc thử nghiệm".encode(), b""))
        for hostile, (data, code) in gen.hostile().items():
            with pytest.raises(errors.EdxmlError) as caught:
                await net.submit_raw(data, at="g22")
            assert type(caught.value).__name__ == code, hostile
        assert net.spool_empty()
        assert list(net.c.by_code(G22).e().store.docs()) == []

    run(tmp_path, body)


def test_attachments_past_the_document_limit_are_refused_while_streaming(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        big = gen.edoc_with([("big.bin", "application/octet-stream", bytes(3 << 20))])
        with pytest.raises(errors.TooLargeError, match="max_document_mb"):
            await net.submit(big)
        assert net.spool_empty()

    run(tmp_path, body, config=lambda cfg: dataclasses.replace(cfg, max_document_mb=2))


def test_a_sender_cannot_put_another_agency_in_the_header_it_signs(tmp_path: Path) -> None:
    """A hostile sender seals a manifest whose edXML From is another agency: the recipient's node refuses it (02)."""

    async def body(net: Net) -> None:
        package, files = read_package(corpus("dotnet"))  # From G09 to G22
        g = net.c.by_code(H01).e()  # H01 signs it, claiming to be G09
        m = dataclasses.replace(meta(), edxml=encode_package(package))
        sources = [FileSource(a.name, "application/pdf", data=f) for a, f in zip(package.attachments, files, strict=True)]
        doc = await g.submit(C(H01), [C(G22)], m, sources)
        await wait_until(lambda: views.track(g, doc)["recipients"][0]["state"] == "failed", timeout=60)
        reason = views.track(g, doc)["recipients"][0]["last_error"]
        assert "From is '000.00.00.G09'" in reason and "signed by 000.00.00.H01" in reason
        assert not in_inbox(net.c, G22, doc)

    run(tmp_path, body)
