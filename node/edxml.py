"""edXML in and out of a node: packages become documents and statuses, and documents and statuses become packages.

What agencies' existing software sends (docs/edxml.md §11):

* an **edoc** package is read as a stream; its From must be an agency this
  node hosts (and the caller may act for), every To must be in the
  directory, and a revoke/update/replace must name a DocumentId the sender
  sent through this node: all checked when the header has been read,
  before any attachment byte is kept. Attachments go to the spool as they
  are decoded; only once the whole package has read clean is it sealed as
  a Trục document, its header carried in the manifest (with this hop's
  TraceHeader) so every recipient can rebuild it;
* a **status** package is routed by ``ResponseFor``: it becomes a status of
  the document filed under (From, ResponseFor/OrganId, DocumentId).

Sending the same package again is safe: an edoc whose sender, DocumentId,
recipients and content match one already sent is that document (its id
comes back, ``duplicate``); the same DocumentId with other content for the
same recipients is refused (``document_id_taken``), never silently
dropped or sent twice. A status the author already sent (other than 05),
and the 01 the node sends on its own at delivery, come back as duplicates.

Out: a recipient's document as an edoc package, byte for byte the same
each time it is exported (the TraceHeader time is when it arrived here; the
zip entry names and times are drawn from the document id), and the statuses
about a document as status packages.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass

import trio

from identity.sealing import FileSource
from protocol.agency import AgencyCode
from protocol.document import MAX_NOTE_CHARS, DocumentMeta, FileBytes, FileDone, FileEntry, check_media_type
from protocol.edxml import (
    AttachmentData,
    AttachmentEnded,
    AttachmentStarted,
    BusinessDocType,
    EdocFields,
    FieldWarning,
    FileSpec,
    HeaderRead,
    Kind,
    Package,
    PackageRead,
    Reader,
    ResponseFor,
    StatusFields,
    ZipMode,
    build_edoc,
    build_status,
    decode_package,
    encode_package,
    to_document_meta,
    with_trace,
    write_package,
)
from protocol.edxml.carry import check_header_size, file_names, fingerprint
from protocol.edxml.model import Edoc, Status
from protocol.envelope import MessageHeader
from protocol.errors import DocumentIdTakenError, NotFoundError, SchemaError, TooLargeError
from protocol.ids import Digest
from protocol.status import Role, StatusCode
from store.records import EdxmlRef, HistoryRecord

from .core import NodeCore, Part
from .statuses import Statuses
from .submission import Submission
from .upload import Spool, SpooledFile, SpoolWriter

Require = Callable[[AgencyCode], None]  # raises AccessDeniedError unless the caller may act for the agency
MAX_PACKAGE_HEADER = 16 << 20  # an edXML package's bytes beyond its base64 attachments: header, XML, line breaks


def max_package_bytes(max_document_bytes: int) -> int:
    """The largest package read for documents up to ``max_document_bytes``: base64 attachments and the header."""
    return max_document_bytes * 4 // 3 + MAX_PACKAGE_HEADER


@dataclass(frozen=True)
class Imported:
    """What an imported package became."""

    kind: Kind
    id: Digest  # the document (edoc) or the status envelope (status)
    doc: Digest  # the document (the same as ``id`` for an edoc)
    document_id: str  # the edXML DocumentId
    duplicate: bool
    code: StatusCode | None = None  # a status package's
    warnings: tuple[FieldWarning, ...] = ()


@dataclass(frozen=True)
class Exported:
    id: Digest
    document_id: str
    size: int
    sha256: bytes


@dataclass(frozen=True)
class StatusPackage:
    id: Digest  # the status envelope
    author: AgencyCode
    code: StatusCode
    at: int
    package: bytes


class EdxmlGateway(Part):
    def __init__(self, n: NodeCore, submission: Submission, statuses: Statuses) -> None:
        super().__init__(n)
        self.submission = submission
        self.statuses = statuses
        self._importing: dict[tuple[AgencyCode, str], trio.Event] = {}

    # --- in ------------------------------------------------------------------------------

    async def submit(self, chunks: AsyncIterator[bytes], spool: Spool, require: Require, kind: Kind | None = None) -> Imported:
        """Read one package from ``chunks`` and make it a document or a status (see the module's docstring).

        ``kind``: what the caller said it sends (the SDK's messagetype); another kind is a SchemaError.

        Raises the codec's ``edxml_*`` errors, and what submit and status.send
        raise: NotHostedError, AccessDeniedError, UnknownAgencyError,
        NotFoundError, TooLargeError, BusyError, DocumentIdTakenError...
        """
        reader = Reader()
        writers: list[SpoolWriter] = []
        package: Package | None = None
        ref: Digest | None = None
        total = 0
        limit = self.config.max_document_bytes
        with spool.reservation() as room:
            try:
                async for chunk in chunks:
                    for ev in reader.feed(chunk):
                        if isinstance(ev, HeaderRead):
                            if kind is not None and ev.package.kind is not kind:
                                raise SchemaError(f"the package is {ev.package.kind.value}, the call said {kind.value}")
                            ref = self._check_header(ev.package, require)
                        elif isinstance(ev, AttachmentStarted):
                            writers.append(spool.writer())
                        elif isinstance(ev, AttachmentData):
                            total += len(ev.data)
                            if total > limit:
                                raise TooLargeError(
                                    f"the package's attachments pass {limit} bytes, this node accepts documents "
                                    f"up to {limit} bytes ([limits] max_document_mb)"
                                )
                            room.add(len(ev.data))
                            await writers[ev.index].write(ev.data)
                        elif isinstance(ev, AttachmentEnded):
                            writers[ev.index].close()
                for ev in reader.close():
                    if isinstance(ev, PackageRead):
                        package = ev.package
                assert package is not None
                if package.kind is Kind.STATUS:
                    assert package.status is not None
                    return await self._status(package.status, require)
                return await self._edoc(package, [w.close() for w in writers], ref)
            finally:
                for w in writers:
                    w.discard()

    def _check_header(self, package: Package, require: Require) -> Digest | None:
        """Everything that can be refused before the attachments are read; returns a change's target."""
        if package.kind is Kind.STATUS:
            assert package.status is not None
            require(AgencyCode.parse(package.status.sender.organ_id))
            return None
        edoc = package.edoc
        assert edoc is not None
        sender = AgencyCode.parse(edoc.sender.organ_id)
        require(sender)
        recipients = [AgencyCode.parse(r.organ_id) for r in edoc.recipients]
        ref = self._target(sender, edoc)
        meta = self._meta(edoc, (), ref)
        self.submission.check_submit(sender, recipients, meta, [])
        return ref

    def _meta(self, edoc: Edoc, files: Iterable[FileEntry], ref: Digest | None) -> DocumentMeta:
        try:
            return to_document_meta(edoc, tuple(files), ref)
        except SchemaError as exc:
            raise SchemaError(f"the edXML header does not make a document: {exc.message}") from None

    def _target(self, sender: AgencyCode, edoc: Edoc) -> Digest | None:
        """The Trục id of the document a revoke, update or replace names (Bussiness/DocumentId)."""
        business = edoc.business
        if business.doc_type is BusinessDocType.NEW:
            return None
        what = f"BussinessDocType {int(business.doc_type)} ({business.doc_type.name.lower()})"
        if not business.document_id:
            raise SchemaError(f"{what} needs Bussiness/DocumentId: the DocumentId of the document it changes")
        target = self._newest(
            self.store.edxml_docs(sender, sender, business.document_id), lambda h: h.sender == sender, prefer_new=True
        )
        if target is None:
            raise NotFoundError(
                f"{what} names DocumentId {business.document_id!r:.120}, which {sender} has not sent through this node"
            )
        return target

    def _newest(self, candidates: list[Digest], keep: Callable[[MessageHeader], bool], *, prefer_new: bool) -> Digest | None:
        """The newest of the documents ``keep`` accepts, preferring new ones (``prefer_new``) or changes.

        One DocumentId may name a document and its revoke, update or replace
        (producers often reuse it): a change targets the document itself, a
        15/16 answers the newest change, 02-06 the document.
        """
        found = []
        for d in candidates:
            h = self.n.doc_header(d)
            rec = self.store.doc(d)
            if h is not None and rec is not None and keep(h):
                found.append(((rec.business in ("", "new")) == prefer_new, h.at, d))
        return max(found)[2] if found else None

    async def _edoc(self, package: Package, spooled: list[SpooledFile], ref: Digest | None) -> Imported:
        edoc = package.edoc
        assert edoc is not None
        sender = AgencyCode.parse(edoc.sender.organ_id)
        recipients = [AgencyCode.parse(r.organ_id) for r in edoc.recipients]
        names = file_names(package.attachments)
        sources = [
            FileSource(name, _mime(att.media_type), path=str(sf.path), size=sf.size, sha256=sf.sha256)
            for name, att, sf in zip(names, package.attachments, spooled, strict=True)
        ]
        entries = [
            FileEntry(s.name, s.media_type, att.size, Digest(att.sha256))
            for s, att in zip(sources, package.attachments, strict=True)
        ]
        fp = fingerprint(edoc, entries)
        slot = (sender, edoc.document_id)
        while slot in self._importing:  # the same DocumentId being imported right now: a retry racing the first try
            await self._importing[slot].wait()
        self._importing[slot] = trio.Event()
        try:
            same = self._same(sender, edoc, recipients, fp)
            if same is not None:
                self.metrics.inc("edxml_duplicates", kind="edoc")
                return Imported(Kind.EDOC, same, same, edoc.document_id, True, warnings=package.warnings)
            header = check_header_size(encode_package(with_trace(package, str(sender), self.clock())))
            meta = dataclasses.replace(self._meta(edoc, (), ref), edxml=header)
            doc = await self.submission.submit(sender, recipients, meta, sources, fingerprint=fp)
        finally:
            self._importing.pop(slot).set()
        self.metrics.inc("edxml_imported", kind="edoc")
        self.log.info("edxml.imported", id=doc.short(), document_id=edoc.document_id[:120], warnings=len(package.warnings))
        return Imported(Kind.EDOC, doc, doc, edoc.document_id, False, warnings=package.warnings)

    def _same(self, sender: AgencyCode, edoc: Edoc, recipients: list[AgencyCode], fp: bytes) -> Digest | None:
        """The document this package was already sent as; DocumentIdTakenError if that one had other content."""
        to = sorted(recipients)
        for doc_id in self.store.edxml_docs(sender, sender, edoc.document_id):
            h = self.n.doc_header(doc_id)
            ref = self.store.edxml_ref(doc_id)
            if h is None or ref is None or h.sender != sender or sorted(h.to) != to:
                continue
            if ref.fingerprint == fp:
                return doc_id
            rec = self.store.doc(doc_id)
            if edoc.business.doc_type is not BusinessDocType.NEW or rec is None or rec.business not in ("", "new"):
                continue  # a revoke, update or replace may carry the DocumentId of the document it changes
            raise DocumentIdTakenError(
                f"{sender} already sent DocumentId {edoc.document_id!r:.120} to these recipients as {doc_id.short()}, "
                "with other content; send a change as an update or replace (BussinessDocType 2 or 3) naming it, "
                "or give the new document its own DocumentId"
            )
        return None

    async def _status(self, st: Status, require: Require) -> Imported:
        author = AgencyCode.parse(st.sender.organ_id)
        require(author)
        self.n.keys(author)  # NotHostedError
        other = AgencyCode.parse(st.response_for.organ_id)
        try:
            code = StatusCode(st.code)
        except ValueError:
            raise SchemaError(
                f"StatusCode {st.status_code!r:.8} is not one Trục carries ({', '.join(str(c) for c in StatusCode)})"
            ) from None
        document_id = st.response_for.document_id
        prefer_new = code not in (StatusCode.AGREED, StatusCode.REFUSED)
        if code is StatusCode.TAKEBACK_REQUESTED:  # the original sender writes to a recipient
            found = self.store.edxml_docs(author, author, document_id)
            doc = self._newest(found, lambda h: h.sender == author and other in h.to, prefer_new=True)
            thread = other
        else:
            found = self.store.edxml_docs(author, other, document_id)
            doc = self._newest(found, lambda h: h.sender == other and author in h.to, prefer_new=prefer_new)
            thread = author
        if doc is None:
            sender, recipient = (author, other) if code is StatusCode.TAKEBACK_REQUESTED else (other, author)
            raise NotFoundError(
                f"no document with DocumentId {document_id!r:.120} from {sender} to {recipient} is on this node "
                "(the status names it by ResponseFor/DocumentId and ResponseFor/OrganId)"
            )
        if code is not StatusCode.PROCESSING:  # only 05 may repeat; the node sent the 01 itself at delivery
            for _, sid, r in self.store.history(doc, thread):
                if r.code == code and r.author == str(author):
                    self.metrics.inc("edxml_duplicates", kind="status")
                    return Imported(Kind.STATUS, sid, doc, document_id, True, code)
        to = other if code is StatusCode.TAKEBACK_REQUESTED else None
        sid = await self.statuses.send(doc, author, code, note=st.description[:MAX_NOTE_CHARS], to=to)
        self.metrics.inc("edxml_imported", kind="status")
        return Imported(Kind.STATUS, sid, doc, document_id, False, code)

    # --- out -----------------------------------------------------------------------------

    def export(self, doc_id: Digest, code: AgencyCode, zip_mode: ZipMode) -> tuple[str, Iterator[bytes]]:
        """A received document as an edXML package: (its DocumentId, the package's bytes as they are made).

        The same bytes every time: the TraceHeader this node adds is dated
        when the document arrived here, and VNPT zip wrappers get names and
        times drawn from the document. Raises what document.get raises.
        """
        events = self.submission.read_document(doc_id, code)
        meta = next(events)
        assert isinstance(meta, DocumentMeta)
        h = self.n.doc_header(doc_id)
        entry = self.store.inbox_entry(code, doc_id)
        assert h is not None
        at = entry[1].received_at if entry is not None else h.at
        package = with_trace(decode_package(meta.edxml), str(code), at) if meta.edxml else self._built(doc_id, h, meta, code, at)
        assert package.edoc is not None
        pieces = write_package(package, _file_readers(events, len(meta.files)), zip=zip_mode, at_ms=at, rng=_seeded(doc_id, code))
        return package.edoc.document_id, pieces

    def _built(self, doc_id: Digest, h: MessageHeader, meta: DocumentMeta, code: AgencyCode, at: int) -> Package:
        """The package of a document submitted without edXML: VNPT's header from Trục's manifest."""
        ref = self.store.edxml_ref(doc_id)
        target = ""
        if meta.ref is not None:
            target_ref = self.store.edxml_ref(meta.ref)
            target = target_ref.document_id if target_ref is not None else meta.ref.hex()
        fields = EdocFields.from_meta(
            meta,
            sender=str(h.sender),
            recipients=[str(c) for c in h.to],
            document_id=ref.document_id if ref is not None else doc_id.hex(),
            target_document_id=target,
        )
        files = [FileSpec(f.name, f.media_type, f.size, bytes(f.sha256)) for f in meta.files]
        return build_edoc(fields, names=self._name, files=files, trace=[(str(h.sender), h.at), (str(code), at)])

    def _name(self, code: str) -> str:
        rec = self.n.trust.directory.agencies.get(AgencyCode.parse(code))
        return rec.name if rec is not None else ""

    def status_items(self, doc_id: Digest, code: AgencyCode) -> list[tuple[Digest, AgencyCode, HistoryRecord]]:
        """The statuses about ``doc_id`` addressed to hosted agency ``code``: (status id, author, record).

        The sender gets each recipient's (01, 02 … 16, the node's own 01 and
        02 included); a recipient gets the sender's 13s. Raises NotFoundError.
        """
        self.n.keys(code)
        h = self.n.doc_header(doc_id)
        if h is None:
            raise NotFoundError(f"document {doc_id}")
        if code == h.sender:
            threads = list(h.to)
        elif code in h.to:
            threads = [code]
        else:
            raise NotFoundError(f"{code} is not a party to {doc_id.short()}")
        out = []
        for thread in threads:
            for _, sid, r in self.store.history(doc_id, thread):
                author = AgencyCode.parse(r.author)
                if author == code or Role(r.role) is (Role.SENDER if code == h.sender else Role.RECIPIENT):
                    continue
                out.append((sid, author, r))
        return out

    def status_packages(self, doc_id: Digest, code: AgencyCode) -> list[StatusPackage]:
        """The statuses about ``doc_id`` addressed to hosted agency ``code`` (:meth:`status_items`) as edXML packages."""
        items = self.status_items(doc_id, code)
        h = self.n.doc_header(doc_id)
        assert h is not None
        ref = self.store.edxml_ref(doc_id) or EdxmlRef(doc_id.hex(), "", "", "", str(h.sender))
        number = f"{ref.number}/{ref.notation}" if ref.notation else ref.number
        out = []
        for sid, author, r in items:
            fields = StatusFields(
                sender=str(author),
                response_for=ResponseFor(str(code), number, ref.date, ref.document_id),
                code=r.code,
                at_ms=r.at,
                description=r.note,
            )
            data = b"".join(write_package(build_status(fields, names=self._name), [], zip=ZipMode.RAW))
            out.append(StatusPackage(sid, author, StatusCode(r.code), r.at, data))
        out.sort(key=lambda s: s.at)  # stable: a thread's statuses stay in their order (seq) when their times tie
        return out


def _mime(media_type: str) -> str:
    try:
        return check_media_type(media_type)
    except SchemaError:
        return "application/octet-stream"


def _file_readers(events: Iterator[object], count: int) -> list[Callable[[], Iterable[bytes]]]:
    """Attachment i's bytes from a document being read in order (the writer asks for them in the same order)."""

    def reader(i: int) -> Iterator[bytes]:
        for ev in events:
            if isinstance(ev, FileBytes):
                assert ev.index == i
                yield ev.data
            elif isinstance(ev, FileDone):
                assert ev.index == i
                return

    return [lambda i=i: reader(i) for i in range(count)]  # type: ignore[misc]


def _seeded(doc_id: Digest, code: AgencyCode) -> Callable[[int], bytes]:
    """Bytes drawn from the document and the recipient: the same export each time."""
    state = hashlib.sha256(b"truc/edxml/export\0" + bytes(doc_id) + str(code).encode()).digest()
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            counter += 1
            out += hashlib.sha256(state + counter.to_bytes(8, "big")).digest()
        return out[:n]

    return rng
