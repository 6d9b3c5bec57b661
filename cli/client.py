"""Python client for a node's IPC socket (docs/ipc.md): blocking and trio flavours.

    from cli.client import Client
    with Client("/var/lib/truc/truc.sock") as node:
        doc = node.submit([Path("cv.pdf")], **{"from": "000.00.00.G22", "to": ["000.00.00.H01"],
                          "subject": "..."})["id"]          # files are streamed to the node
        print(node.call("document.track", id=doc))

Errors come back as the typed exceptions of ``protocol.errors`` (the same
class the node raised: UnknownAgencyError, IllegalTransitionError...), and a
node that is not running is a NodeNotRunningError.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import select
import socket
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from identity.filehash import hash_file
from protocol import ipc
from protocol.errors import DecodeError, FileError, HashMismatchError, NodeNotRunningError, TrucError
from protocol.framing import FrameDecoder, frame

READ_BYTES = 1 << 16
INLINE_FILE_BYTES = 256 << 10  # smaller files travel inside the request; larger ones as upload frames


def file_entry(path: Path, *, name: str | None = None, mime: str | None = None) -> tuple[dict[str, Any], Path | None]:
    """The ``files[]`` entry for a local file, and the path to stream if it is not inline.

    A streamed file declares its size and SHA-256 (one read now, one when it
    is sent), so the node refuses it if it changes in between.
    """
    name = name or path.name
    if mime is None:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    size = path.stat().st_size
    if size <= INLINE_FILE_BYTES:
        return {"name": name, "mime": mime, "data": path.read_bytes()}, None
    with open(path, "rb") as f:
        _, digest = hash_file(f, ipc.CHUNK_BYTES)
    return {"name": name, "mime": mime, "size": size, "sha256": digest.hex()}, path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _raise(message: dict[str, Any]) -> None:
    err = message.get("error") or {}
    raise TrucError.from_wire(str(err.get("code", "error")), str(err.get("message", "")))


def _not_running(path: Path, why: str) -> NodeNotRunningError:
    return NodeNotRunningError(f"nothing answers at {path} ({why})")


class _Files:
    """Assemble streamed document chunks into files: temp names first, real names once verified."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.parts: dict[int, Any] = {}
        self.hashes: dict[int, Any] = {}

    def add(self, index: int, data: bytes) -> None:
        if index not in self.parts:
            self.parts[index] = open(self.out_dir / f".part-{index}", "wb")  # noqa: SIM115 - closed in finish
            self.hashes[index] = hashlib.sha256()
        self.parts[index].write(data)
        self.hashes[index].update(data)

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        for f in self.parts.values():
            f.close()
        for index, entry in enumerate(result.get("files", [])):
            part = self.out_dir / f".part-{index}"
            if index not in self.parts:  # an empty file sends no chunk
                part.write_bytes(b"")
                self.hashes[index] = hashlib.sha256()
            if self.hashes[index].hexdigest() != entry["sha256"]:
                part.unlink(missing_ok=True)
                raise HashMismatchError(f"{entry['name']}: the bytes received do not match the document's SHA-256")
            os.replace(part, self.out_dir / entry["name"])
            entry["path"] = str(self.out_dir / entry["name"])
        return result

    def abort(self) -> None:
        for index, f in self.parts.items():
            f.close()
            (self.out_dir / f".part-{index}").unlink(missing_ok=True)


class Client:
    """Blocking client; one request at a time."""

    def __init__(self, path: str | Path, *, timeout: float | None = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(max_bytes=ipc.MAX_ANSWER_BYTES)
        self._ready: deque[dict[str, Any]] = deque()
        self._next_id = 1

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except FileNotFoundError:
            sock.close()
            raise _not_running(self.path, "no socket file") from None
        except (ConnectionRefusedError, OSError) as exc:
            sock.close()
            raise _not_running(self.path, exc.strerror or type(exc).__name__) from None
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._decoder = FrameDecoder(max_bytes=ipc.MAX_ANSWER_BYTES)
            self._ready.clear()

    def _send(self, method: str, params: dict[str, Any]) -> int:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        rid = self._next_id
        self._next_id += 1
        payload = ipc.Request(rid, method, {k: v for k, v in params.items() if v is not None}).encode()
        self._sendall(frame(payload, max_bytes=ipc.MAX_FRAME_BYTES))
        return rid

    def _sendall(self, data: bytes) -> None:
        """Send; if the node closed the connection, raise what it said first (busy, access_denied...)."""
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            try:
                while True:
                    m = self._read()
                    if m["id"] == 0 and m.get("ok") is False:
                        _raise(m)
            except (NodeNotRunningError, OSError):
                pass
            raise _not_running(self.path, "the node closed the connection") from None

    def _read(self) -> dict[str, Any]:
        assert self._sock is not None
        while True:
            if self._ready:
                return self._ready.popleft()
            payload = self._decoder.next_frame()
            if payload is not None:
                return ipc.decode_message(payload)
            try:
                data = self._sock.recv(READ_BYTES)
            except TimeoutError:
                raise _not_running(self.path, f"no answer within {self.timeout} s") from None
            except ConnectionResetError:
                data = b""
            if not data:
                raise _not_running(self.path, "the node closed the connection")
            self._decoder.feed(data)

    def _answered(self, rid: int) -> bool:
        """Without blocking: has the node already answered ``rid`` (an early error while we upload)?"""
        assert self._sock is not None
        while select.select([self._sock], [], [], 0)[0]:
            data = self._sock.recv(READ_BYTES)
            if not data:
                return True
            self._decoder.feed(data)
            while (payload := self._decoder.next_frame()) is not None:
                self._ready.append(ipc.decode_message(payload))
        return any(m["id"] in (rid, 0) and "ok" in m for m in self._ready)

    def _answer(self, rid: int) -> Any:
        while True:
            m = self._read()
            if m["id"] not in (rid, 0) or "ok" not in m:
                continue
            if not m["ok"]:
                _raise(m)
            return m.get("result")

    def call(self, method: str, **params: Any) -> Any:
        """Call ``method``; returns its result or raises the node's typed error.

        A ``submit`` whose inline ``data`` files are too big for one frame has
        them streamed as upload frames instead (the result is the same).
        """
        if method == "submit" and isinstance(params.get("files"), list):
            uploads: dict[int, Path | bytes] = {}
            files = []
            for i, f in enumerate(params["files"]):
                data = f.get("data") if isinstance(f, dict) else None
                if isinstance(data, bytes) and len(data) > INLINE_FILE_BYTES:
                    uploads[i] = data
                    f = {k: v for k, v in f.items() if k != "data"} | {"size": len(data), "sha256": _sha256(data)}
                files.append(f)
            if uploads:
                return self.call_with_files(method, {**params, "files": files}, uploads)
        return self._answer(self._send(method, params))

    def call_with_files(self, method: str, params: dict[str, Any], uploads: Mapping[int, Path | bytes]) -> Any:
        """Call ``method`` whose ``params`` declare streamed files; ``uploads`` maps file index -> local path or bytes."""
        rid = self._send(method, params)
        assert self._sock is not None
        try:
            for index, path in sorted(uploads.items()):
                if not self._upload(rid, index, path):
                    break
        except BaseException:
            self.close()  # the node still expects bytes for rid: this connection cannot be used again
            raise
        try:
            return self._answer(rid)
        finally:
            if uploads:
                self.close()  # an early answer may have cut the upload short

    def _upload(self, rid: int, index: int, source: Path | bytes) -> bool:
        """Send one file as upload frames; False if the node answered before the end (an error is waiting)."""
        if isinstance(source, bytes):
            return self._upload_chunks(
                rid, index, (source[i : i + ipc.CHUNK_BYTES] for i in range(0, len(source), ipc.CHUNK_BYTES))
            )
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            sent = 0

            def chunks() -> Iterator[bytes]:
                nonlocal sent
                while chunk := f.read(ipc.CHUNK_BYTES):
                    sent += len(chunk)
                    yield chunk

            if not self._upload_chunks(rid, index, chunks()):
                return False
        if sent != size:
            raise FileError(f"{source} changed size while it was being sent; send it again")
        return True

    def _upload_chunks(self, rid: int, index: int, chunks: Iterator[bytes]) -> bool:
        for chunk in chunks:
            if self._answered(rid):
                return False
            self._sendall(frame(ipc.Upload(rid, index, chunk).encode(), max_bytes=ipc.MAX_FRAME_BYTES))
        return True

    def submit(self, paths: Sequence[Path] = (), **params: Any) -> Any:
        """``submit`` with local files: small ones inline, the others streamed. Returns the result ({"id"})."""
        entries = list(params.pop("files", []))
        uploads: dict[int, Path] = {}
        for path in paths:
            entry, stream = file_entry(path)
            if stream is not None:
                uploads[len(entries)] = stream
            entries.append(entry)
        params["files"] = entries
        if not uploads:
            return self.call("submit", **params)
        return self.call_with_files("submit", params, uploads)

    def get_document(self, doc_id: str, out_dir: str | Path, *, code: str | None = None) -> dict[str, Any]:
        """Fetch a document into ``out_dir``; every file's SHA-256 is checked before it gets its name."""
        files = _Files(Path(out_dir))
        rid = self._send("document.get", {"id": doc_id, "code": code})
        try:
            while True:
                m = self._read()
                if m["id"] not in (rid, 0):
                    continue
                if "file" in m and "data" in m:
                    files.add(int(m["file"]), bytes(m["data"]))
                    continue
                if not m.get("ok"):
                    _raise(m)
                return files.finish(dict(m["result"]))
        except BaseException:
            files.abort()
            raise

    def edxml_submit(self, source: Path | bytes) -> dict[str, Any]:
        """``edxml.submit`` a package: inline when it fits one frame, else streamed with its size and SHA-256."""
        if isinstance(source, bytes) and len(source) <= ipc.CHUNK_BYTES:
            return dict(self.call("edxml.submit", package=source))
        data = source if isinstance(source, bytes) else None
        if data is None:
            assert isinstance(source, Path)
            with open(source, "rb") as f:
                digest = hashlib.file_digest(f, "sha256")
                size = os.fstat(f.fileno()).st_size
        else:
            digest, size = hashlib.sha256(data), len(data)
        declared = {"size": size, "sha256": digest.hexdigest()}
        return dict(self.call_with_files("edxml.submit", {"package": declared}, {0: source}))

    def edxml_export(self, doc_id: str, out: str | Path, *, code: str | None = None, zip: str | None = None) -> dict[str, Any]:
        """``edxml.export`` into the file ``out``; its size and SHA-256 are checked before it gets its name."""
        out = Path(out)
        part = out.with_name(f".{out.name}.part")
        params = {k: v for k, v in {"id": doc_id, "code": code, "zip": zip}.items() if v is not None}
        rid = self._send("edxml.export", params)
        h = hashlib.sha256()
        try:
            with open(part, "wb") as f:
                while True:
                    m = self._read()
                    if m["id"] not in (rid, 0):
                        continue
                    if "file" in m and "data" in m:
                        f.write(m["data"])
                        h.update(m["data"])
                        continue
                    if not m.get("ok"):
                        _raise(m)
                    result = dict(m["result"])
                    break
            if h.hexdigest() != result["sha256"] or part.stat().st_size != result["size"]:
                raise HashMismatchError(f"{out}: the bytes received do not match the package's size and SHA-256")
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
        result["path"] = str(out)
        return result

    def events(self) -> Iterator[dict[str, Any]]:
        """Subscribe and yield events forever: {"event", "at", "data"}."""
        rid = self._send("events.subscribe", {})
        while True:
            m = self._read()
            if m["id"] != rid and m["id"] != 0:
                continue
            if "event" in m:
                yield {"event": m["event"], "at": m["at"], "data": m["data"]}
            elif not m.get("ok", True):
                _raise(m)


class AsyncClient:
    """trio client; requests may run concurrently on one connection."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stream: trio.SocketStream | None = None
        self._next_id = 1
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> AsyncClient:
        try:
            self._stream = await trio.open_unix_socket(str(self.path))
        except FileNotFoundError:
            raise _not_running(self.path, "no socket file") from None
        except OSError as exc:
            raise _not_running(self.path, exc.strerror or type(exc).__name__) from None
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        self._nursery.start_soon(self._reader)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._nursery is not None and self._stream is not None
        self._nursery.cancel_scope.cancel()
        await self._cm.__aexit__(None, None, None)
        await self._stream.aclose()

    async def _reader(self) -> None:
        assert self._stream is not None
        decoder = FrameDecoder(max_bytes=ipc.MAX_ANSWER_BYTES)
        try:
            while data := await self._stream.receive_some(READ_BYTES):
                decoder.feed(data)
                while (payload := decoder.next_frame()) is not None:
                    m = ipc.decode_message(payload)
                    targets = list(self._waiting.values()) if m["id"] == 0 else [self._waiting.get(m["id"])]
                    for ch in targets:
                        if ch is not None:
                            await ch.send(m)
        except (trio.BrokenResourceError, trio.ClosedResourceError, DecodeError):
            pass
        finally:
            for ch in self._waiting.values():
                await ch.aclose()

    async def _open(self, method: str, params: dict[str, Any]) -> tuple[int, trio.MemoryReceiveChannel[dict[str, Any]]]:
        assert self._stream is not None
        rid = self._next_id
        self._next_id += 1
        send, recv = trio.open_memory_channel[dict[str, Any]](256)
        self._waiting[rid] = send
        payload = ipc.Request(rid, method, {k: v for k, v in params.items() if v is not None}).encode()
        async with self._lock:
            await self._stream.send_all(frame(payload, max_bytes=ipc.MAX_FRAME_BYTES))
        return rid, recv

    async def call(self, method: str, **params: Any) -> Any:
        rid, recv = await self._open(method, params)
        try:
            async with recv:
                async for m in recv:
                    if "ok" in m:
                        if not m["ok"]:
                            _raise(m)
                        return m.get("result")
            raise _not_running(self.path, "the node closed the connection")
        finally:
            self._waiting.pop(rid, None)

    async def events(self) -> Any:
        """Async iterator of events after subscribing."""
        _, recv = await self._open("events.subscribe", {})
        async with recv:
            async for m in recv:
                if "event" in m:
                    yield {"event": m["event"], "at": m["at"], "data": m["data"]}
                elif not m.get("ok", True):
                    _raise(m)
