"""Headers made here: edocs and status packages from plain fields, the TraceHeader a node appends, Trục's mapping.

A built header follows VNPT's element order (EDXML.md §2, §3, §5) and is a
:class:`~protocol.edxml.model.Package` like a read one, so the writer, the
CBOR form and the typed views treat both alike.

Text from Trục's own manifest may hold characters XML 1.0 cannot carry
(C0 controls other than tab/newline/CR): they become U+FFFD rather than
making a package no reader accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..document import BusinessType, DocumentMeta, FileEntry, Urgency
from ..ids import Digest
from .model import (
    AttachmentInfo,
    BusinessDocType,
    Edoc,
    Kind,
    Package,
    ReceiverChange,
    Replacement,
    ResponseFor,
    StaffInfo,
    format_date,
    format_timestamp,
)
from .tree import Element, edxml

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _clean(s: str) -> str:
    return _NOT_XML.sub("\ufffd", s)


def _e(name: str, text: str = "", children: Sequence[Element] = ()) -> Element:
    return edxml(name, _clean(text), tuple(children))


@dataclass(frozen=True, slots=True)
class FileSpec:
    """An attachment of a built package: the real file (the writer zips it if asked)."""

    name: str
    media_type: str
    size: int = 0
    sha256: bytes = b""  # b"": the writer does not check the bytes it is given
    description: str = ""


@dataclass(frozen=True, slots=True)
class EdocFields:
    """What Trục knows about a document, in its own terms (protocol.document.DocumentMeta and the envelope).

    Dates are YYYY-MM-DD; ``urgency`` is 0-4; ``business`` is new, revoke,
    update or replace with ``target_document_id`` the target's edXML
    DocumentId. ``document_id`` "" derives the usual
    ``<sender>,<yyyy/MM/dd>,<number>/<notation>`` (number and date needed).
    """

    sender: str
    recipients: tuple[str, ...]
    subject: str
    number: str = ""
    notation: str = ""
    type_name: str = ""  # "Công văn"...
    doc_type: int = 1  # 1 administrative, 2 legal-normative
    place: str = ""
    date: str = ""
    signer: str = ""
    signer_title: str = ""
    signer_competence: str = ""  # "KT. BỘ TRƯỞNG"...
    urgency: int = 0
    due: str = ""
    business: BusinessDocType = BusinessDocType.NEW
    target_document_id: str = ""
    business_reason: str = ""
    receivers: tuple[ReceiverChange, ...] = ()  # update: agencies added / removed
    replacements: tuple[Replacement, ...] = ()  # replace
    content: str = ""
    to_places: tuple[str, ...] = ()
    steering_type: int = 1
    response_for: tuple[ResponseFor, ...] = ()
    document_id: str = ""

    @classmethod
    def from_meta(
        cls, meta: DocumentMeta, *, sender: str, recipients: Sequence[str], document_id: str = "", target_document_id: str = ""
    ) -> EdocFields:
        """The fields of a document submitted to Trục without edXML.

        The node resolves ``meta.ref`` (a Trục id) to the target's edXML DocumentId.
        """
        return cls(
            sender=sender,
            recipients=tuple(recipients),
            subject=meta.subject,
            number=meta.number,
            notation=meta.notation,
            type_name=meta.doc_type,
            place=meta.place,
            date=meta.date,
            signer=meta.signer,
            signer_title=meta.signer_title,
            urgency=int(meta.urgency),
            due=meta.due,
            business=_BUSINESS_FROM_TRUC[meta.business],
            target_document_id=target_document_id,
            document_id=document_id,
        )

    def derived_document_id(self) -> str:
        if self.document_id:
            return self.document_id
        if not (self.number and self.date):
            raise ValueError("a DocumentId needs number and date; pass document_id (e.g. Trục's document id)")
        code = f"{self.number}/{self.notation}" if self.notation else self.number
        return f"{self.sender},{format_date(self.date)},{code}"


_BUSINESS_FROM_TRUC = {
    BusinessType.NEW: BusinessDocType.NEW,
    BusinessType.REVOKE: BusinessDocType.REVOKE,
    BusinessType.UPDATE: BusinessDocType.UPDATE,
    BusinessType.REPLACE: BusinessDocType.REPLACE,
}
_BUSINESS_TO_TRUC = {v: k for k, v in _BUSINESS_FROM_TRUC.items()}


def _org(code: str, names: Callable[[str], str]) -> list[Element]:
    """From/To children in VNPT's order; what Trục does not know is written empty."""
    return [
        _e("OrganId", code),
        _e("OrganizationInCharge"),
        _e("OrganName", names(code)),
        _e("OrganAdd"),
        _e("Email"),
        _e("Telephone"),
        _e("Fax"),
        _e("Website"),
    ]


def build_edoc(
    fields: EdocFields,
    *,
    names: Callable[[str], str],
    files: Sequence[FileSpec] = (),
    trace: Sequence[tuple[str, int]] = (),
    staff: StaffInfo | None = None,
) -> Package:
    """An edoc header from plain fields, in VNPT's element order.

    ``names`` gives an agency's name from its code (the directory);
    ``trace`` lists (agency code, Unix ms) TraceHeaders, oldest first.
    Raises ValueError for fields no valid package can carry (a bug in the
    caller) and the reader's errors when the result would not read back.
    """
    if not 0 <= fields.urgency <= 4:
        raise ValueError("urgency is 0..4")
    f = fields
    mh: list[Element] = [_e("From", children=_org(f.sender, names))]
    mh += [_e("To", children=_org(r, names)) for r in f.recipients]
    mh += [
        _e("DocumentId", f.derived_document_id()),
        _e("Code", children=[_e("CodeNumber", f.number), _e("CodeNotation", f.notation)]),
        _e("PromulgationInfo", children=[_e("Place", f.place), _e("PromulgationDate", format_date(f.date))]),
        _e("DocumentType", children=[_e("Type", str(f.doc_type)), _e("TypeName", f.type_name)]),
        _e("Subject", f.subject),
        _e("Content", f.content),
        _e(
            "SignerInfo",
            children=[_e("Competence", f.signer_competence), _e("Position", f.signer_title), _e("FullName", f.signer)],
        ),
        _e("DueDate", format_date(f.due)),
        _e("ToPlaces", children=[_e("Place", p) for p in f.to_places]),
        _e("OtherInfo", children=[_e("Priority", str(f.urgency))]),
    ]
    mh += [
        _e(
            "ResponseFor",
            children=[
                _e("OrganId", r.organ_id),
                _e("Code", r.code),
                _e("PromulgationDate", r.promulgation_date),
                _e("DocumentId", r.document_id),
            ],
        )
        for r in f.response_for
    ]
    mh.append(_e("SteeringType", str(f.steering_type)))
    traces = [_trace_header(code, at) for code, at in trace]
    header = [_e("MessageHeader", children=mh), _e("TraceHeaderList", children=[*traces, _business(f, staff)])]
    refs, atts, infos = [], [], []
    for i, spec in enumerate(files):
        cid = f"cid:{i + 1}"
        refs.append(
            _e(
                "Reference",
                children=[
                    _e("ContentId", cid),
                    _e("ContentType", spec.media_type),
                    _e("Description", spec.description),
                    _e("AttachmentName", spec.name),
                ],
            )
        )
        atts.append(
            _e(
                "Attachment",
                children=[
                    _e("ContentId", cid),
                    _e("AttachmentName", spec.name),
                    _e("Description", spec.description),
                    _e("ContentType", spec.media_type),
                    _e("ContentTransferEncoded"),
                ],
            )
        )
        infos.append(
            AttachmentInfo(
                i, str(i + 1), spec.name, spec.media_type, spec.description, spec.size, spec.sha256, "", spec.media_type
            )
        )
    manifest = edxml("edXMLManifest", "", tuple(refs), version="1.0")
    envelope = _e("edXMLEnvelope", children=[_e("edXMLHeader", children=header), _e("edXMLBody", children=[manifest])])
    root = _e("edXML", children=[envelope, _e("AttachmentEncoded", children=atts)])
    return Package.from_tree(root, infos)


def _business(f: EdocFields, staff: StaffInfo | None) -> Element:
    kids: list[Element] = []
    if f.business is not BusinessDocType.NEW or f.target_document_id:
        kids.append(_e("DocumentId", f.target_document_id))
    kids += [_e("BussinessDocType", str(int(f.business))), _e("BussinessDocReason", f.business_reason), _e("Paper", "0")]
    if f.business is BusinessDocType.UPDATE:
        receivers = [
            _e("Receiver", children=[_e("OrganId", r.organ_id), _e("ReceiverType", "1" if r.added else "0")]) for r in f.receivers
        ]
        info = [_e("DocumentInfo", "1"), _e("DocumentReceiver", "1" if receivers else "0")]
        if receivers:
            info.append(_e("ReceiverList", children=receivers))
        kids.append(_e("BussinessDocumentInfo", children=info))
    if f.business is BusinessDocType.REPLACE and f.replacements:
        kids.append(
            _e(
                "ReplacementInfoList",
                children=[
                    _e(
                        "ReplacementInfo",
                        children=[
                            _e("DocumentId", r.document_id),
                            _e("OrganIdList", children=[_e("OrganId", o) for o in r.organ_ids]),
                        ],
                    )
                    for r in f.replacements
                ],
            )
        )
    if staff is not None:
        kids.append(
            _e(
                "StaffInfo",
                children=[
                    _e("Department", staff.department),
                    _e("Staff", staff.staff),
                    _e("Email", staff.email),
                    _e("Mobile", staff.mobile),
                ],
            )
        )
    return _e("Bussiness", children=kids)


@dataclass(frozen=True, slots=True)
class StatusFields:
    """A status package's content: ``sender`` reports ``code`` about ``response_for`` (whose OrganId is the addressee)."""

    sender: str
    response_for: ResponseFor
    code: int
    at_ms: int
    description: str = ""
    staff: StaffInfo | None = None


def build_status(fields: StatusFields, *, names: Callable[[str], str]) -> Package:
    """A status package in VNPT's order (EDXML.md §5). Raises ValueError for a code outside 1..99."""
    f = fields
    if not 1 <= f.code <= 99:
        raise ValueError("a status code is 01..99")
    r = f.response_for
    staff = f.staff or StaffInfo()
    mh = [
        _e("From", children=_org(f.sender, names)),
        _e(
            "ResponseFor",
            children=[
                _e("OrganId", r.organ_id),
                _e("Code", r.code),
                _e("PromulgationDate", r.promulgation_date),
                _e("DocumentId", r.document_id),
            ],
        ),
        _e(
            "StaffInfo",
            children=[
                _e("Department", staff.department),
                _e("Staff", staff.staff),
                _e("Mobile", staff.mobile),
                _e("Email", staff.email),
            ],
        ),
        _e("StatusCode", f"{f.code:02d}"),
        _e("Description", f.description),
        _e("Timestamp", format_timestamp(f.at_ms)),
    ]
    root = _e("edXML", children=[_e("edXMLEnvelope", children=[_e("edXMLHeader", children=[_e("MessageHeader", children=mh)])])])
    return Package.from_tree(root)


# --- the hop a node adds -----------------------------------------------------------


def _trace_header(organ_id: str, at_ms: int) -> Element:
    return _e("TraceHeader", children=[_e("OrganId", organ_id), _e("Timestamp", format_timestamp(at_ms))])


def with_trace(package: Package, organ_id: str, at_ms: int) -> Package:
    """The package as a node passes it on: one TraceHeader appended (its agency code, ``at_ms`` in UTC+7).

    It goes after the last TraceHeader (before Bussiness), or first in a
    TraceHeaderList created after MessageHeader when there is none. Nothing
    else changes. Status packages carry no TraceHeaderList: ValueError.
    """
    if package.kind is not Kind.EDOC:
        raise ValueError("status packages carry no TraceHeaderList")
    new = _trace_header(organ_id, at_ms)
    root = package.root
    env_i, envelope = _child_index(root, "edXMLEnvelope")
    head_i, header = _child_index(envelope, "edXMLHeader")
    kids = list(header.children)
    tl = next((i for i, c in enumerate(kids) if c.is_("TraceHeaderList")), None)
    if tl is None:
        mh = next(i for i, c in enumerate(kids) if c.is_("MessageHeader"))
        kids.insert(mh + 1, _e("TraceHeaderList", children=[new]))
    else:
        trace_list = kids[tl]
        tk = list(trace_list.children)
        last = max((i for i, c in enumerate(tk) if c.is_("TraceHeader")), default=-1)
        tk.insert(last + 1, new)
        kids[tl] = trace_list.with_children(tuple(tk))
    header = header.with_children(tuple(kids))
    envelope = _replace_child(envelope, head_i, header)
    root = _replace_child(root, env_i, envelope)
    return Package.from_tree(root, package.attachments, package.reader_warnings)


def _child_index(el: Element, name: str) -> tuple[int, Element]:
    for i, c in enumerate(el.children):
        if c.is_(name):
            return i, c
    raise ValueError(f"no {name}")  # from_tree guarantees it; a bug otherwise


def _replace_child(el: Element, i: int, new: Element) -> Element:
    kids = list(el.children)
    kids[i] = new
    return el.with_children(tuple(kids))


# --- to Trục's manifest -------------------------------------------------------------------

# DocumentMeta.decode's limits: a longer edXML value (a soft warning here) is
# clipped in Trục's manifest; the full value stays in the edXML header.
_META_LIMITS = {"subject": 2000, "number": 32, "notation": 64, "doc_type": 128, "place": 128, "signer": 128, "signer_title": 128}


def to_document_meta(edoc: Edoc, files: Sequence[FileEntry] = (), ref: Digest | None = None) -> DocumentMeta:
    """Trục's manifest for an edoc: number/notation, type name, place/date, signer, urgency, due, business.

    ``ref`` is the Trục id of the target of a revoke/update/replace (the
    node finds it from ``edoc.business.document_id``). Raises SchemaError
    where DocumentMeta refuses (an empty Subject, a change without ``ref``).
    """
    values = {
        "subject": edoc.subject,
        "number": edoc.code_number,
        "notation": edoc.code_notation,
        "doc_type": edoc.type_name,
        "place": edoc.place,
        "signer": edoc.signer_full_name,
        "signer_title": edoc.signer_title,
    }
    clipped = {k: v[: _META_LIMITS[k]] for k, v in values.items()}
    return DocumentMeta(
        subject=clipped["subject"],
        number=clipped["number"],
        notation=clipped["notation"],
        doc_type=clipped["doc_type"],
        place=clipped["place"],
        signer=clipped["signer"],
        signer_title=clipped["signer_title"],
        date=edoc.date_iso,
        urgency=Urgency(edoc.urgency),
        due=edoc.due_iso,
        business=_BUSINESS_TO_TRUC[edoc.business.doc_type],
        ref=ref,
        files=tuple(files),
    )
