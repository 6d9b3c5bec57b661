"""Typed views of a package: the edoc and status fields Trục maps, over the lossless tree.

:class:`Package` is the value the reader produces and the writer consumes:
the header tree (:class:`~protocol.edxml.tree.Element`), what the reader
learnt about each attachment's bytes, and the soft warnings. Its ``edoc`` or
``status`` attribute is a frozen, typed reading of the tree for the node's
mapping; the tree stays the source of truth for export.

``Package.from_tree`` is the one place that decides whether a header is
acceptable: the reader, the builders and the CBOR decoder all go through it,
so a package is valid however it was made.

Why one module: ``Package.from_tree`` is the one gate every header passes, and the typed
views it builds are read together with it.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import EdxmlHeaderError, EdxmlManifestError, EdxmlNotEdxmlError, EdxmlUnsafeNameError
from .tree import Element

UTC7 = _dt.timezone(_dt.timedelta(hours=7))
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class Kind(enum.Enum):
    EDOC = "edoc"
    STATUS = "status"


class BusinessDocType(enum.IntEnum):
    """BussinessDocType: what an edoc does to the document named by Bussiness/DocumentId."""

    NEW = 0
    REVOKE = 1
    UPDATE = 2
    REPLACE = 3


# Status codes of EDXML.md §5; other numbers are read (with a warning) and left to the node.
KNOWN_STATUS_CODES = frozenset({1, 2, 3, 4, 5, 6, 13, 15, 16})


@dataclass(frozen=True, slots=True)
class FieldWarning:
    """A soft breach carried with the document: ``field`` is a path such as ``MessageHeader/Subject``."""

    field: str
    what: str


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """One attachment as read: its metadata (from the tree) and what its bytes turned out to be.

    ``wrapper`` is the entry name of VNPT's one-file zip when the reader
    unwrapped it ("" when the bytes were delivered as they came); ``size``
    and ``sha256`` are of the delivered (unwrapped) bytes; ``media_type`` is
    the codec's best guess of the real file's type (the declared type lies).
    """

    index: int
    content_id: str  # without the "cid:" prefix
    name: str
    declared_type: str
    description: str
    size: int
    sha256: bytes
    wrapper: str
    media_type: str

    @property
    def unwrapped(self) -> bool:
        return bool(self.wrapper)


@dataclass(frozen=True, slots=True)
class Organization:
    """From / To: OrganId is the agency code; OrganizationInCharge is a name, not a code."""

    organ_id: str
    organization_in_charge: str = ""
    organ_name: str = ""
    organ_add: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


@dataclass(frozen=True, slots=True)
class ResponseFor:
    organ_id: str
    code: str = ""  # combined "số/ký hiệu"
    promulgation_date: str = ""  # as written
    document_id: str = ""


@dataclass(frozen=True, slots=True)
class TraceHeader:
    organ_id: str
    timestamp: str  # as written: yyyy/MM/dd HH:mm:ss, UTC+7 (see parse_timestamp)


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str = ""
    staff: str = ""
    email: str = ""
    mobile: str = ""


@dataclass(frozen=True, slots=True)
class ReceiverChange:
    """An update's ReceiverList/Receiver: ``added`` is ReceiverType 1, removed is 0."""

    organ_id: str
    added: bool


@dataclass(frozen=True, slots=True)
class Replacement:
    """A replace's ReplacementInfo: the document replaced, for which agencies."""

    document_id: str
    organ_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Business:
    """TraceHeaderList/Bussiness (or Business): the business type and its target."""

    doc_type: BusinessDocType
    document_id: str = ""  # the target of a revoke/update/replace
    reason: str = ""
    paper: str = ""
    document_info: str = ""  # update: 1 = the document's fields changed
    document_receiver: str = ""  # update: 1 = the list of receivers changed
    receivers: tuple[ReceiverChange, ...] = ()
    replacements: tuple[Replacement, ...] = ()
    staff: StaffInfo | None = None


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest entry (edXMLManifest/Reference)."""

    content_id: str  # without "cid:"
    content_type: str
    description: str
    attachment_name: str


@dataclass(frozen=True, slots=True)
class Edoc:
    """The fields of an edoc header, as written (stripped); helpers give Trục's normalised forms."""

    sender: Organization
    recipients: tuple[Organization, ...]
    document_id: str
    code_number: str
    code_notation: str
    place: str
    promulgation_date: str
    doc_type: str
    type_detail: str
    type_name: str
    subject: str
    content: str
    signer_competence: str
    signer_position: str
    signer_full_name: str
    due_date: str
    to_places: tuple[str, ...]
    priority: int | None
    sphere_of_promulgation: str
    typer_notation: str
    promulgation_amount: str
    page_amount: str
    direction: str
    appendixes: tuple[str, ...]
    response_for: tuple[ResponseFor, ...]
    steering_type: int | None
    trace_headers: tuple[TraceHeader, ...]
    business: Business
    references: tuple[Reference, ...]
    signature: Element | None

    @property
    def date_iso(self) -> str:
        """PromulgationDate as YYYY-MM-DD ("" when absent or not a real date)."""
        return parse_date(self.promulgation_date)

    @property
    def due_iso(self) -> str:
        return parse_date(self.due_date)

    @property
    def urgency(self) -> int:
        """OtherInfo/Priority 0-4; 0 (thường) when absent or out of range (a warning says so)."""
        return self.priority if self.priority is not None and 0 <= self.priority <= 4 else 0

    @property
    def signer_title(self) -> str:
        """Trục's signer title: Position, else Competence (Competence stays in the header)."""
        return self.signer_position or self.signer_competence


@dataclass(frozen=True, slots=True)
class Status:
    """The fields of a status package (EDXML.md §5). Its addressee is ``response_for.organ_id``."""

    sender: Organization
    response_for: ResponseFor
    staff: StaffInfo | None
    status_code: str  # as written, e.g. "03"
    code: int
    description: str
    timestamp: str


@dataclass(frozen=True)
class Package:
    """A read (or built) package: the header tree, the attachments' facts and the soft warnings.

    Exactly one of ``edoc`` / ``status`` is set, matching ``kind``. Build it
    with :meth:`from_tree`, which validates.
    """

    root: Element
    kind: Kind
    edoc: Edoc | None
    status: Status | None
    attachments: tuple[AttachmentInfo, ...]
    warnings: tuple[FieldWarning, ...]
    """Every soft breach: the reader's own (``reader_warnings``) then those the tree shows."""
    reader_warnings: tuple[FieldWarning, ...] = ()
    """What only the bytes showed (base64 padding, zip trailers); kept in the CBOR form."""

    @classmethod
    def from_tree(
        cls,
        root: Element,
        attachments: Iterable[AttachmentInfo] = (),
        extra_warnings: Iterable[FieldWarning] = (),
        *,
        complete: bool = True,
    ) -> Package:
        """Validate a header tree and read its fields.

        ``complete`` is False while the reader has the envelope but not yet
        the attachments: the manifest is then checked on its own, not
        against the attachments. ``extra_warnings`` are the reader's (base64
        padding, zip trailers); warnings derived from the tree are recomputed
        here, so they are never duplicated.

        Raises EdxmlNotEdxmlError, EdxmlHeaderError, EdxmlManifestError,
        EdxmlUnsafeNameError.
        """
        if not root.is_("edXML"):
            raise EdxmlNotEdxmlError(f"root element {{{root.ns}}}{root.name}")
        w: list[FieldWarning] = []
        envelope = _only(root, "edXMLEnvelope", "edXML")
        header = _only(envelope, "edXMLHeader", "edXMLEnvelope")
        mh = _only(header, "MessageHeader", "edXMLHeader")
        for name in ("From", "StatusCode", "DocumentId"):
            if len(list(mh.all(name))) > 1:
                raise EdxmlHeaderError(f"MessageHeader holds {name} twice (which one is meant?)")
        refs = _references(envelope, w)
        atts = tuple(attachments)
        att_elements = attachment_elements(root)
        for i, el in enumerate(att_elements):
            _check_name(el.value("AttachmentName"), f"AttachmentEncoded/Attachment[{i + 1}]/AttachmentName", w)
        if complete:
            if len(atts) != len(att_elements):
                raise AssertionError("attachment facts do not match the tree")  # a bug in the caller
            for i, el in enumerate(att_elements):
                slots = list(el.all("ContentTransferEncoded"))
                if len(slots) != 1 or slots[0].children or slots[0].text:
                    raise EdxmlManifestError(f"Attachment {i + 1} needs exactly one (emptied) ContentTransferEncoded")
            _match_manifest(refs, att_elements)
        edoc = status = None
        if mh.child("StatusCode") is not None:
            kind = Kind.STATUS
            status = _status(mh, w)
            if refs or att_elements or (envelope.child("edXMLBody") is not None and _has_elements(envelope.child("edXMLBody"))):
                raise EdxmlHeaderError("a status package carries no body or attachments")
        else:
            kind = Kind.EDOC
            edoc = _edoc(mh, header, refs, w)
        extra = tuple(extra_warnings)
        return cls(root, kind, edoc, status, atts, extra + tuple(w), extra)


def _only(parent: Element, name: str, where: str) -> Element:
    """The one ``name`` child: a second one would be read by some systems and not others."""
    found = list(parent.all(name))
    if len(found) != 1:
        raise EdxmlHeaderError(f"{where} holds {len(found)} {name} elements, expected 1")
    return found[0]


def _has_elements(el: Element | None) -> bool:
    return el is not None and bool(el.children)


def attachment_elements(root: Element) -> list[Element]:
    """The Attachment elements in document order (index i is attachment i)."""
    out: list[Element] = []
    for enc in root.all("AttachmentEncoded"):
        out.extend(enc.all("Attachment"))
    return out


def strip_cid(content_id: str) -> str:
    """ContentId with or without its ``cid:`` prefix (one producer drops it on the Attachment side)."""
    s = content_id.strip()
    return s[4:] if s[:4].lower() == "cid:" else s


# --- names ----------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_name_reason(name: str, *, allow_dirs: bool) -> str | None:
    """Why ``name`` is not a safe file name (or a safe relative path inside a zip), or None.

    Refused: NUL and control characters, backslashes, an absolute path or a
    drive letter, a ``..`` component; and for a file name, any ``/``.
    """
    if _CONTROL.search(name):
        return "a control character"
    if "\\" in name:
        return "a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "a '..' component"
    if not allow_dirs and (len(parts) > 1 or name in (".", "..")):
        return "a path separator"
    return None


def _check_name(name: str, where: str, w: list[FieldWarning]) -> None:
    why = unsafe_name_reason(name, allow_dirs=False)
    if why is not None:
        raise EdxmlUnsafeNameError(f"{where} {name[:80]!r} has {why}")
    if len(name) > 500:
        w.append(FieldWarning(where, f"{len(name)} characters, the limit is 500"))


# --- media types -------------------------------------------------------------------

# The declared ContentType lies both ways (EDXML.md §4): the type Trục records
# comes from the bytes and the name. A small table, not the mimetypes module
# (which reads the host's /etc/mime.types: not pure, not the same everywhere).
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "rtf": "application/rtf",
    "txt": "text/plain",
    "xml": "application/xml",
    "htm": "text/html",
    "html": "text/html",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "zip": "application/zip",
    "rar": "application/vnd.rar",
    "7z": "application/x-7z-compressed",
}
_VAGUE_TYPES = frozenset({"", "application/zip", "application/x-zip-compressed", "application/octet-stream"})


def extension(name: str) -> str:
    """The lower-case extension of a file name without the dot ("" if none)."""
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[1].lower() if "." in base.strip(".") else ""


def guess_media_type(name: str, head: bytes, declared: str) -> str:
    """The real file's type: PDF magic, else the name's extension, else zip magic, else a specific declared type."""
    if head.startswith(b"%PDF"):
        return "application/pdf"
    ext = extension(name)
    if ext in MEDIA_TYPES:
        return MEDIA_TYPES[ext]
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    d = declared.strip()
    return d if d.lower() not in _VAGUE_TYPES else "application/octet-stream"


# --- dates and times ------------------------------------------------------------

_YMD = re.compile(r"^(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?:[ T].*)?$")
_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?: .*)?$")
_TS = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})$")


def parse_date(text: str) -> str:
    """``yyyy/MM/dd``, ``yyyy-MM-dd`` or ``dd/MM/yyyy`` (one producer) as YYYY-MM-DD; "" if not a real date."""
    s = text.strip()
    m = _YMD.match(s)
    if m:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
    else:
        m = _DMY.match(s)
        if not m:
            return ""
        d, mo, y = int(m[1]), int(m[2]), int(m[3])
    try:
        return _dt.date(y, mo, d).isoformat()
    except ValueError:
        return ""


def format_date(iso: str) -> str:
    """YYYY-MM-DD as edXML's ``yyyy/MM/dd`` ("" stays "")."""
    return iso.replace("-", "/") if iso else ""


def format_timestamp(at_ms: int) -> str:
    """A Unix time in ms as a TraceHeader/status Timestamp: ``yyyy/MM/dd HH:mm:ss`` in UTC+7."""
    t = (EPOCH + _dt.timedelta(milliseconds=at_ms)).astimezone(UTC7)
    return t.strftime("%Y/%m/%d %H:%M:%S")


def parse_timestamp(text: str) -> int | None:
    """A Timestamp ``yyyy/MM/dd HH:mm:ss`` (UTC+7) as Unix ms, or None when it is not one."""
    m = _TS.match(text.strip())
    if not m:
        return None
    try:
        y, mo, d, h, mi, sec = (int(g) for g in m.groups())
        t = _dt.datetime(y, mo, d, h, mi, sec, tzinfo=UTC7)
    except ValueError:
        return None
    return int((t - EPOCH).total_seconds()) * 1000


# --- reading the fields ----------------------------------------------------------

# EDXML.md §6: a production validator's limits. Real packages break some of
# them; every breach is a warning (the document still travels), see docs/edxml.md.
_ORG_LIMITS = {"OrganName": 200, "OrganAdd": 500, "Email": 100, "Telephone": 20, "Fax": 20}
_EDOC_LIMITS = {
    ("Code", "CodeNumber"): 11,
    ("Code", "CodeNotation"): 30,
    ("PromulgationInfo", "Place"): 50,
    ("DocumentType", "TypeName"): 100,
    ("Subject",): 500,
    ("Content",): 500,
    ("OtherInfo", "SphereOfPromulgation"): 100,
    ("OtherInfo", "TyperNotation"): 10,
}


def _limit(value: str, limit: int, where: str, w: list[FieldWarning]) -> None:
    if len(value) > limit:
        w.append(FieldWarning(where, f"{len(value)} characters, the limit is {limit}"))


def _int(el: Element, path: tuple[str, ...], where: str, w: list[FieldWarning]) -> int | None:
    s = el.value(*path)
    if not s:
        return None
    try:
        return int(s)
    except ValueError:
        w.append(FieldWarning(where, f"{s[:40]!r} is not a number"))
        return None


def _org(el: Element, where: str, w: list[FieldWarning], *, required: bool) -> Organization:
    org = Organization(
        el.value("OrganId"),
        el.value("OrganizationInCharge"),
        el.value("OrganName"),
        el.value("OrganAdd"),
        el.value("Email"),
        el.value("Telephone"),
        el.value("Fax"),
        el.value("Website"),
    )
    if required and not org.organ_id:
        raise EdxmlHeaderError(f"{where}/OrganId is missing or empty")
    for name, limit in _ORG_LIMITS.items():
        _limit(el.value(name), limit, f"{where}/{name}", w)
    return org


def _staff(el: Element | None) -> StaffInfo | None:
    if el is None:
        return None
    return StaffInfo(el.value("Department"), el.value("Staff"), el.value("Email"), el.value("Mobile"))


def _response_for(el: Element) -> ResponseFor:
    return ResponseFor(el.value("OrganId"), el.value("Code"), el.value("PromulgationDate"), el.value("DocumentId"))


def _date_field(value: str, where: str, w: list[FieldWarning]) -> None:
    if value and not parse_date(value):
        w.append(FieldWarning(where, f"{value[:40]!r} is not a date yyyy/MM/dd (kept as written)"))


def _edoc(mh: Element, header: Element, refs: tuple[Reference, ...], w: list[FieldWarning]) -> Edoc:
    from_ = mh.child("From")
    if from_ is None:
        raise EdxmlHeaderError("an edoc needs a From (the sending agency)")
    sender = _org(from_, "MessageHeader/From", w, required=True)
    recipients = tuple(_org(t, f"MessageHeader/To[{i + 1}]", w, required=True) for i, t in enumerate(mh.all("To")))
    if not recipients:
        raise EdxmlHeaderError("an edoc needs at least one To (a recipient agency)")
    seen: set[str] = set()
    for r in recipients:
        if r.organ_id in seen:
            raise EdxmlHeaderError(f"recipient {r.organ_id} appears twice in To")
        seen.add(r.organ_id)
    document_id = mh.value("DocumentId")
    if not document_id:
        raise EdxmlHeaderError("an edoc needs a DocumentId (statuses and updates refer to it)")
    for path, limit in _EDOC_LIMITS.items():
        _limit(mh.value(*path), limit, "MessageHeader/" + "/".join(path), w)
    to_places = tuple(p.text.strip() for tp in mh.all("ToPlaces") for p in tp.all("Place"))
    for i, p in enumerate(to_places):
        _limit(p, 150, f"MessageHeader/ToPlaces/Place[{i + 1}]", w)
    _date_field(mh.value("PromulgationInfo", "PromulgationDate"), "MessageHeader/PromulgationInfo/PromulgationDate", w)
    _date_field(mh.value("DueDate"), "MessageHeader/DueDate", w)
    priority = _int(mh, ("OtherInfo", "Priority"), "MessageHeader/OtherInfo/Priority", w)
    if priority is not None and not 0 <= priority <= 4:
        w.append(FieldWarning("MessageHeader/OtherInfo/Priority", f"{priority} is outside 0..4 (read as 0)"))
    steering = _int(mh, ("SteeringType",), "MessageHeader/SteeringType", w)
    other = mh.child("OtherInfo")
    appendixes = tuple(
        a.text.strip() for ap in (other.all("Appendixes") if other is not None else ()) for a in ap.all("Appendix")
    )
    traces = header.child("TraceHeaderList")
    trace_headers = tuple(
        TraceHeader(t.value("OrganId"), t.value("Timestamp")) for t in (traces.all("TraceHeader") if traces else ())
    )
    business = _business(traces.child("Bussiness", "Business") if traces is not None else None, w)
    signature = next((c for c in header.children if c.name == "Signature"), None)
    return Edoc(
        sender=sender,
        recipients=recipients,
        document_id=document_id,
        code_number=mh.value("Code", "CodeNumber"),
        code_notation=mh.value("Code", "CodeNotation"),
        place=mh.value("PromulgationInfo", "Place"),
        promulgation_date=mh.value("PromulgationInfo", "PromulgationDate"),
        doc_type=mh.value("DocumentType", "Type"),
        type_detail=mh.value("DocumentType", "TypeDetail"),
        type_name=mh.value("DocumentType", "TypeName"),
        subject=mh.value("Subject"),
        content=mh.value("Content"),
        signer_competence=mh.value("SignerInfo", "Competence"),
        signer_position=mh.value("SignerInfo", "Position"),
        signer_full_name=mh.value("SignerInfo", "FullName"),
        due_date=mh.value("DueDate"),
        to_places=to_places,
        priority=priority,
        sphere_of_promulgation=mh.value("OtherInfo", "SphereOfPromulgation"),
        typer_notation=mh.value("OtherInfo", "TyperNotation"),
        promulgation_amount=mh.value("OtherInfo", "PromulgationAmount"),
        page_amount=mh.value("OtherInfo", "PageAmount"),
        direction=mh.value("OtherInfo", "Direction"),
        appendixes=appendixes,
        # An empty <ResponseFor/> occurs: it answers nothing, so it is not listed (the tree keeps it).
        response_for=tuple(_response_for(r) for r in mh.all("ResponseFor") if _has_elements(r)),
        steering_type=steering,
        trace_headers=trace_headers,
        business=business,
        references=refs,
        signature=signature,
    )


def _business(el: Element | None, w: list[FieldWarning]) -> Business:
    if el is None:
        return Business(BusinessDocType.NEW)
    where = f"TraceHeaderList/{el.name}"
    raw = _int(el, ("BussinessDocType",), f"{where}/BussinessDocType", w)
    if raw is None:
        raw = 0
    try:
        doc_type = BusinessDocType(raw)
    except ValueError:
        raise EdxmlHeaderError(f"{where}/BussinessDocType {raw} is not 0 (new), 1 (revoke), 2 (update) or 3 (replace)") from None
    info = el.child("BussinessDocumentInfo")
    receivers: list[ReceiverChange] = []
    if info is not None:
        for rl in info.all("ReceiverList"):
            for r in rl.all("Receiver"):
                receivers.append(ReceiverChange(r.value("OrganId"), r.value("ReceiverType") == "1"))
    replacements = tuple(
        Replacement(ri.value("DocumentId"), tuple(o.text.strip() for ol in ri.all("OrganIdList") for o in ol.all("OrganId")))
        for rl in el.all("ReplacementInfoList")
        for ri in rl.all("ReplacementInfo")
    )
    business = Business(
        doc_type=doc_type,
        document_id=el.value("DocumentId"),
        reason=el.value("BussinessDocReason"),
        paper=el.value("Paper"),
        document_info=info.value("DocumentInfo") if info is not None else "",
        document_receiver=info.value("DocumentReceiver") if info is not None else "",
        receivers=tuple(receivers),
        replacements=replacements,
        staff=_staff(el.child("StaffInfo")),
    )
    if doc_type is not BusinessDocType.NEW and not business.document_id:
        # The target may also be named by ReplacementInfo; the node decides what it can resolve.
        w.append(FieldWarning(f"{where}/DocumentId", f"a {doc_type.name.lower()} without the target's DocumentId"))
    return business


def _references(envelope: Element, w: list[FieldWarning]) -> tuple[Reference, ...]:
    body = envelope.child("edXMLBody")
    manifest = body.child("edXMLManifest") if body is not None else None
    if manifest is None:
        return ()
    out = []
    for i, r in enumerate(manifest.all("Reference")):
        name = r.value("AttachmentName")
        _check_name(name, f"edXMLManifest/Reference[{i + 1}]/AttachmentName", w)
        out.append(Reference(strip_cid(r.value("ContentId")), r.value("ContentType"), r.value("Description"), name))
    return tuple(out)


def _match_manifest(refs: tuple[Reference, ...], atts: list[Element]) -> None:
    ref_ids = [r.content_id for r in refs]
    att_ids = [strip_cid(a.value("ContentId")) for a in atts]
    for what, ids in (("manifest Reference", ref_ids), ("Attachment", att_ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise EdxmlManifestError(f"ContentId {dup[0]!r} appears on two {what}s")
    missing = [i for i in ref_ids if i not in att_ids]
    if missing:
        raise EdxmlManifestError(f"the manifest lists {missing[0]!r} but no Attachment has that ContentId")
    extra = [i for i in att_ids if i not in ref_ids]
    if extra:
        raise EdxmlManifestError(f"Attachment {extra[0]!r} is not listed in the manifest")


def _status(mh: Element, w: list[FieldWarning]) -> Status:
    from_ = mh.child("From")
    if from_ is None:
        raise EdxmlHeaderError("a status package needs a From (the agency reporting)")
    sender = _org(from_, "MessageHeader/From", w, required=True)
    if len(list(mh.all("ResponseFor"))) > 1:
        raise EdxmlHeaderError("a status package answers one ResponseFor, this one has several")
    rf = mh.child("ResponseFor")
    response_for = _response_for(rf) if rf is not None else ResponseFor("")
    if not response_for.organ_id:
        raise EdxmlHeaderError("a status package needs ResponseFor/OrganId (its addressee)")
    if not response_for.document_id:
        raise EdxmlHeaderError("a status package needs ResponseFor/DocumentId (the document it is about)")
    raw = mh.value("StatusCode")
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 99):
        raise EdxmlHeaderError(f"StatusCode {raw[:20]!r} is not a status code 01..99")
    code = int(raw)
    if code not in KNOWN_STATUS_CODES:
        w.append(FieldWarning("MessageHeader/StatusCode", f"{raw} is not one of 01-06, 13, 15, 16"))
    return Status(
        sender=sender,
        response_for=response_for,
        staff=_staff(mh.child("StaffInfo")),
        status_code=raw,
        code=code,
        description=mh.value("Description"),
        timestamp=mh.value("Timestamp"),
    )
