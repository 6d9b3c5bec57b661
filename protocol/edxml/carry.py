"""What Trục carries of an edXML package, and the names it files documents under (docs/edxml.md §11).

An imported edoc travels as Trục's document: its attachments are the
manifest's files, in order, and its header, in CBOR form
(:func:`~protocol.edxml.cborform.encode_package`), is the manifest's
``edxml`` field (manifest version 2). Every node that holds the document
for an agency files it under its edXML names (:class:`EdxmlNames`): that is
how a status package, which names a document only by its DocumentId, finds it.

A recipient must not take the header's word over the signed envelope's: a
sender could write another agency into ``From``. :func:`carried_package`
checks the header against what the envelope proves (sender, recipients)
and the manifest's files against the header's attachments.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .. import cbor
from ..agency import AgencyCode
from ..document import MAX_EDXML_HEADER_BYTES, MAX_FILE_NAME_BYTES, DocumentMeta, FileEntry, check_file_name
from ..errors import RemoteError, SchemaError
from .build import EdocFields
from .cborform import decode_package
from .model import AttachmentInfo, Edoc, Kind, Package, format_date


@dataclass(frozen=True, slots=True)
class EdxmlNames:
    """What a document is called in edXML: the DocumentId statuses name it by, and its số/ký hiệu and date."""

    document_id: str
    number: str
    notation: str
    date: str  # PromulgationDate as written (yyyy/MM/dd when Trục writes it)


def names_of(meta: DocumentMeta, sender: str, doc_hex: str) -> EdxmlNames:
    """A document's edXML names, the same on every node that can read it.

    A document that came as edXML keeps its own. One submitted without is
    named as VNPT names it, ``<sender>,<yyyy/MM/dd>,<number>/<notation>``,
    when it has a number and a date, else by its Trục id (hex): the header
    a recipient's node builds on export carries the same DocumentId, so the
    statuses that come back name it.
    """
    if meta.edxml:
        edoc = _edoc(decode_package(meta.edxml))
        return EdxmlNames(edoc.document_id, edoc.code_number, edoc.code_notation, edoc.promulgation_date)
    fields = EdocFields.from_meta(meta, sender=sender, recipients=())
    document_id = fields.derived_document_id() if meta.number and meta.date else doc_hex
    return EdxmlNames(document_id, meta.number, meta.notation, format_date(meta.date))


def carried_package(meta: DocumentMeta, sender: str, to: Sequence[str]) -> Package:
    """The edXML header a document carries, checked against the signed envelope; SchemaError names the mismatch.

    ``From`` must be the envelope's sender and the ``To`` list its
    recipients; attachment i must be the manifest's file i (size and
    SHA-256), so an export rebuilds the package from the document's own bytes.
    """
    try:
        package = decode_package(meta.edxml)
    except RemoteError as exc:
        raise SchemaError(f"manifest.edxml: {exc.message}") from None
    edoc = _edoc(package)
    if _code(edoc.sender.organ_id) != _code(sender):
        raise SchemaError(f"manifest.edxml: From is {edoc.sender.organ_id!r:.40}, the document was signed by {sender}")
    named = sorted(_code(r.organ_id) for r in edoc.recipients)
    if named != sorted(_code(c) for c in to):
        raise SchemaError(
            f"manifest.edxml: To names {', '.join(named)[:200]}, the document was sealed for {', '.join(sorted(to))}"
        )
    if len(package.attachments) != len(meta.files):
        raise SchemaError(f"manifest.edxml: {len(package.attachments)} attachments for {len(meta.files)} files")
    for i, (att, f) in enumerate(zip(package.attachments, meta.files, strict=True)):
        if att.size != f.size or att.sha256 != bytes(f.sha256):
            raise SchemaError(f"manifest.edxml: attachment {i + 1} is not file {i + 1} ({f.name!r:.80})")
    return package


def _code(text: str) -> str:
    try:
        return str(AgencyCode.parse(text))
    except RemoteError:
        raise SchemaError(f"manifest.edxml: {text!r:.40} is not an agency code") from None


def _edoc(package: Package) -> Edoc:
    if package.kind is not Kind.EDOC or package.edoc is None:
        raise SchemaError("manifest.edxml: a document carries an edoc header, not a status package")
    return package.edoc


def check_header_size(encoded: bytes) -> bytes:
    if len(encoded) > MAX_EDXML_HEADER_BYTES:
        raise SchemaError(
            f"the edXML header is {len(encoded)} bytes in Trục's form, over the {MAX_EDXML_HEADER_BYTES} a manifest carries"
        )
    return encoded


def file_names(attachments: Sequence[AttachmentInfo]) -> list[str]:
    """A manifest file name for each attachment: AttachmentName when Trục can carry it as it is.

    Empty names become ``attachment-<n>``; a name over 255 UTF-8 bytes is
    shortened keeping its extension; a name used twice gets `` (2)`` before
    its extension. The header keeps every AttachmentName as written.
    """
    out: list[str] = []
    taken: set[str] = set()
    for i, att in enumerate(attachments):
        name = _plain(att.name) or f"attachment-{i + 1}"
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext = name, ""
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = _clip(f"{stem} ({n})", f".{ext}" if ext else "")
        taken.add(candidate)
        out.append(candidate)
    return out


def _plain(name: str) -> str:
    if not name:
        return ""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode("utf-8")) > 16:
        stem, ext = name, ""
    clipped = _clip(stem, f".{ext}" if ext else "")
    try:
        return check_file_name(clipped)
    except SchemaError:
        return ""


def _clip(stem: str, ext: str) -> str:
    room = MAX_FILE_NAME_BYTES - len(ext.encode("utf-8"))
    data = stem.encode("utf-8")
    if len(data) > room:
        stem = data[:room].decode("utf-8", errors="ignore")
    return stem + ext


def fingerprint(edoc: Edoc, files: Sequence[FileEntry]) -> bytes:
    """What makes two imports of one DocumentId the same document: a retry, not a new or a changed one.

    Recipients, subject, số/ký hiệu, date, business type and target, and the
    attachments' bytes; not TraceHeaders, zip wrappers or element order,
    which a producer may write anew when it sends the same package again.
    """
    data = cbor.encode(
        [
            edoc.document_id,
            sorted(r.organ_id for r in edoc.recipients),
            edoc.subject,
            edoc.code_number,
            edoc.code_notation,
            edoc.promulgation_date,
            int(edoc.business.doc_type),
            edoc.business.document_id,
            [bytes(f.sha256) for f in files],
        ]
    )
    return hashlib.sha256(data).digest()


def differences(sent: Package, received: Package, hops: Sequence[str]) -> list[str]:
    """How a package a recipient exported differs from the one its sender's software put in ([] when it is whole).

    Whole means (docs/edxml.md §11): every header element as sent, the
    sent TraceHeaders followed by exactly one per ``hops`` (the sending
    node's agency, then the recipient's), and each attachment's name, bytes
    (SHA-256) and VNPT zip wrapper as sent.
    """
    if sent.edoc is None or received.edoc is None:
        return [f"kind: sent {sent.kind.value}, received {received.kind.value}"]
    out = []
    a, b = sent.edoc, received.edoc
    for f in dataclasses.fields(a):
        if f.name != "trace_headers" and getattr(a, f.name) != getattr(b, f.name):
            out.append(f"{f.name}: sent {getattr(a, f.name)!r:.80}, received {getattr(b, f.name)!r:.80}")
    n = len(a.trace_headers)
    if b.trace_headers[:n] != a.trace_headers:
        out.append("trace_headers: the sent TraceHeaders are not all there, in order")
    added = [t.organ_id for t in b.trace_headers[n:]]
    if added != list(hops):
        out.append(f"trace_headers: added {added}, expected {list(hops)}")
    if [(x.name, x.sha256, x.wrapper) for x in sent.attachments] != [(x.name, x.sha256, x.wrapper) for x in received.attachments]:
        want = [(x.name, x.sha256.hex()[:12], x.wrapper) for x in sent.attachments]
        got = [(x.name, x.sha256.hex()[:12], x.wrapper) for x in received.attachments]
        out.append(f"attachments (name, sha256, zip wrapper): sent {want}, received {got}")
    return out
