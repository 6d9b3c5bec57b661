"""Built headers, the Trục mapping, the writer's options, the CBOR form's strictness, times and dates."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cbor, errors
from protocol.document import BusinessType, DocumentMeta, FileEntry, Urgency
from protocol.edxml import (
    BusinessDocType,
    EdocFields,
    Element,
    FileSpec,
    Kind,
    ReceiverChange,
    Replacement,
    ResponseFor,
    StatusFields,
    ZipMode,
    build_edoc,
    build_status,
    decode_package,
    encode_package,
    format_timestamp,
    parse_date,
    parse_timestamp,
    read_package,
    to_document_meta,
    with_trace,
    write_bytes,
)
from protocol.edxml.tree import EDXML_NS
from protocol.ids import Digest
from tests.vectors.edxml import generate as gen

AT = gen.AT
G22, H29, H01 = "000.00.00.G22", "000.00.00.H29", "000.00.00.H01"
NAMES = {G22: "Văn phòng Chính phủ", H29: "UBND TP HCM", H01: "UBND tỉnh An Giang"}


def names(code: str) -> str:
    return NAMES.get(code, code)


FIELDS = EdocFields(
    sender=G22,
    recipients=(H29, H01),
    subject="Về việc thử nghiệm",
    number="15",
    notation="VPCP-KSTT",
    type_name="Công văn",
    place="Hà Nội",
    date="2026-11-22",
    signer="Nguyễn Văn A",
    signer_title="Phó Chủ nhiệm",
    urgency=2,
    due="2026-12-15",
)


def test_built_edoc_follows_vnpt_order() -> None:
    pkg = build_edoc(FIELDS, names=names, files=[FileSpec("a.pdf", "application/pdf")], trace=[(G22, AT)])
    mh = pkg.root.find("edXMLEnvelope", "edXMLHeader", "MessageHeader")
    assert mh is not None
    assert [c.name for c in mh.children] == [
        "From",
        "To",
        "To",
        "DocumentId",
        "Code",
        "PromulgationInfo",
        "DocumentType",
        "Subject",
        "Content",
        "SignerInfo",
        "DueDate",
        "ToPlaces",
        "OtherInfo",
        "SteeringType",
    ]
    from_ = mh.child("From")
    assert from_ is not None and [c.name for c in from_.children] == [
        "OrganId",
        "OrganizationInCharge",
        "OrganName",
        "OrganAdd",
        "Email",
        "Telephone",
        "Fax",
        "Website",
    ]
    att = pkg.root.find("AttachmentEncoded", "Attachment")
    assert att is not None and [c.name for c in att.children] == [
        "ContentId",
        "AttachmentName",
        "Description",
        "ContentType",
        "ContentTransferEncoded",
    ]
    e = pkg.edoc
    assert e is not None and e.document_id == "000.00.00.G22,2026/11/22,15/VPCP-KSTT"
    assert (e.promulgation_date, e.due_date, e.urgency, e.signer_title) == ("2026/11/22", "2026/12/15", 2, "Phó Chủ nhiệm")
    assert e.trace_headers[0].timestamp == format_timestamp(AT) and not pkg.warnings


def test_document_id_needs_number_and_date_or_is_given() -> None:
    with pytest.raises(ValueError, match="document_id"):
        build_edoc(EdocFields(sender=G22, recipients=(H29,), subject="x"), names=names)
    pkg = build_edoc(EdocFields(sender=G22, recipients=(H29,), subject="x", document_id="truc:abc"), names=names)
    assert pkg.edoc is not None and pkg.edoc.document_id == "truc:abc"


def test_business_types_build_and_read_back() -> None:
    update = EdocFields(
        sender=G22,
        recipients=(H29,),
        subject="Đính chính",
        document_id="D2",
        business=BusinessDocType.UPDATE,
        target_document_id="T1",
        business_reason="Sai nơi nhận",
        receivers=(ReceiverChange(H01, True), ReceiverChange(H29, False)),
    )
    e = read_package(write_bytes(build_edoc(update, names=names)))[0].edoc
    assert e is not None and e.business.doc_type is BusinessDocType.UPDATE and e.business.document_id == "T1"
    assert e.business.receivers == (ReceiverChange(H01, True), ReceiverChange(H29, False)) and e.business.reason == "Sai nơi nhận"
    replace = EdocFields(
        sender=G22,
        recipients=(H29,),
        subject="Thay thế",
        document_id="D3",
        business=BusinessDocType.REPLACE,
        target_document_id="T1",
        replacements=(Replacement("T1", (H29,)),),
    )
    e = read_package(write_bytes(build_edoc(replace, names=names)))[0].edoc
    assert e is not None and e.business.replacements == (Replacement("T1", (H29,)),)
    revoke = EdocFields(sender=G22, recipients=(H29,), subject="Thu hồi", document_id="D4", business=BusinessDocType.REVOKE)
    pkg = build_edoc(revoke, names=names)
    assert pkg.edoc is not None and pkg.edoc.business.doc_type is BusinessDocType.REVOKE
    assert [w.field for w in pkg.warnings] == ["TraceHeaderList/Bussiness/DocumentId"]  # a revoke without its target


@pytest.mark.parametrize("code", sorted(gen.STATUS_DESCRIPTIONS))
def test_built_status_reads_back(code: int) -> None:
    rf = ResponseFor(G22, "15/VPCP-KSTT", "2026/11/22", "000.00.00.G22,2026/11/22,15/VPCP-KSTT")
    pkg = build_status(StatusFields(H29, rf, code, AT, gen.STATUS_DESCRIPTIONS[code]), names=names)
    again, files = read_package(write_bytes(pkg))
    assert again == pkg and files == [] and again.kind is Kind.STATUS
    s = again.status
    assert s is not None and s.status_code == f"{code:02d}" and s.response_for == rf
    mh = again.root.find("edXMLEnvelope", "edXMLHeader", "MessageHeader")
    assert mh is not None
    assert [c.name for c in mh.children] == ["From", "ResponseFor", "StaffInfo", "StatusCode", "Description", "Timestamp"]
    assert parse_timestamp(s.timestamp) == AT // 1000 * 1000


def test_status_code_outside_range_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        build_status(StatusFields(H29, ResponseFor(G22, document_id="x"), 0, AT), names=names)


def test_status_needs_response_for() -> None:
    data = gen.status(3).replace(b"<edXML:OrganId>000.00.00.G22</edXML:OrganId><edXML:Code>", b"<edXML:Code>")
    with pytest.raises(errors.EdxmlHeaderError, match="ResponseFor/OrganId"):
        read_package(data)
    with pytest.raises(errors.EdxmlHeaderError, match="StatusCode"):
        read_package(gen.status(3).replace(b"<edXML:StatusCode>03", b"<edXML:StatusCode>xx"))


def test_builder_replaces_characters_xml_cannot_carry() -> None:
    pkg = build_edoc(EdocFields(sender=G22, recipients=(H29,), subject="a\x01b", document_id="D"), names=names)
    assert pkg.edoc is not None and pkg.edoc.subject == "a\ufffdb"
    assert read_package(write_bytes(pkg))[0] == pkg


# --- the mapping to Trục's manifest ---------------------------------------------------------


def test_meta_round_trip_through_edxml() -> None:
    data = b"%PDF-1.4 x"
    entry = FileEntry("cv.pdf", "application/pdf", len(data), Digest(hashlib.sha256(data).digest()))
    meta = DocumentMeta(
        subject="Về việc",
        number="15",
        notation="VPCP-KSTT",
        doc_type="Công văn",
        place="Hà Nội",
        date="2026-11-22",
        signer="Nguyễn Văn A",
        signer_title="Phó Chủ nhiệm",
        urgency=Urgency.FLASH,
        due="2026-12-01",
        files=(entry,),
    )
    fields = EdocFields.from_meta(meta, sender=G22, recipients=[H29])
    pkg = build_edoc(fields, names=names, files=[FileSpec(entry.name, entry.media_type, entry.size, bytes(entry.sha256))])
    again, files = read_package(write_bytes(pkg, [data]))
    assert files == [data]
    assert again.edoc is not None and to_document_meta(again.edoc, (entry,)) == meta


def test_meta_from_corpus_maps_and_clips() -> None:
    pkg, _ = read_package(gen.vnpt_zipped())
    assert pkg.edoc is not None
    meta = to_document_meta(pkg.edoc)
    assert (meta.number, meta.notation, meta.doc_type, meta.date, meta.due, meta.urgency) == (
        "7816",
        "VPCP-TTĐT",
        "Công văn",
        "2015-09-30",
        "2015-10-15",
        Urgency.URGENT,
    )
    assert meta.business is BusinessType.NEW and meta.signer == "Nguyễn Văn A"
    long = gen.edoc_with([]).replace(
        b"<edXML:CodeNumber>15</edXML:CodeNumber>", b"<edXML:CodeNumber>" + b"9" * 40 + b"</edXML:CodeNumber>"
    )
    e = read_package(long)[0].edoc
    assert e is not None and to_document_meta(e).number == "9" * 32
    revoke = read_package(gen.revoke())[0].edoc
    assert revoke is not None
    with pytest.raises(errors.SchemaError):
        to_document_meta(revoke)  # the node must resolve the target first
    assert to_document_meta(revoke, ref=Digest(bytes(32))).business is BusinessType.REVOKE


# --- trace headers, times, dates --------------------------------------------------------------


def test_timestamps_are_utc_plus_7() -> None:
    assert format_timestamp(1_795_000_000_000) == "2026/11/18 18:06:40"  # 11:06:40 UTC
    assert format_timestamp(0) == "1970/01/01 07:00:00"
    assert parse_timestamp("2026/11/18 18:06:40") == 1_795_000_000_000
    assert parse_timestamp("2014/02/30 10:00:00") is None and parse_timestamp("18/11/2026 18:06:40") is None


def test_dates() -> None:
    assert parse_date("2015/09/30") == parse_date("30/09/2015") == parse_date("2015-09-30") == "2015-09-30"
    assert parse_date("2014/02/30") == "" and parse_date("") == "" and parse_date("hôm qua") == ""


def test_with_trace_creates_a_list_when_there_is_none() -> None:
    data = gen.edoc_with([]).replace(
        b"<edXML:TraceHeaderList><edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness>"
        b"</edXML:TraceHeaderList>",
        b"",
    )
    pkg = read_package(data)[0]
    traced = with_trace(pkg, H29, AT)
    header = traced.root.find("edXMLEnvelope", "edXMLHeader")
    assert header is not None and [c.name for c in header.children] == ["MessageHeader", "TraceHeaderList"]
    assert traced.edoc is not None and [t.organ_id for t in traced.edoc.trace_headers] == [H29]
    with pytest.raises(ValueError):
        with_trace(read_package(gen.status(1))[0], H29, AT)


# --- writer options ---------------------------------------------------------------------------


def test_writer_checks_the_bytes_it_is_given() -> None:
    pkg, files = read_package(gen.vnpt_zipped())
    with pytest.raises(errors.HashMismatchError):
        write_bytes(pkg, [files[0] + b"x"], at_ms=AT)
    with pytest.raises(ValueError, match="attachments"):
        write_bytes(pkg, [], at_ms=AT)
    with pytest.raises(ValueError, match="at_ms"):
        write_bytes(pkg, files)
    raw_pkg = build_edoc(FIELDS, names=names, files=[FileSpec("a.pdf", "application/pdf")])
    with pytest.raises(ValueError, match="rng"):
        write_bytes(raw_pkg, [b"%PDF"], zip=ZipMode.ZIP, at_ms=AT)


def test_zip_mode_retypes_and_raw_mode_restores_the_real_type() -> None:
    pkg, files = read_package(gen.vnpt_zipped())
    raw, files2 = read_package(write_bytes(pkg, files, zip=ZipMode.RAW))
    assert files2 == files and raw.attachments[0].declared_type == "application/pdf" and not raw.attachments[0].unwrapped
    ref = raw.root.find("edXMLEnvelope", "edXMLBody", "edXMLManifest", "Reference")
    assert ref is not None and ref.value("ContentType") == "application/pdf"
    zipped, files3 = read_package(write_bytes(raw, files, zip=ZipMode.ZIP, at_ms=AT, rng=lambda n: bytes(n)))
    assert files3 == files and zipped.attachments[0].declared_type == "application/zip"
    assert zipped.attachments[0].wrapper == "00000000-0000-4000-8000-000000000000.pdf"


# --- the CBOR form is strict ---------------------------------------------------------------


def test_cbor_form_refuses_what_it_did_not_write() -> None:
    pkg = build_edoc(FIELDS, names=names, files=[FileSpec("a.pdf", "application/pdf")])
    good = cbor.decode(encode_package(pkg), max_bytes=1 << 20)

    def bad(mutate: object) -> None:
        m = cbor.decode(encode_package(pkg), max_bytes=1 << 20)
        mutate(m)  # type: ignore[operator]
        with pytest.raises(errors.RemoteError):
            decode_package(cbor.encode(m))

    bad(lambda m: m.update(v=2))
    bad(lambda m: m["el"][1].__setitem__(0, 5))  # depth jumps
    bad(lambda m: m["el"].append([0, 1, "edXML", "", "", []]))  # a second root
    bad(lambda m: m["el"][3].__setitem__(4, "a\x00b"))  # not XML
    bad(lambda m: m["el"][0].__setitem__(5, [[0, "xmlns", "", "urn:x"]]))  # a namespace declaration smuggled in
    bad(lambda m: m["el"][0].__setitem__(2, "a b"))
    bad(lambda m: m["att"].pop())
    bad(lambda m: m.update(ns=["urn:x"]))
    with pytest.raises(errors.DecodeError):
        decode_package(encode_package(pkg) + b"\x00")
    assert decode_package(cbor.encode(good)) == pkg


# --- Hypothesis: headers from plain fields through write -> read -------------------------------

xml_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=60).map(
    lambda s: "".join(c for c in s if c in "\t\n" or (ord(c) >= 0x20 and c not in "\ufffe\uffff"))
)
codes = st.sampled_from([G22, H29, H01, "000.00.01.G22", "000.01.02.H29"])


@settings(max_examples=80)
@given(
    subject=xml_text.filter(lambda s: s.strip() != ""),
    number=st.text("0123456789", max_size=6),
    notation=xml_text,
    recipients=st.lists(codes, min_size=1, max_size=4, unique=True),
    urgency=st.integers(0, 4),
    date=st.dates().map(lambda d: d.isoformat() if d.year >= 1000 else ""),
    business=st.sampled_from(list(BusinessDocType)),
    file_names=st.lists(st.text("abcdefXYZ đươ-_ 0123", min_size=1, max_size=20).map(lambda s: s.strip(" ") or "f"), max_size=3),
    extra=st.lists(st.tuples(st.sampled_from(["Unknown", "Extra", "ApplicationType"]), xml_text), max_size=3),
)
def test_generated_headers_survive_write_and_read(
    subject: str,
    number: str,
    notation: str,
    recipients: list[str],
    urgency: int,
    date: str,
    business: BusinessDocType,
    file_names: list[str],
    extra: list[tuple[str, str]],
) -> None:
    fields = EdocFields(
        sender=G22,
        recipients=tuple(c for c in recipients if c != G22) or (H29,),
        subject=subject,
        number=number,
        notation=notation,
        date=date,
        urgency=urgency,
        business=business,
        target_document_id="T" if business is not BusinessDocType.NEW else "",
        document_id="gen-1",
    )
    specs = [FileSpec(f"{i}-{n}.bin", "application/octet-stream") for i, n in enumerate(file_names)]
    pkg = build_edoc(fields, names=names, files=specs, trace=[(G22, AT)])
    # unknown elements, in the edXML namespace and in another, appended to MessageHeader
    root = pkg.root
    env = root.children[0]
    header = env.children[0]
    mh = header.children[0]
    mh = mh.with_children(
        mh.children + tuple(Element(EDXML_NS if i % 2 else "urn:other", name, text) for i, (name, text) in enumerate(extra))
    )
    root = root.with_children(
        (env.with_children((header.with_children((mh, *header.children[1:])), *env.children[1:])), *root.children[1:])
    )
    pkg = type(pkg).from_tree(root, pkg.attachments)
    files = [f"file {i}".encode() * (i + 1) for i in range(len(specs))]
    again, files2 = read_package(write_bytes(pkg, files))
    assert files2 == files
    assert again.root == pkg.root and again.edoc == pkg.edoc
    assert decode_package(encode_package(again)) == again
