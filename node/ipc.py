"""The integrator IPC server: a Unix socket speaking ``protocol.ipc`` (docs/ipc.md).

Each connection may send requests back to back (answers carry the request
id; requests on one connection are handled concurrently). A frame that
cannot be parsed gets an error answer with id 0 and closes that connection
only; the node keeps serving everyone else. Every error a client can cause
is answered with a typed code; an unexpected failure answers ``internal``
and is logged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from identity.directory import decode_chain
from identity.sealing import FileSource
from protocol import ipc
from protocol.document import DocumentMeta, FileBytes, FileDone
from protocol.errors import ConfigError, DecodeError, FileError, InternalError, NotHostedError, SchemaError, TrucError
from protocol.framing import FrameDecoder, frame
from protocol.ids import Digest
from protocol.status import StatusCode

from . import views
from .engine import Engine
from .log import Log

Handler = Callable[["Connection", int, dict[str, Any]], Awaitable[Any]]
READ_BYTES = 1 << 16


class Connection:
    def __init__(self, server: IpcServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.lock = trio.Lock()

    async def send(self, payload: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(frame(payload, max_bytes=ipc.MAX_FRAME_BYTES))


class IpcServer:
    def __init__(self, engine: Engine, path: Path, log: Log) -> None:
        self.e = engine
        self.path = path
        self.log = log
        self.connections = 0
        self.handlers: dict[str, Handler] = {
            "submit": self._submit,
            "inbox.list": self._inbox_list,
            "inbox.ack": self._inbox_ack,
            "document.get": self._document_get,
            "document.track": self._track,
            "documents.list": self._documents,
            "status.send": self._status_send,
            "events.subscribe": self._subscribe,
            "peers.list": lambda c, i, p: self._simple(p, "peers.list", views.peers),
            "queues.list": lambda c, i, p: self._simple(p, "queues.list", views.queues),
            "node.info": lambda c, i, p: self._simple(p, "node.info", views.info),
            "directory.show": lambda c, i, p: self._simple(p, "directory.show", views.directory),
            "directory.lookup": self._lookup,
            "directory.publish": self._publish,
            "stats": self._stats,
        }
        assert set(self.handlers) == set(ipc.METHODS)

    # --- socket ------------------------------------------------------------------------

    def _bind(self) -> trio.socket.SocketType:
        if self.path.exists() or self.path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # stale socket from a node that died
            else:
                raise ConfigError(f"{self.path}: another node is already answering on this socket")
            finally:
                probe.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        return sock

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = self._bind()
        old = os.umask(0o117)  # socket created 0660: the truc user and its group (integrators)
        try:
            await sock.bind(str(self.path))
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot create the IPC socket: {exc.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        sock.listen(64)
        listener = trio.SocketListener(sock)
        self.log.info("ipc.listening", path=str(self.path))
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(self._serve, [listener], handler_nursery=nursery)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
            try:
                self.path.unlink()
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise

    async def _serve(self, stream: trio.SocketStream) -> None:
        """One client connection. Nothing that happens on it may stop the node."""
        conn = Connection(self, stream)
        self.connections += 1
        try:
            async with trio.open_nursery() as nursery:
                await self._read_requests(conn, nursery)
                # End of input: requests already read still get their answers.
        except Exception as exc:  # includes exception groups from this connection's tasks
            if not _only_disconnects(exc):
                self.log.error("ipc.connection_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            self.connections -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_requests(self, conn: Connection, nursery: trio.Nursery) -> None:
        decoder = FrameDecoder(max_bytes=ipc.MAX_FRAME_BYTES)
        try:
            while data := await conn.stream.receive_some(READ_BYTES):
                decoder.feed(data)
                while (payload := decoder.next_frame()) is not None:
                    nursery.start_soon(self._dispatch, conn, ipc.Request.decode(payload))
        except (DecodeError, SchemaError) as exc:
            # Only this connection is lost; the node serves everyone else.
            self.e.metrics.inc("ipc_bad_frames", reason=exc.code)
            self.log.warning("ipc.bad_frame", reason=exc.code, detail=exc.detail[:200])
            with trio.move_on_after(5):
                await conn.send(ipc.error_response(0, exc))
            nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            nursery.cancel_scope.cancel()  # the client went away: drop its subscriptions and requests

    async def _dispatch(self, conn: Connection, req: ipc.Request) -> None:
        handler = self.handlers.get(req.method)
        self.e.metrics.inc("ipc_requests", method=req.method if handler else "unknown")
        try:
            if handler is None:
                raise SchemaError(f"unknown method {req.method!r}; methods: {', '.join(ipc.METHODS)}")
            self.e.check_accepting()  # ShuttingDownError once SIGTERM came
            # In flight until answered: SIGTERM waits for it (a subscription is not work, it just ends).
            with contextlib.nullcontext() if req.method == "events.subscribe" else self.e.work():
                result = await handler(conn, req.id, req.params)
                await conn.send(ipc.response(req.id, result))
        except TrucError as exc:
            await conn.send(ipc.error_response(req.id, exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as exc:  # a bug: answer, log, keep serving
            self.log.error("ipc.internal_error", method=req.method, error=f"{type(exc).__name__}: {exc}")
            await conn.send(ipc.error_response(req.id, InternalError(f"{type(exc).__name__} in {req.method}")))

    # --- methods -----------------------------------------------------------------------

    async def _simple(self, params: dict[str, Any], method: str, fn: Callable[[Engine], Any]) -> Any:
        ipc.Params(method, params, set())
        return fn(self.e)

    async def _submit(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.parse_submit(params)
        files = []
        for f in p.files:
            if f.path is not None:
                path = Path(f.path)
                if not path.is_absolute():
                    raise FileError(f"{f.path}: give an absolute path (the node does not share your working directory)")
                try:
                    with open(path, "rb"):
                        pass
                except OSError as exc:
                    raise FileError(f"{f.path}: {exc.strerror}") from None
            files.append(FileSource(f.name, f.media_type, data=f.data, path=f.path))
        doc = await self.e.submit(p.sender, p.recipients, p.meta, files, idempotency_key=p.idempotency_key)
        return {"id": str(doc)}

    async def _inbox_list(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("inbox.list", params, {"code", "after", "limit", "unacked"})
        return views.inbox(
            self.e,
            p.code("code", required=False),
            after=p.integer("after", default=0),
            limit=p.integer("limit", default=100, lo=1, hi=10_000),
            unacked=p.boolean("unacked", default=False),
        )

    async def _inbox_ack(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("inbox.ack", params, {"code", "id"})
        doc = p.digest("id")
        code = p.code("code", required=False) or self._only_recipient(doc)
        return {"acked": await self.e.ack(code, doc)}

    def _only_recipient(self, doc: Digest) -> Any:
        h = self.e.doc_header(doc)
        hosted = [c for c in (h.to if h else ()) if c in self.e.hosted]
        if len(hosted) != 1:
            raise SchemaError(
                "say which hosted agency (code): "
                + ("the document is not here" if not hosted else f"it was received by {', '.join(str(c) for c in hosted)}")
            )
        return hosted[0]

    async def _document_get(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("document.get", params, {"id", "code"})
        doc = p.digest("id")
        code = p.code("code", required=False) or self._only_recipient(doc)
        meta: DocumentMeta | None = None
        for ev in self.e.read_document(doc, code):
            if isinstance(ev, DocumentMeta):
                meta = ev
            elif isinstance(ev, FileBytes):
                for i in range(0, len(ev.data), ipc.CHUNK_BYTES):
                    await conn.send(ipc.chunk(rid, ev.index, ev.data[i : i + ipc.CHUNK_BYTES]))
            elif isinstance(ev, FileDone):
                pass
        assert meta is not None
        track = self.e.track(doc)
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

    async def _track(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("document.track", params, {"id"})
        return self.e.track(p.digest("id"))

    async def _documents(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("documents.list", params, {"role", "limit"})
        role = p.text("role", default="", max_len=16) or None
        if role not in (None, "sent", "received", "relayed"):
            raise SchemaError("documents.list: role: expected sent, received or relayed")
        return views.documents(self.e, role=role, limit=p.integer("limit", default=100, lo=1, hi=100_000))

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
                author = self._only_recipient(doc)
        if author not in self.e.hosted:
            raise NotHostedError(str(author))
        sid = await self.e.send_status(
            doc, author, code, note=p.text("note", default="", max_len=4000), to=p.code("to", required=False)
        )
        return {"id": str(sid), "doc": str(doc), "code": str(code), "as": str(author)}

    async def _lookup(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("directory.lookup", params, {"code"})
        code = p.code("code")
        assert code is not None
        return views.lookup(self.e, code)

    async def _publish(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("directory.publish", params, {"file"})
        data = p.p.get("file")
        if type(data) is not bytes:
            raise SchemaError("directory.publish: file: expected the bytes of a directory file")
        serial = await self.e.publish_directory(decode_chain(data))
        return {"serial": serial}

    async def _stats(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        p = ipc.Params("stats", params, {"since"})
        return views.stats(self.e, since=p.integer("since", default=0))

    async def _subscribe(self, conn: Connection, rid: int, params: dict[str, Any]) -> Any:
        ipc.Params("events.subscribe", params, set())
        events = self.e.events.subscribe()
        await conn.send(ipc.response(rid, {"subscribed": True}))
        async with events:
            async for ev in events:
                await conn.send(ipc.event(rid, ev.kind, ev.at, dict(ev.fields)))
        return {"subscribed": False}


def _only_disconnects(exc: BaseException) -> bool:
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_disconnects(e) for e in exc.exceptions)
    return False
