"""The edXML corpus: every producer's quirks read right, round trips exact, hostile packages refused, vectors pinned."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from io import BytesIO

import pytest

from protocol import errors
from protocol.edxml import (
    BusinessDocType,
    Kind,
    Limits,
    Package,
    ZipMode,
    decode_package,
    encode_package,
    parse_timestamp,
    read_package,
    with_trace,
    write_bytes,
)
from protocol.edxml.tree import EDXML_NS, XMLDSIG_NS
from tests.vectors.edxml import generate as gen
from tests.vectors.hexfile import read_hex_file

CORPUS = gen.HERE / "corpus"
HOSTILE = gen.HERE / "hostile"
GOLDEN = gen.HERE / "golden"
AT = gen.AT
STATUS_CODES = sorted(gen.STATUS_DESCRIPTIONS)


def corpus_file(name: str) -> bytes:
    return (CORPUS / f"{name}.edxml").read_bytes()


def read(name: str) -> tuple[Package, list[bytes]]:
    return read_package(corpus_file(name))


# --- the files are what the generator makes ----------------------------------------------


def test_checked_in_corpus_is_what_the_generator_makes() -> None:
    built = gen.corpus()
    assert {p.stem for p in CORPUS.glob("*.edxml")} == set(built)
    for name, data in built.items():
        assert corpus_file(name) == data, f"{name}: regenerate with python -m tests.vectors.edxml.generate"


def test_checked_in_hostile_files_are_what_the_generator_makes() -> None:
    built = {k: v for k, (v, _) in gen.hostile().items() if len(v) <= 128 << 10}
    assert {p.stem for p in HOSTILE.glob("*.edxml")} == set(built)
    for name, data in built.items():
        assert (HOSTILE / f"{name}.edxml").read_bytes() == data, name


@pytest.mark.parametrize("name", sorted(gen.golden()))
def test_golden_vectors_still_produced(name: str) -> None:
    _, data = gen.golden()[name]
    assert data == read_hex_file(GOLDEN / f"{name}.hex"), f"{name}: the output changed; bump the CBOR version if deliberate"


def test_every_golden_file_is_built() -> None:
    assert {p.stem for p in GOLDEN.glob("*.hex")} == set(gen.golden())


def test_pinned_cbor_forms_decode_to_valid_packages() -> None:
    vnpt = decode_package(read_hex_file(GOLDEN / "cbor-vnpt-read.hex"))
    assert vnpt == read("vnpt-zipped")[0]
    status = decode_package(read_hex_file(GOLDEN / "cbor-status-03.hex"))
    assert status.status is not None and status.status.code == 3
    built = decode_package(read_hex_file(GOLDEN / "cbor-built-edoc.hex"))
    assert built.edoc is not None and built.edoc.code_notation == "VPCP-KSTT"


def test_pinned_zip_output_opens_with_zipfile() -> None:
    pkg, files = read_package(read_hex_file(GOLDEN / "write-built-zip.hex"))
    assert files == [gen.pdf("golden", 200)]
    assert pkg.attachments[0].wrapper == "01020304-0506-4708-890a-0b0c0d0e0f10.pdf"
    assert [t.organ_id for t in pkg.edoc.trace_headers] == ["000.00.00.G22", "000.00.00.H29"]  # type: ignore[union-attr]


# --- each producer ---------------------------------------------------------------------


def test_vnpt_zipped_attachment_is_unwrapped_and_fields_read() -> None:
    pkg, files = read("vnpt-zipped")
    assert pkg.kind is Kind.EDOC and pkg.edoc is not None and not pkg.warnings
    e = pkg.edoc
    assert e.sender.organ_id == "000.00.00.G22" and e.sender.organization_in_charge == "Chính phủ"
    assert [r.organ_id for r in e.recipients] == ["000.00.00.H29", "000.00.00.H01"]
    assert e.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert (e.code_number, e.code_notation, e.type_name, e.place) == ("7816", "VPCP-TTĐT", "Công văn", "Hà Nội")
    assert (e.date_iso, e.due_iso, e.urgency) == ("2015-09-30", "2015-10-15", 1)
    assert (e.signer_full_name, e.signer_title) == ("Nguyễn Văn A", "Phó Chủ nhiệm")
    assert e.signer_competence == "KT. BỘ TRƯỞNG, CHỦ NHIỆM"
    assert e.content == "Kính gửi các cơ quan & đơn vị"
    assert e.to_places == ("Như trên", "Lưu: VT, TTĐT") and e.appendixes == ("Phụ lục I",)
    assert e.business.doc_type is BusinessDocType.NEW and e.business.staff is not None
    assert e.signature is not None and e.signature.ns == EDXML_NS  # the placeholder, kept
    (att,) = pkg.attachments
    assert files == [gen.VNPT_FILE]
    assert att.wrapper == f"{gen.WRAP_UUID}.pdf" and att.unwrapped
    assert (att.name, att.declared_type, att.media_type) == ("7816-VPCP-TTĐT.pdf", "application/zip", "application/pdf")
    assert att.size == len(gen.VNPT_FILE) and att.sha256 == hashlib.sha256(gen.VNPT_FILE).digest()


def test_bkav_default_namespace_business_spelling_and_lying_types() -> None:
    pkg, files = read("bkav")
    e = pkg.edoc
    assert e is not None and e.steering_type == 3
    assert e.business.doc_type is BusinessDocType.NEW
    trace_list = pkg.root.find("edXMLEnvelope", "edXMLHeader", "TraceHeaderList")
    assert trace_list is not None and trace_list.child("Business") is not None  # spelling kept
    assert e.signature is not None and e.signature.ns == EDXML_NS
    assert files == list(gen.BKAV_FILES)  # raw, though ContentType says zip; CDATA and 64/76-column lines decoded
    assert [a.wrapper for a in pkg.attachments] == ["", ""]
    assert [a.media_type for a in pkg.attachments] == ["application/pdf", "application/octet-stream"]


def test_dotnet_soap_xlink_empty_signature_and_bare_content_id() -> None:
    pkg, files = read("dotnet")
    assert files == [gen.DOTNET_FILE]  # CRLF line breaks inside the base64
    assert pkg.attachments[0].content_id == "to-trinh"
    trace_list = pkg.root.find("edXMLEnvelope", "edXMLHeader", "TraceHeaderList")
    assert trace_list is not None
    assert {a.name for a in trace_list.attrs} == {"id", "version", "mustUnderstand", "actor"}
    ref = pkg.root.find("edXMLEnvelope", "edXMLBody", "edXMLManifest", "Reference")
    assert ref is not None and ref.attr("href", "http://www.w3.org/1999/xlink") == "cid:to-trinh"
    assert pkg.edoc is not None and pkg.edoc.signature is None  # DigitalSignature is not Signature, kept as unknown
    assert pkg.root.find("edXMLEnvelope", "edXMLHeader", "DigitalSignature") is not None
    assert pkg.edoc.urgency == 2 and pkg.edoc.to_places == ()


def test_lgsp_dates_uuid_unknown_elements_empty_response_for() -> None:
    pkg, files = read("lgsp")
    e = pkg.edoc
    assert e is not None and files == [gen.LGSP_FILE]
    assert e.document_id == "6f1c2d3e-4b5a-4c6d-8e7f-90a1b2c3d4e5"
    assert (e.promulgation_date, e.date_iso) == ("22/11/2026", "2026-11-22")
    assert (e.due_date, e.due_iso) == ("05/12/2026", "2026-12-05")
    assert e.steering_type == 0 and e.urgency == 3
    (rf,) = e.response_for  # the empty <ResponseFor/> answers nothing
    assert rf.document_id == "000.00.00.G22,2014/02/30,7816/VPCP-TTĐT" and rf.promulgation_date == "2014/02/30"
    mh = pkg.root.find("edXMLEnvelope", "edXMLHeader", "MessageHeader")
    assert mh is not None
    assert [c.name for c in mh.children][:2] == ["DocumentId", "From"]  # received order kept
    tracking = next(c for c in mh.children if c.name == "Tracking")
    assert tracking.ns == "urn:lgsp:facade:1" and tracking.text == "LGSP-TRACK-0001"
    assert tracking.attr("channel", "urn:lgsp:facade:1") == "api" and tracking.attr("priority") == "high"
    assert mh.child("ResponseForTask") is not None and mh.child("ApplicationType") is not None
    assert pkg.attachments[0].media_type == "text/plain"


def test_zip_containers_are_kept_as_they_came() -> None:
    pkg, files = read("containers")
    assert files == [gen.DOCX_FILE, gen.MULTI_ZIP, gen.UUID_JPG_ZIP]
    assert [a.wrapper for a in pkg.attachments] == ["", "", ""]
    assert pkg.attachments[0].media_type.endswith("wordprocessingml.document")
    assert zipfile.ZipFile(BytesIO(files[0])).namelist()[0] == "[Content_Types].xml"


def test_business_types() -> None:
    revoke = read("revoke")[0].edoc
    update = read("update")[0].edoc
    replace = read("replace")[0].edoc
    assert revoke is not None and update is not None and replace is not None
    assert revoke.business.doc_type is BusinessDocType.REVOKE and revoke.business.reason == "Ban hành nhầm"
    assert revoke.business.document_id == "000.00.00.G22,2026/11/01,10/VPCP-KSTT"
    assert update.business.doc_type is BusinessDocType.UPDATE
    assert [(r.organ_id, r.added) for r in update.business.receivers] == [("000.00.00.H01", False), ("000.00.00.H29", True)]
    assert (update.business.document_info, update.business.document_receiver) == ("0", "1")
    assert replace.business.doc_type is BusinessDocType.REPLACE
    (r,) = replace.business.replacements
    assert r.organ_ids == ("000.00.00.H29", "000.00.00.H01")


@pytest.mark.parametrize("code", STATUS_CODES)
def test_status_packages(code: int) -> None:
    pkg, files = read(f"status-{code:02d}")
    assert pkg.kind is Kind.STATUS and pkg.status is not None and files == []
    s = pkg.status
    assert s.code == code and s.status_code == f"{code:02d}" and s.description == gen.STATUS_DESCRIPTIONS[code]
    sender, addressee = ("000.00.00.G22", "000.00.00.H29") if code == 13 else ("000.00.00.H29", "000.00.00.G22")
    assert s.sender.organ_id == sender and s.response_for.organ_id == addressee
    assert s.response_for.document_id == "000.00.00.G22,2026/11/22,15/VPCP-KSTT"
    assert parse_timestamp(s.timestamp) is not None
    assert s.staff is not None and s.staff.mobile == "0987000000"


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(gen.corpus()))
@pytest.mark.parametrize("mode", list(ZipMode))
def test_round_trip_is_exact(name: str, mode: ZipMode) -> None:
    pkg, files = read(name)
    seq = iter(range(1 << 20))
    out = write_bytes(pkg, files, zip=mode, at_ms=AT, rng=lambda n: bytes(next(seq) % 256 for _ in range(n)))
    again, files2 = read_package(out)
    assert files2 == files  # byte-identical after unwrapping
    assert [a.sha256 for a in again.attachments] == [a.sha256 for a in pkg.attachments]
    if mode is ZipMode.AS_RECEIVED:
        assert again == pkg  # every element, attribute and text, in order; the same attachment facts
        assert write_bytes(again, files2, at_ms=AT) == out  # and the writer is a fixed point
    else:
        assert [a.unwrapped for a in again.attachments] == [mode is ZipMode.ZIP] * len(files)
        assert again.status == pkg.status
        if pkg.edoc is not None and again.edoc is not None:
            # Only ContentType follows the wrapping; every other field is as read.
            assert dataclasses.replace(again.edoc, references=pkg.edoc.references) == pkg.edoc
            assert [r.attachment_name for r in again.edoc.references] == [r.attachment_name for r in pkg.edoc.references]


@pytest.mark.parametrize("name", sorted(gen.corpus()))
def test_cbor_form_round_trip(name: str) -> None:
    pkg, _ = read(name)
    data = encode_package(pkg)
    assert decode_package(data) == pkg
    assert encode_package(decode_package(data)) == data


def test_recipient_export_appends_one_trace_header_and_keeps_everything_else() -> None:
    pkg, files = read("vnpt-zipped")
    out = write_bytes(with_trace(pkg, "000.00.00.H29", AT), files, at_ms=AT)
    again, files2 = read_package(out)
    assert files2 == files and again.attachments[0].wrapper == pkg.attachments[0].wrapper
    assert again.edoc is not None and pkg.edoc is not None
    assert again.edoc.trace_headers == (*pkg.edoc.trace_headers, again.edoc.trace_headers[-1])
    assert again.edoc.trace_headers[-1].organ_id == "000.00.00.H29"
    assert parse_timestamp(again.edoc.trace_headers[-1].timestamp) == AT // 1000 * 1000
    trace_list = again.root.find("edXMLEnvelope", "edXMLHeader", "TraceHeaderList")
    assert trace_list is not None and [c.name for c in trace_list.children] == ["TraceHeader", "TraceHeader", "Bussiness"]
    # Every other element is as received.
    strip = with_trace(pkg, "000.00.00.H29", AT)
    assert again.root == strip.root


def test_foreign_prefixes_survive_and_edxml_is_spelt_edxml() -> None:
    pkg, files = read("dotnet")
    out = write_bytes(pkg, files)
    assert b"<edXML:TraceHeaderList " in out and b'xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"' in out
    assert b"xlink:href=" in out and b"<edXML:DigitalSignature/>" in out
    lgsp = write_bytes(*read("lgsp"))
    assert b'<lgsp:Tracking xmlns:lgsp="urn:lgsp:facade:1" lgsp:channel="api" priority="high">' in lgsp


def test_xmldsig_signature_is_kept_in_its_namespace() -> None:
    data = (
        corpus_file("vnpt-zipped")
        .replace(b"<edXML:Signature>", f'<ds:Signature xmlns:ds="{XMLDSIG_NS}">'.encode())
        .replace(b"</edXML:Signature>", b"</ds:Signature>")
    )
    data = data.replace(b"<edXML:SignedInfo>", b"<ds:SignedInfo>", 1).replace(b"</edXML:SignedInfo>", b"</ds:SignedInfo>", 1)
    pkg, files = read_package(data)
    assert pkg.edoc is not None and pkg.edoc.signature is not None and pkg.edoc.signature.ns == XMLDSIG_NS
    again, _ = read_package(write_bytes(pkg, files, at_ms=AT))
    assert again == pkg


def test_absent_signature_is_fine() -> None:
    pkg, _ = read("lgsp")
    assert pkg.edoc is not None and pkg.edoc.signature is None


# --- hostile --------------------------------------------------------------------------------

HOSTILE_CASES = gen.hostile()


@pytest.mark.parametrize("name", sorted(HOSTILE_CASES))
def test_hostile_package_gets_its_typed_one_line_error(name: str) -> None:
    data, cls_name = HOSTILE_CASES[name]
    cls = getattr(errors, cls_name)
    with pytest.raises(cls) as info:
        read_package(data)
    exc = info.value
    assert isinstance(exc, errors.RemoteError) and exc.code.startswith("edxml")
    assert "\n" not in exc.message and len(exc.message) < 300
    assert "root:" not in exc.message  # nothing from /etc/passwd or the like


@pytest.mark.parametrize("name", sorted(HOSTILE_CASES))
def test_hostile_package_fed_in_pieces_never_completes(name: str) -> None:
    from protocol.edxml import PackageRead, Reader

    data, cls_name = HOSTILE_CASES[name]
    reader = Reader()
    seen = []
    with pytest.raises(getattr(errors, cls_name)):
        for i in range(0, len(data), 997):
            seen += reader.feed(data[i : i + 997])
        seen += reader.close()
    assert not any(isinstance(e, PackageRead) for e in seen)


def test_generated_big_hostile_cases() -> None:
    with pytest.raises(errors.EdxmlLimitError, match="deeper"):
        read_package(gen.deep(10_000))
    with pytest.raises(errors.EdxmlLimitError, match="elements"):
        read_package(gen.many_elements(6_000))
    with pytest.raises(errors.EdxmlLimitError, match="attachments"):
        read_package(gen.many_attachments(257))
    assert len(read_package(gen.many_attachments(40))[1]) == 40


def test_namespace_floods_and_doubled_header_parts_are_refused() -> None:
    decls = " ".join(f'xmlns:p{i}="urn:p{i}"' for i in range(70))
    with pytest.raises(errors.EdxmlLimitError, match="namespace"):
        read_package(f'<edXML:edXML xmlns:edXML="{gen.NS}" {decls}/>'.encode())
    second_from = gen.org("From", "X", "Y").encode()
    twice = corpus_file("vnpt-zipped").replace(b"<edXML:MessageHeader>", b"<edXML:MessageHeader>" + second_from)
    with pytest.raises(errors.EdxmlHeaderError, match="From twice"):
        read_package(twice)
    envelope = gen.edoc_with([]).replace(b"<edXML:AttachmentEncoded>", b"<edXML:edXMLEnvelope/><edXML:AttachmentEncoded>")
    with pytest.raises(errors.EdxmlHeaderError, match="2 edXMLEnvelope"):
        read_package(envelope)
    rf = b"<edXML:ResponseFor><edXML:OrganId>A</edXML:OrganId><edXML:DocumentId>B</edXML:DocumentId></edXML:ResponseFor>"
    with pytest.raises(errors.EdxmlHeaderError, match="several"):
        read_package(gen.status(3).replace(b"<edXML:StaffInfo>", rf + b"<edXML:StaffInfo>"))


def test_stored_wrapper_is_unwrapped_and_odd_namespace_uris_survive() -> None:
    file = gen.pdf("stored", 700)
    wrapped = gen.zip_files([(f"{gen.WRAP_UUID}.pdf", file)], stream=False, method=zipfile.ZIP_STORED)
    pkg, files = read_package(gen.edoc_with([("a.pdf", "application/zip", wrapped)]))
    assert files == [file] and pkg.attachments[0].wrapper == f"{gen.WRAP_UUID}.pdf"
    odd = gen.edoc_with([], message_extra='<q:X xmlns:q="urn:a&#10;b c" q:k="v">t</q:X>')
    pkg, _ = read_package(odd)
    x = next(c for c in pkg.root.walk() if c.name == "X")
    assert x.ns == "urn:a\nb c" and x.attr("k", "urn:a\nb c") == "v"
    assert read_package(write_bytes(pkg))[0] == pkg


def test_zip_bomb_caps_are_parameters() -> None:
    wrapped = gen.zip_files([(f"{gen.WRAP_UUID}.pdf", gen.payload("cap", 300_000))])
    data = gen.edoc_with([("a.pdf", "application/zip", wrapped)])
    assert read_package(data)[1] == [gen.payload("cap", 300_000)]
    with pytest.raises(errors.EdxmlZipBombError, match="past 100000 bytes"):
        read_package(data, Limits(max_inflated_bytes=100_000))
    zeros = gen.edoc_with([("a.pdf", "application/zip", gen.zip_files([(f"{gen.WRAP_UUID}.pdf", bytes(2 << 20))]))])
    assert read_package(zeros)[1] == [bytes(2 << 20)]  # under the 4 MiB grace: compressible files pass
    with pytest.raises(errors.EdxmlZipBombError, match="times"):
        read_package(zeros, Limits(ratio_grace_bytes=1 << 20))


def test_attachment_size_cap() -> None:
    data = gen.edoc_with([("a.bin", "application/octet-stream", bytes(5000))])
    with pytest.raises(errors.EdxmlLimitError, match="larger than 4096"):
        read_package(data, Limits(max_attachment_bytes=4096))


def test_header_events_come_before_attachment_bytes() -> None:
    from protocol.edxml import AttachmentData, AttachmentEnded, AttachmentStarted, HeaderRead, PackageRead, Reader

    reader = Reader()
    events = reader.feed(corpus_file("bkav")) + reader.close()
    kinds = [type(e) for e in events]
    assert kinds[0] is HeaderRead and kinds[-1] is PackageRead
    assert kinds.index(AttachmentStarted) < kinds.index(AttachmentData) < kinds.index(AttachmentEnded)
    header = events[0]
    assert isinstance(header, HeaderRead) and header.package.attachments == ()
    assert header.package.edoc is not None and header.package.edoc.recipients[0].organ_id == "000.00.00.G22"


def test_soft_breaches_are_warnings() -> None:
    data = gen.edoc_with(
        [],
        message_extra="<edXML:PromulgationInfo><edXML:Place>" + "P" * 60 + "</edXML:Place><edXML:PromulgationDate>2014/02/30"
        "</edXML:PromulgationDate></edXML:PromulgationInfo><edXML:OtherInfo><edXML:Priority>9</edXML:Priority></edXML:OtherInfo>",
    ).replace(b"<edXML:CodeNumber>15</edXML:CodeNumber>", b"<edXML:CodeNumber>123456789012</edXML:CodeNumber>")
    pkg, _ = read_package(data)
    fields = {w.field for w in pkg.warnings}
    assert fields == {
        "MessageHeader/Code/CodeNumber",
        "MessageHeader/PromulgationInfo/Place",
        "MessageHeader/PromulgationInfo/PromulgationDate",
        "MessageHeader/OtherInfo/Priority",
    }
    assert pkg.edoc is not None and pkg.edoc.urgency == 0 and pkg.edoc.date_iso == ""
    assert pkg.edoc.promulgation_date == "2014/02/30"  # kept as written
    assert decode_package(encode_package(pkg)).warnings == pkg.warnings
