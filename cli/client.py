"""Python client for a node's IPC socket (docs/ipc.md): blocking and trio flavours.

    from cli.client import Client
    with Client("/var/lib/truc/truc.sock") as node:
        doc = node.call("submit", **{"from": "000.00.00.G22", "to": ["000.00.00.H01"],
                        "subject": "...", "files": [{"name": "cv.pdf", "mime": "application/pdf",
                                                     "path": "/srv/out/cv.pdf"}]})["id"]
        print(node.call("document.track", id=doc))

Errors come back as the typed exceptions of ``protocol.errors`` (the same
class the node raised: UnknownAgencyError, IllegalTransitionError...), and a
node that is not running is a NodeNotRunningError.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from protocol import ipc
from protocol.errors import DecodeError, HashMismatchError, NodeNotRunningError, TrucError
from protocol.framing import FrameDecoder, frame

READ_BYTES = 1 << 16


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
        self._decoder = FrameDecoder(max_bytes=ipc.MAX_FRAME_BYTES)
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

    def _send(self, method: str, params: dict[str, Any]) -> int:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        rid = self._next_id
        self._next_id += 1
        payload = ipc.Request(rid, method, {k: v for k, v in params.items() if v is not None}).encode()
        self._sock.sendall(frame(payload, max_bytes=ipc.MAX_FRAME_BYTES))
        return rid

    def _read(self) -> dict[str, Any]:
        assert self._sock is not None
        while True:
            payload = self._decoder.next_frame()
            if payload is not None:
                return ipc.decode_message(payload)
            try:
                data = self._sock.recv(READ_BYTES)
            except TimeoutError:
                raise _not_running(self.path, f"no answer within {self.timeout} s") from None
            if not data:
                raise _not_running(self.path, "the node closed the connection")
            self._decoder.feed(data)

    def call(self, method: str, **params: Any) -> Any:
        """Call ``method``; returns its result or raises the node's typed error."""
        rid = self._send(method, params)
        while True:
            m = self._read()
            if m["id"] not in (rid, 0) or "ok" not in m:
                continue
            if not m["ok"]:
                _raise(m)
            return m.get("result")

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
        decoder = FrameDecoder(max_bytes=ipc.MAX_FRAME_BYTES)
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
