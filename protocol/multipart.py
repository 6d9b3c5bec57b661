"""multipart/form-data (RFC 7578) read as a stream: bytes in, part events out; nothing is held but a boundary's tail.

Pure, like h11: :class:`MultipartReader` never touches a socket. sendEdoc's
``file_doc`` part (tens of MB of base64) goes straight from the socket to
the edXML reader through it. Raises :class:`SdkRequestError` (MALFORMED,
TOO_LARGE) for a body that breaks the format or the limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SdkErrorCode, SdkRequestError

MAX_PART_HEADER_BYTES = 8192
MAX_PARTS = 16
MAX_PREAMBLE_BYTES = 4096
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]{1,70})"|([0-9A-Za-z'()+_,./:=?-]{1,70}))""", re.I)
_PARAM = re.compile(r"""\b(name|filename)="([^"]*)"|\b(name|filename)=([^;\s"]+)""", re.I)


@dataclass(frozen=True)
class PartStarted:
    name: str
    filename: str
    content_type: str


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnded:
    pass


Event = PartStarted | PartData | PartEnded


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; raises SdkRequestError(MALFORMED)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise SdkRequestError(SdkErrorCode.MALFORMED, "sendEdoc is a multipart/form-data POST with the part file_doc")
    m = _BOUNDARY.search(content_type)
    if not m:
        raise SdkRequestError(SdkErrorCode.MALFORMED, "the multipart Content-Type has no usable boundary")
    return (m.group(1) or m.group(2)).encode("ascii")


def _malformed(why: str) -> SdkRequestError:
    return SdkRequestError(SdkErrorCode.MALFORMED, f"multipart body: {why}")


class MultipartReader:
    """Feed the body's bytes in any pieces; each call returns the events they complete."""

    def __init__(self, boundary: bytes, *, max_parts: int = MAX_PARTS) -> None:
        self._first = b"--" + boundary
        self._delim = b"\r\n--" + boundary
        self._buf = bytearray()
        self._state = "preamble"
        self._parts = 0
        self._max_parts = max_parts

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        out: list[Event] = []
        while self._step(out):
            pass
        return out

    def close(self) -> None:
        """The body ended; raises SdkRequestError unless its closing boundary was read."""
        if self._state != "end":
            raise _malformed("it ends before its closing boundary")

    def _step(self, out: list[Event]) -> bool:
        buf = self._buf
        if self._state == "preamble":
            i = buf.find(self._first)
            if i < 0:
                if len(buf) > MAX_PREAMBLE_BYTES:
                    raise _malformed("no boundary where the first part should start")
                return False
            del buf[: i + len(self._first)]
            self._state = "after_delimiter"
            return True
        if self._state == "after_delimiter":
            stripped = buf.lstrip(b" \t")
            if len(stripped) < 2:
                return False
            if stripped.startswith(b"--"):
                self._state = "end"
                buf.clear()
                return False
            if not stripped.startswith(b"\r\n"):
                raise _malformed("a boundary is not followed by a line break")
            del buf[: len(buf) - len(stripped) + 2]
            self._parts += 1
            if self._parts > self._max_parts:
                raise _malformed(f"more than {self._max_parts} parts")
            self._state = "headers"
            return True
        if self._state == "headers":
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > MAX_PART_HEADER_BYTES:
                    raise SdkRequestError(SdkErrorCode.TOO_LARGE, f"a part's headers pass {MAX_PART_HEADER_BYTES} bytes")
                return False
            out.append(_part_headers(bytes(buf[:i])))
            del buf[: i + 4]
            self._state = "body"
            return True
        if self._state == "body":
            i = buf.find(self._delim)
            if i >= 0:
                if i:
                    out.append(PartData(bytes(buf[:i])))
                out.append(PartEnded())
                del buf[: i + len(self._delim)]
                self._state = "after_delimiter"
                return True
            keep = len(self._delim) - 1
            if len(buf) > keep:
                out.append(PartData(bytes(buf[: len(buf) - keep])))
                del buf[: len(buf) - keep]
            return False
        buf.clear()  # the epilogue is ignored
        return False


def _part_headers(raw: bytes) -> PartStarted:
    name = filename = ""
    content_type = "application/octet-stream"
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            raise _malformed(f"a part header line is not 'Name: value': {line[:60]!r}")
        key = key.strip().lower()
        if key == "content-disposition":
            if not value.strip().lower().startswith("form-data"):
                raise _malformed("a part's Content-Disposition is not form-data")
            for m in _PARAM.finditer(value):
                k = (m.group(1) or m.group(3)).lower()
                v = m.group(2) if m.group(1) else m.group(4)
                if k == "name":
                    name = v
                else:
                    filename = v
        elif key == "content-type":
            content_type = value.strip()[:200]
    if not name:
        raise _malformed("a part has no Content-Disposition name")
    return PartStarted(name[:100], filename[:500], content_type)
