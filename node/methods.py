"""What each IPC method does (docs/ipc.md §4): parameters checked, rights checked, then the engine.

The transport (frames, limits, uploads) is ``node/ipc.py``; this module
turns one request into one result or one typed error. Every method checks
what the connection's account may do (``Access``) before it touches anything.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from identity.directory import decode_chain
from identity.sealing import FileSource
from protocol import ipc
from protocol.agency import AgencyCode
from protocol.document import DocumentMeta, FileBytes
from protocol.edxml import ZipMode
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES
from protocol.errors import (
    HashMismatchError,
    NotARecipientError,
    NotAuthorizedError,
    NotFoundError,
    NotHostedError,
    SchemaError,
    TooLargeError,
)
from protocol.ids import Digest
from protocol.status import StatusCode

from . import views
from .edxml import max_package_bytes
from .engine import Engine
from .ipc import Connection, Handler, IncomingUpload
from .upload import ReadPaths, Spool, SpooledFile, hashed

MAX_DIRECTORY_FILE_BYTES = 4 * MAX_DIRECTORY_ENVELOPE_BYTES
EVENTS_PER_SEND = 64


class Methods:
    def __init__(self, engine: Engine, *, spool: Spool, read_paths: ReadPaths, frame_timeout_s: float) -> None:
        self.e = engine
        self.spool = spool
        self.read_paths = read_paths
        self.frame_timeout_s = frame_timeout_s

    def handlers(self) -> dict[str, Handler]:
        return {
            "submit": self._submit,
            "inbox.list": self._inbox_list,
            "inbox.ack": self._inbox_ack,
            "document.get": self._document_get,
            "document.track": self._track,
            "documents.list": self._documents,
            "status.send": self._status_send,
            "events.subscribe": self._subscribe,
            "peers.list": self._admin_view("peers.list", views.peers),
            "queues.list": self._admin_view("queues.list", views.queues),
            "node.info": self._view("node.info", views.info),
            "directory.show": self._view("directory.show", views.directory),
            "directory.lookup": self._lookup,
            "directory.publish": self._publish,
            "stats": self._stats,
            "edxml.submit": self._edxml_submit,
            "edxml.export": self._edxml_export,
            "edxml.statuses": self._edxml_statuses,
        }

    def _view(self, method: str, fn: Callable[[Engine], Any]) -> Handler:
        async def handler(conn: Connection, rid: int, params: dict[str, Any]) -> Any:
            ipc.Params(method, params, set())
            return fn(self.e)

        return handler

    def _admin_view(self, method: str, fn: Callable[[Engine], Any]) -> Handler:
        async def handler(conn: Connection, rid: int, params: dict[str, Any]) -> Any:
            ipc.Params(method, params, set())
            conn.access.require_admin(method)
            return fn(self.e)

        return handler

    # --- submit and its attachments ---------------------------------------------------------

    async def _submit(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.parse_submit(params)
        conn.access.require(p.sender)
        self.e.submission.check_submit(
            p.sender, p.recipients, p.meta, [(f.name, f.media_type) for f in p.files]
        )  # before any byte
        if p.idempotency_key is not None:
            existing = self.e.store.idempotent(p.sender, p.idempotency_key)
            if existing is not None:
                return {"id": str(existing)}  # the files still streaming in are read and dropped
        limit = self.e.config.max_document_bytes
        declared = sum(len(f.data) if f.data is not None else (f.size or 0) for f in p.files)
        if declared > limit:
            raise TooLargeError(f"the attachments are {declared} bytes, this node accepts documents up to {limit} bytes")
        upload = conn.upload_of.get(rid)
        spooled: list[SpooledFile] = []
        opened: list[int] = []
        try:
            with self.spool.reserve(declared):
                sources = []
                for i, f in enumerate(p.files):
                    if f.data is not None:
                        sources.append(FileSource(f.name, f.media_type, data=f.data))
                        continue
                    if f.size is not None:
                        assert upload is not None
                        sf = await self.spool.receive(
                            upload.chunks(i, f.size, self.frame_timeout_s), name=f.name, size=f.size, sha256=f.sha256
                        )
                    else:
                        assert f.path is not None
                        fd, size, sha256 = await self._open_path(conn, f.path, f.name, limit - declared)
                        opened.append(fd)
                        declared += size
                        sources.append(FileSource(f.name, f.media_type, fd=fd, size=size, sha256=sha256))
                        continue
                    spooled.append(sf)
                    sources.append(FileSource(f.name, f.media_type, path=str(sf.path), size=sf.size, sha256=sf.sha256))
                doc = await self.e.submit(p.sender, p.recipients, p.meta, sources, idempotency_key=p.idempotency_key)
        finally:
            for sf in spooled:
                sf.discard()
            for fd in opened:
                os.close(fd)
        return {"id": str(doc)}

    async def _open_path(self, conn: Connection, path: str, name: str, limit: int) -> tuple[int, int, bytes]:
        """Open a client's file under the read_paths rules and hash it; returns (fd, size, sha256), the fd still open.

        Sealing reads it again through that descriptor (never the path) and
        refuses it if it no longer hashes the same: no copy in the spool.
        """
        fd, size = await trio.to_thread.run_sync(self.read_paths.open, path, conn.access.cred, limiter=self.spool.limiter)
        try:
            if size > limit:
                raise TooLargeError(f"{path}: {size} bytes, over what is left of the document limit ({limit} bytes)")
            return fd, size, await self.spool.measure(fd, name=name, size=size, limit=limit)
        except BaseException:
            os.close(fd)
            raise

    # --- reading --------------------------------------------------------------------------

    def _recipient_code(self, conn: Connection, p: ipc.Params, doc: Digest) -> AgencyCode:
        """The hosted recipient named by ``code``, or the only one this client may act for."""
        return self._party_code(conn, p, doc, sender_too=False)

    def _party_code(self, conn: Connection, p: ipc.Params, doc: Digest, *, sender_too: bool) -> AgencyCode:
        """The hosted party named by ``code``, or the only one of the document's this client may act for.

        Parties are the recipients, and the sender too when ``sender_too``; a
        sender asking for what only recipients read is NotARecipientError.
        """
        code = p.code("code", required=False)
        if code is not None:
            conn.access.require(code)
            return code
        h = self.e.doc_header(doc)
        if h is None:
            raise NotFoundError(f"document {doc}")
        parties = (h.sender, *h.to) if sender_too else h.to
        mine = [c for c in parties if c in self.e.hosted and conn.access.may_act_for(c)]
        if len(mine) == 1:
            return mine[0]
        if mine:
            whose = "" if sender_too else "received by "
            raise SchemaError(f"{p.method}: code: say which hosted agency: {whose}{', '.join(map(str, mine))}")
        if h.sender in self.e.hosted and conn.access.may_act_for(h.sender):
            raise NotARecipientError(f"{h.sender} sent {doc.short()}; its content is in the sender's own document system")
        raise NotAuthorizedError(f"no agency you act for on this node is a party to {doc.short()}")

    async def _inbox_list(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("inbox.list", params, {"code", "after", "limit", "unacked"})
        code = p.code("code", required=False)
        if code is None:
            mine = [c for c in sorted(self.e.hosted) if conn.access.may_act_for(c)]
            if len(mine) != 1:
                raise SchemaError(f"inbox.list: code: is required: this node hosts {', '.join(map(str, mine))} for you")
            code = mine[0]
        if code not in self.e.hosted:
            raise NotHostedError(f"{code} (this node hosts {', '.join(str(c) for c in sorted(self.e.hosted))})")
        conn.access.require(code)
        return views.inbox(
            self.e,
            code,
            after=p.integer("after", default=0),
            limit=p.integer("limit", default=100, lo=1, hi=10_000),
            unacked=p.boolean("unacked", default=False),
        )

    async def _inbox_ack(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("inbox.ack", params, {"code", "id"})
        doc = p.digest("id")
        return {"acked": await self.e.submission.ack(self._recipient_code(conn, p, doc), doc)}

    async def _document_get(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("document.get", params, {"id", "code"})
        doc = p.digest("id")
        code = self._recipient_code(conn, p, doc)
        meta: DocumentMeta | None = None
        for ev in self.e.read_document(doc, code):
            if isinstance(ev, DocumentMeta):
                meta = ev
            elif isinstance(ev, FileBytes):
                for i in range(0, len(ev.data), ipc.CHUNK_BYTES):
                    await conn.send(ipc.chunk(rid, ev.index, ev.data[i : i + ipc.CHUNK_BYTES]))
        assert meta is not None
        track = views.track(self.e, doc)
        return {
            "id": str(doc),
            "from": track["from"],
            "to": [r["code"] for r in track["recipients"]],
            "created_at": track["created_at"],
            "metadata": {
                "subject": meta.subject,
                "number": meta.number,
                "notation": meta.notation,
                "type": meta.doc_type,
                "place": meta.place,
                "date": meta.date,
                "signer": meta.signer,
                "signer_title": meta.signer_title,
                "urgency": int(meta.urgency),
                "due": meta.due,
                "business": meta.business.value,
                "ref": str(meta.ref) if meta.ref else None,
            },
            "files": [{"name": f.name, "mime": f.media_type, "size": f.size, "sha256": f.sha256.hex()} for f in meta.files],
        }

    def _require_party(self, conn: Connection, doc: Digest) -> None:
        """A client that is not an administrator sees only documents one of its agencies sent or received."""
        if conn.access.codes is None or conn.access.admin:
            return
        h = self.e.doc_header(doc)
        if h is None:
            raise NotFoundError(f"document {doc}")
        if not any(conn.access.may_act_for(c) for c in (h.sender, *h.to)):
            conn.access.require(h.sender)  # raises, naming what this client may act for

    async def _track(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("document.track", params, {"id"})
        doc = p.digest("id")
        self._require_party(conn, doc)
        return views.track(self.e, doc)

    async def _documents(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("documents.list", params, {"role", "limit"})
        role = p.text("role", default="", max_len=16) or None
        if role not in (None, "sent", "received", "relayed"):
            raise SchemaError("documents.list: role: expected sent, received or relayed")
        allowed = None if conn.access.admin else conn.access.may_act_for
        return views.documents(self.e, role=role, limit=p.integer("limit", default=100, lo=1, hi=100_000), allowed=allowed)

    # --- statuses -------------------------------------------------------------------------

    async def _status_send(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("status.send", params, {"id", "code", "as", "to", "note"})
        doc = p.digest("id")
        code = p.status_code("code")
        author = p.code("as", required=False)
        if author is None:
            h = self.e.doc_header(doc)
            if h is not None and h.sender in self.e.hosted and code is StatusCode.TAKEBACK_REQUESTED:
                author = h.sender
            else:
                author = self._recipient_code(conn, ipc.Params("status.send", {}, set()), doc)
        if author not in self.e.hosted:
            raise NotHostedError(str(author))
        conn.access.require(author)
        sid = await self.e.send_status(
            doc, author, code, note=p.text("note", default="", max_len=4000), to=p.code("to", required=False)
        )
        return {"id": str(sid), "doc": str(doc), "code": str(code), "as": str(author)}

    # --- edXML ---------------------------------------------------------------------------

    async def _edxml_submit(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        package = ipc.parse_package(params)
        limit = max_package_bytes(self.e.config.max_document_bytes)
        if package.size is not None and package.size > limit:
            raise TooLargeError(
                f"edxml.submit: package: {package.size} bytes; with documents up to {self.e.config.max_document_bytes} "
                f"bytes this node reads packages up to {limit} bytes"
            )
        if package.data is not None:
            chunks = _pieces(package.data)
        else:
            assert package.size is not None
            upload = conn.upload_of.get(rid)
            assert upload is not None  # declared_uploads saw the same size
            chunks = _checked(upload.chunks(0, package.size, self.frame_timeout_s), package.sha256)
        done = await self.e.edxml.submit(chunks, self.spool, conn.access.require)
        return {
            "kind": done.kind.value,
            "id": str(done.id),
            "doc": str(done.doc),
            "document_id": done.document_id,
            "duplicate": done.duplicate,
            "code": str(done.code) if done.code is not None else None,
            "warnings": [[w.field, w.what] for w in done.warnings],
        }

    async def _edxml_export(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("edxml.export", params, {"id", "code", "zip"})
        doc = p.digest("id")
        code = self._recipient_code(conn, p, doc)
        zip_text = p.text("zip", default=self.e.config.edxml_zip, max_len=16)
        try:
            zip_mode = ZipMode(zip_text)
        except ValueError:
            raise SchemaError(f"edxml.export: zip: {zip_text!r:.20} is not as_received, zip or raw") from None
        document_id, pieces = self.e.edxml.export(doc, code, zip_mode)
        h = hashlib.sha256()
        size = 0
        pending = bytearray()
        for piece in pieces:
            h.update(piece)
            size += len(piece)
            pending += piece
            while len(pending) >= ipc.CHUNK_BYTES:
                await conn.send(ipc.chunk(rid, 0, bytes(pending[: ipc.CHUNK_BYTES])))
                del pending[: ipc.CHUNK_BYTES]
        if pending:
            await conn.send(ipc.chunk(rid, 0, bytes(pending)))
        return {"id": str(doc), "document_id": document_id, "size": size, "sha256": h.hexdigest()}

    async def _edxml_statuses(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("edxml.statuses", params, {"id", "code", "since", "limit"})
        doc = p.digest("id")
        code = self._party_code(conn, p, doc, sender_too=True)
        since = p.integer("since", default=0)
        limit = p.integer("limit", default=100, lo=1, hi=1000)
        found = [s for s in self.e.edxml.status_packages(doc, code) if s.at > since]
        page, more = ipc.page_by_time(found, limit, lambda s: s.at)
        return {
            "statuses": [
                {"id": str(s.id), "from": str(s.author), "code": str(s.code), "at": s.at, "package": s.package} for s in page
            ],
            "more": more,
        }

    # --- directory, node ------------------------------------------------------------------

    async def _lookup(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("directory.lookup", params, {"code"})
        code = p.code("code")
        assert code is not None
        return views.lookup(self.e, code)

    async def _publish(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("directory.publish", params, {"file"})
        conn.access.require_admin("directory.publish")
        data = p.p.get("file")
        if type(data) is dict:
            size = data["size"]
            if size > MAX_DIRECTORY_FILE_BYTES:
                raise TooLargeError(f"directory.publish: file: {size} bytes, limit {MAX_DIRECTORY_FILE_BYTES}")
            upload = conn.upload_of.get(rid)
            with self.spool.reserve(size):
                sf = await self._receive_whole(upload, size)
                try:
                    data = await trio.to_thread.run_sync(sf.path.read_bytes, limiter=self.spool.limiter)
                finally:
                    sf.discard()
        if type(data) is not bytes:
            raise SchemaError("directory.publish: file: expected the bytes of a directory file, or {size} and upload frames")
        serial = await self.e.membership.publish_directory(decode_chain(data))
        return {"serial": serial}

    async def _receive_whole(self, upload: IncomingUpload | None, size: int) -> SpooledFile:
        assert upload is not None  # declared_uploads saw the same {size}
        return await self.spool.receive(upload.chunks(0, size, self.frame_timeout_s), name="file", size=size, sha256=None)

    async def _stats(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("stats", params, {"since"})
        conn.access.require_admin("stats")
        return views.stats(self.e, since=p.integer("since", default=0))

    async def _subscribe(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        ipc.Params("events.subscribe", params, set())
        events = self.e.events.subscribe()
        scope = trio.CancelScope()
        conn.subscriptions.append(scope)
        try:
            await conn.send(ipc.response(rid, {"subscribed": True}))
            with scope, events:
                async for first in events:
                    batch = [first]
                    while len(batch) < EVENTS_PER_SEND:  # what queued meanwhile goes out in one write
                        try:
                            batch.append(events.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    frames = [ipc.event(rid, ev.kind, ev.at, dict(ev.fields)) for ev in batch if _concerns(ev.fields, conn)]
                    if frames:
                        await conn.send_many(frames)
        finally:
            conn.subscriptions.remove(scope)
        return {"subscribed": False}


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), ipc.CHUNK_BYTES):
        yield data[i : i + ipc.CHUNK_BYTES]


def _checked(chunks: AsyncIterator[bytes], sha256: bytes | None) -> AsyncIterator[bytes]:
    """The chunks, then HashMismatchError (before the package is acted on) if they are not the bytes declared."""

    def check(digest: bytes) -> None:
        if sha256 is not None and digest != sha256:
            raise HashMismatchError("edxml.submit: package: the bytes received do not match the sha256 the client declared")

    return hashed(chunks, check)


def _concerns(fields: dict[str, Any], conn: Connection) -> bool:
    """Whether an event is about an agency this client may act for (peer and directory events concern everyone)."""
    if conn.access.codes is None or conn.access.admin:
        return True
    parties = [fields[k] for k in ("to", "sender", "recipient") if isinstance(fields.get(k), str)]
    if not parties:
        return "peer" in fields or "serial" in fields
    return any(conn.access.may_act_for(AgencyCode.parse(c)) for c in parties)
