"""The writer: a package and its attachments' byte streams in, edXML bytes out, as a generator.

    for piece in write_package(package, [lambda: blocks_of(f) for f in files], zip=ZipMode.AS_RECEIVED, at_ms=now):
        sink.write(piece)

Output rules (docs/edxml.md "Writer"):

* ``<?xml version="1.0" encoding="UTF-8"?>`` then the tree, UTF-8, no
  indentation; the edXML namespace declared once on the root and spelt
  ``edXML:`` on every element in it (as VNPT's Java library writes); other
  namespaces keep the prefix they were received with (``ds:``, ``xlink:``...),
  declared on the first element that needs them; an element with no text
  and no children is written ``<edXML:DueDate/>``.
* Elements come out in the tree's order: a received header in its received
  order, a built one in VNPT's (:mod:`protocol.edxml.build`).
* Each attachment's bytes are read from its callable only when the writer
  reaches its ContentTransferEncoded, optionally wrapped in VNPT's one-entry
  zip (:func:`~protocol.edxml.zipstream.zip_one`), and base64-encoded as one
  run without line breaks. Memory stays flat whatever the sizes.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

from ..errors import HashMismatchError
from .model import AttachmentInfo, Package, extension, strip_cid
from .tree import EDXML_NS, EDXML_PREFIX, XML_NS, Element
from .zipstream import zip_one

CHUNK_CHARS = 1 << 16
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
ZIP_TYPE = "application/zip"

FileChunks = Callable[[], Iterable[bytes]]
"""Called once, when the writer reaches the attachment: yields the real file's bytes in order."""


class ZipMode(enum.Enum):
    """How attachments leave: per node or per recipient setting."""

    AS_RECEIVED = "as_received"
    """Re-wrap what arrived wrapped (same entry name), the rest raw: the recipient sees what the sender's system made."""
    ZIP = "zip"
    """Every attachment in VNPT's one-file zip (for software that expects VNPT's form)."""
    RAW = "raw"
    """Every attachment as the real file."""


def uuid4(rng: Callable[[int], bytes]) -> str:
    """A random (version 4) UUID from ``rng`` (randomness is an argument here)."""
    b = bytearray(rng(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def wrapper_names(package: Package, zip: ZipMode, rng: Callable[[int], bytes] | None) -> list[str]:
    """Per attachment, the zip entry name it is wrapped under ("" = written raw)."""
    out = []
    for info in package.attachments:
        if zip is ZipMode.RAW:
            out.append("")
        elif zip is ZipMode.AS_RECEIVED or info.wrapper:
            out.append(info.wrapper)
        else:
            if rng is None:
                raise ValueError("zipping attachments needs rng (for the entry names)")
            out.append(f"{uuid4(rng)}.{extension(info.name) or 'bin'}")
    return out


def export_tree(package: Package, names: Sequence[str]) -> Element:
    """The tree to write: ContentType follows the wrapping where it changed (zip <-> raw)."""
    changes: dict[str, str] = {}
    for info, name in zip(package.attachments, names, strict=True):
        if name and not info.unwrapped:
            changes[info.content_id] = ZIP_TYPE
        elif not name and info.unwrapped:
            changes[info.content_id] = info.media_type
    if not changes:
        return package.root
    return _retype(package.root, changes)


def _retype(el: Element, changes: dict[str, str]) -> Element:
    if el.ns == EDXML_NS and el.name in ("Reference", "Attachment"):
        cid = strip_cid(el.value("ContentId"))
        if cid in changes:
            kids = tuple(replace(c, text=changes[cid]) if c.is_("ContentType") else c for c in el.children)
            return el.with_children(kids)
        return el
    if not el.children:
        return el
    return el.with_children(tuple(_retype(c, changes) for c in el.children))


def write_package(
    package: Package,
    files: Sequence[FileChunks] = (),
    *,
    zip: ZipMode = ZipMode.AS_RECEIVED,
    at_ms: int | None = None,
    rng: Callable[[int], bytes] | None = None,
    zip_level: int | None = None,
    chunk_chars: int = CHUNK_CHARS,
) -> Iterator[bytes]:
    """The package as edXML bytes, piece by piece.

    ``files[i]`` gives attachment i's real bytes. ``at_ms`` (the zip entries'
    time) is required when anything is zipped, ``rng`` when an attachment
    that did not arrive wrapped is zipped (its entry name is a fresh UUID).
    ``zip_level`` None picks 6 or 0 from the file's first bytes
    (:func:`~protocol.edxml.zipstream.choose_level`).

    Raises ValueError for a mismatch between ``files`` and the package and
    HashMismatchError when a file's bytes are not those the package recorded
    (its size and SHA-256, when known).
    """
    if len(files) != len(package.attachments):
        raise ValueError(f"{len(package.attachments)} attachments in the package, {len(files)} files given")
    names = wrapper_names(package, zip, rng)
    if any(names) and at_ms is None:
        raise ValueError("zipping attachments needs at_ms (the zip entries' time)")
    root = export_tree(package, names)

    def attachment(index: int) -> Iterator[bytes]:
        info = package.attachments[index]
        data = _checked(files[index](), info)
        if names[index]:
            assert at_ms is not None
            data = zip_one(names[index], data, at_ms=at_ms, level=zip_level)
        return _base64(data)

    buf: list[str] = [XML_DECLARATION]
    size = len(XML_DECLARATION)
    for piece in _serialize(root, {EDXML_NS: EDXML_PREFIX, XML_NS: "xml"}, (), [0]):
        if isinstance(piece, str):
            buf.append(piece)
            size += len(piece)
            if size >= chunk_chars:
                yield "".join(buf).encode("utf-8")
                buf, size = [], 0
        else:
            if buf:
                yield "".join(buf).encode("utf-8")
                buf, size = [], 0
            yield from attachment(piece)
    if buf:
        yield "".join(buf).encode("utf-8")


def write_bytes(
    package: Package,
    files: Sequence[bytes] = (),
    *,
    zip: ZipMode = ZipMode.AS_RECEIVED,
    at_ms: int | None = None,
    rng: Callable[[int], bytes] | None = None,
    zip_level: int | None = None,
) -> bytes:
    """The whole package in memory (tests, small packages); options as for :func:`write_package`."""
    sources: list[FileChunks] = [(lambda d=d: [d]) for d in files]  # type: ignore[misc]
    return b"".join(write_package(package, sources, zip=zip, at_ms=at_ms, rng=rng, zip_level=zip_level))


def _checked(chunks: Iterable[bytes], info: AttachmentInfo) -> Iterator[bytes]:
    sha = hashlib.sha256()
    n = 0
    for chunk in chunks:
        if chunk:
            sha.update(chunk)
            n += len(chunk)
            yield chunk
    if info.sha256 and (n != info.size or sha.digest() != info.sha256):
        raise HashMismatchError(f"attachment {info.index + 1} ({info.name}): the bytes given are not the ones read")


def _base64(chunks: Iterable[bytes]) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = carry + chunk if carry else chunk
        n = len(data) - len(data) % 3
        if n:
            yield binascii.b2a_base64(memoryview(data)[:n], newline=False)
        carry = data[n:]
    if carry:
        yield binascii.b2a_base64(carry, newline=False)


_TEXT_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord("\r"): "&#13;"}
_ATTR_ESCAPES = {**_TEXT_ESCAPES, ord('"'): "&quot;", ord("\t"): "&#9;", ord("\n"): "&#10;"}


def _text(s: str) -> str:
    return s.translate(_TEXT_ESCAPES)


def _attr(s: str) -> str:
    return s.translate(_ATTR_ESCAPES)


_SLOT_PATH = ("edXML", "AttachmentEncoded", "Attachment")


def _serialize(el: Element, scope: dict[str, str], path: tuple[str, ...], counter: list[int]) -> Iterator[str | int]:
    """Start tag, text, children, end tag; an int (attachment index) where attachment bytes go.

    ``path`` holds the edXML names of the ancestors (only the first three
    matter): the first ContentTransferEncoded of each root-level
    AttachmentEncoded/Attachment is attachment ``counter[0]``, the order the
    reader numbers them in.
    """
    declare: list[tuple[str, str]] = []
    if not path:
        declare.append((EDXML_PREFIX, EDXML_NS))

    def prefix_for(ns: str, hint: str) -> str:
        nonlocal scope
        if ns in scope:
            return scope[ns]
        used = set(scope.values())
        p = hint if hint and hint not in used and hint not in ("xml", "xmlns", EDXML_PREFIX) else ""
        i = 0
        while not p or p in used:
            i += 1
            p = f"ns{i}"
        scope = {**scope, ns: p}
        declare.append((p, ns))
        return p

    tag = el.name if not el.ns else f"{prefix_for(el.ns, el.prefix)}:{el.name}"
    attrs = []
    for a in el.attrs:
        qn = a.name if not a.ns else f"{prefix_for(a.ns, a.prefix)}:{a.name}"
        attrs.append(f' {qn}="{_attr(a.value)}"')
    decls = "".join(f' xmlns:{p}="{_attr(ns)}"' for p, ns in declare)
    head = f"<{tag}{decls}{''.join(attrs)}"
    if path == _SLOT_PATH and el.is_("ContentTransferEncoded"):
        yield head + ">"
        yield counter[0]
        counter[0] += 1
        yield f"</{tag}>"
        return
    if not el.text and not el.children:
        yield head + "/>"
        return
    yield head + ">" + _text(el.text)
    sub = (*path, el.name) if el.ns == EDXML_NS and len(path) < 3 else (*path, "")
    seen_slot = False
    for c in el.children:
        if sub == _SLOT_PATH and c.is_("ContentTransferEncoded"):
            if seen_slot:
                yield from _serialize(c, scope, (*sub[:2], ""), counter)  # a second one carries no bytes
                continue
            seen_slot = True
        yield from _serialize(c, scope, sub, counter)
    yield f"</{tag}>"
