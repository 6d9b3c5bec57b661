"""edXML (QCVN 102:2016): the packages agencies' document systems exchange, read and written as streams.

Pure: bytes in, events out; events and byte streams in, bytes out. Time and
randomness are arguments. docs/edxml.md is the integrator's guide; the
names below are the public API.

Reading::

    reader = Reader(Limits())
    events = reader.feed(chunk) ...; events = reader.close()   # HeaderRead, Attachment*, PackageRead

Writing::

    for piece in write_package(with_trace(package, "000.00.00.H29", now_ms), files, zip=ZipMode.AS_RECEIVED, at_ms=now_ms):
        ...

Carrying the header in Trục's manifest: ``encode_package`` / ``decode_package``.
Making a header: ``build_edoc(EdocFields(...), names=...)``, ``build_status(StatusFields(...), names=...)``.
"""

from __future__ import annotations

from .build import EdocFields, FileSpec, StatusFields, build_edoc, build_status, to_document_meta, with_trace
from .cborform import FORMAT_VERSION, decode_package, encode_package
from .limits import DEFAULT_LIMITS, Limits
from .model import (
    AttachmentInfo,
    Business,
    BusinessDocType,
    Edoc,
    FieldWarning,
    Kind,
    Organization,
    Package,
    ReceiverChange,
    Reference,
    Replacement,
    ResponseFor,
    StaffInfo,
    Status,
    TraceHeader,
    format_date,
    format_timestamp,
    parse_date,
    parse_timestamp,
)
from .reader import AttachmentData, AttachmentEnded, AttachmentStarted, Event, HeaderRead, PackageRead, Reader, read_package
from .tree import EDXML_NS, Attr, Element
from .writer import FileChunks, ZipMode, write_bytes, write_package

__all__ = [
    "DEFAULT_LIMITS",
    "EDXML_NS",
    "FORMAT_VERSION",
    "AttachmentData",
    "AttachmentEnded",
    "AttachmentInfo",
    "AttachmentStarted",
    "Attr",
    "Business",
    "BusinessDocType",
    "Edoc",
    "EdocFields",
    "Element",
    "Event",
    "FieldWarning",
    "FileChunks",
    "FileSpec",
    "HeaderRead",
    "Kind",
    "Limits",
    "Organization",
    "Package",
    "PackageRead",
    "Reader",
    "ReceiverChange",
    "Reference",
    "Replacement",
    "ResponseFor",
    "StaffInfo",
    "Status",
    "StatusFields",
    "TraceHeader",
    "ZipMode",
    "build_edoc",
    "build_status",
    "decode_package",
    "encode_package",
    "format_date",
    "format_timestamp",
    "parse_date",
    "parse_timestamp",
    "read_package",
    "to_document_meta",
    "with_trace",
    "write_bytes",
    "write_package",
]
