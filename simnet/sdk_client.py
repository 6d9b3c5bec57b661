"""A client of the national SDK's HTTP calls that signs as VNPT's Java SDK does (EDXML.md §7), over http.client.

Written from the SDK's description, not from the node's code (it imports
nothing of node/ or protocol/sdk.py), so the tests (tests/node/test_sdk.py),
the demo and bench/sdk.py check the node against the SDK rather than
against itself. Per call: a map of entries (systemid, timestamp in the Java
pattern ``ddMMyyyy'T'HHmmss+SSSS``, the call's keys), each sent as
``XroadVnpt-<name>``, the map as a JSON string in ``XroadVnpt-sign-header``,
the names joined by ``;``, and the lower-case hex HMAC-SHA256 of the JSON
string with the secret. ``hash-file`` is in the SDK's unpadded hex.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SdkClient:
    def __init__(self, url: str, system_id: str, secret: str, *, timeout: float = 30.0, utc_offset_min: int = 420) -> None:
        """``url``: the adapter's base, e.g. http://127.0.0.1:8080/XrdAdapter/adapter."""
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.base = parts.path.rstrip("/")
        self.system_id = system_id
        self.secret = secret.encode("utf-8")
        self.timeout = timeout
        self.zone = timezone(timedelta(minutes=utc_offset_min))
        self._last_ms = 0

    # --- signing, as the SDK does ----------------------------------------------------------

    def timestamp(self) -> str:
        ms = max(int(time.time() * 1000), self._last_ms + 1)  # two calls never share a signature
        self._last_ms = ms
        t = datetime.fromtimestamp(ms / 1000, tz=self.zone)
        return t.strftime("%d%m%Y") + "T" + t.strftime("%H%M%S") + "+" + str(ms % 1000).zfill(4)

    def signed(self, entries: dict[str, str], *, content_type: str = "application/json") -> dict[str, str]:
        ordered = {"systemid": self.system_id, "timestamp": self.timestamp(), "Content-Type": content_type, **entries}
        text = json.dumps(ordered, separators=(",", ":"))
        headers = {"XroadVnpt-" + k: v for k, v in ordered.items()}
        headers["XroadVnpt-sign-header"] = text
        headers["XroadVnpt-sign-header-key"] = ";".join(ordered)
        headers["XroadVnpt-hash-header"] = hmac.new(self.secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
        headers["XroadVnpt-version"] = "3.0.201608"
        headers["User-Agent"] = "JAVASDKAgent/1.0.0 XRoad/VPCP"
        headers["Content-Type"] = content_type
        return headers

    # --- transport ------------------------------------------------------------------------

    def raw(
        self, method: str, path: str, headers: dict[str, str], body: bytes | Iterator[bytes] = b"", length: int | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """One request on a new connection: (HTTP status, body, headers)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            if not isinstance(body, bytes) and length is not None:
                headers = {**headers, "Content-Length": str(length)}
            conn.request(method, self.base + path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def call(self, name: str, method: str = "POST", **entries: str) -> dict[str, Any]:
        """A call whose parameters are all headers; the JSON envelope it answers (OK or FAIL)."""
        _, body, _ = self.raw(method, "/" + name, self.signed(entries))
        out: dict[str, Any] = json.loads(body)
        return out

    # --- the calls --------------------------------------------------------------------------

    def send_edoc(
        self, package: bytes | Path, sender: str, *, messagetype: str = "edoc", to: list[str] | None = None
    ) -> dict[str, Any]:
        """sendEdoc: the package as multipart part ``file_doc``, streamed (a Path is read in pieces)."""
        boundary = "----SdkBoundary" + os.urandom(8).hex()
        digest = hashlib.sha256()
        size = len(package) if isinstance(package, bytes) else package.stat().st_size
        for piece in _pieces(package):
            digest.update(piece)
        entries = {"from": sender, "servicetype": "eDoc", "messagetype": messagetype}
        if to:
            entries["to"] = json.dumps(to)
        entries["hash-file"] = "".join(format(b, "x") for b in digest.digest())  # the SDK drops each byte's leading zero
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file_doc"; filename="package.edxml"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            yield from _pieces(package)
            yield tail

        headers = self.signed(entries, content_type=f"multipart/form-data; boundary={boundary}")
        _, answer, _ = self.raw("POST", "/sendEdoc", headers, body(), len(head) + size + len(tail))
        out: dict[str, Any] = json.loads(answer)
        return out

    def received(self, messagetype: str = "edoc") -> list[dict[str, Any]]:
        r = self.call("getReceivedEdocList", servicetype="eDoc", messagetype=messagetype)
        assert r["status"] == "OK", r
        rows: list[dict[str, Any]] = r["data"]
        return rows

    def get_edoc(self, doc_id: str) -> bytes:
        r = self.call("getEdoc", docId=doc_id)
        assert r["status"] == "OK", r
        return base64.b64decode(r["data"])

    def download(self, doc_id: str) -> bytes:
        status, body, _ = self.raw("GET", "/downloadEdoc", self.signed({"docId": doc_id}))
        assert status == 200, body[:300]
        return body

    def update_status(self, doc_id: str, status: str = "done") -> dict[str, Any]:
        return self.call("updateStatus", docid=doc_id, status=status)

    def sent(self, doc_id: str = "") -> list[dict[str, Any]]:
        entries = {"servicetype": "eDoc", "messagetype": "edoc"} | ({"docId": doc_id} if doc_id else {})
        r = self.call("getSentEdocList", **entries)
        assert r["status"] == "OK", r
        rows: list[dict[str, Any]] = r["data"]
        return rows

    def count(self, messagetype: str = "edoc") -> int:
        name = "countReceiveEdoc" if messagetype == "edoc" else "countReceiveStatus"
        r = self.call(name, "GET")
        assert r["status"] == "OK", r
        return int(r["count"])


def _pieces(package: bytes | Path, size: int = 1 << 16) -> Iterator[bytes]:
    if isinstance(package, bytes):
        for i in range(0, len(package), size):
            yield package[i : i + size]
        return
    with open(package, "rb") as f:
        while chunk := f.read(size):
            yield chunk
