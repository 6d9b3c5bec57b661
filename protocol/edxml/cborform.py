"""The header as canonical CBOR, so a node can carry it in its encrypted manifest and rebuild the package.

Version 1 (docs/edxml.md "CBOR form"; golden vectors in tests/vectors/edxml/)::

    {
      "v":    1,
      "ns":   [uri, ...],                                   namespace table, "" first
      "el":   [[depth, ns, name, prefix, text, attrs], ...], the tree in document order, root depth 0
              attrs = [[ns, name, prefix, value], ...]
      "att":  [[size, sha256, wrapper, media_type], ...],    per attachment, what its bytes showed
      "warn": [[field, what], ...]                           the reader's own warnings
    }

The tree is flat (a depth per element, pre-order) so CBOR nesting stays
constant however deep the XML is (protocol.cbor refuses nesting past 16).
Attachment metadata (ContentId, name, declared type) is in the tree; the
warnings the tree shows are recomputed on decoding, so they are not stored.
Decoding is strict (canonical bytes only) and goes through
``Package.from_tree``: a decoded package is as valid as a read one.
"""

from __future__ import annotations

import re
from typing import Any

from .. import cbor
from ..errors import SchemaError
from .limits import DEFAULT_LIMITS, Limits
from .model import AttachmentInfo, FieldWarning, Package, attachment_elements, strip_cid
from .tree import XMLNS_NS, Attr, Element

FORMAT_VERSION = 1
MAX_CBOR_BYTES = 1 << 20
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_NAME = re.compile(r"^[^\W\d][\w.\-]*$")


def encode_package(package: Package) -> bytes:
    """The canonical CBOR of a package's header, attachment facts and reader warnings."""
    ns_index: dict[str, int] = {"": 0}

    def ns(uri: str) -> int:
        return ns_index.setdefault(uri, len(ns_index))

    rows: list[list[Any]] = []
    stack: list[tuple[Element, int]] = [(package.root, 0)]
    while stack:
        el, d = stack.pop()
        attrs = [[ns(a.ns), a.name, a.prefix, a.value] for a in el.attrs]
        rows.append([d, ns(el.ns), el.name, el.prefix, el.text, attrs])
        stack.extend((c, d + 1) for c in reversed(el.children))
    return cbor.encode(
        {
            "v": FORMAT_VERSION,
            "ns": list(ns_index),
            "el": rows,
            "att": [[a.size, a.sha256, a.wrapper, a.media_type] for a in package.attachments],
            "warn": [[w.field, w.what] for w in package.reader_warnings],
        }
    )


def decode_package(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Package:
    """Rebuild a package from :func:`encode_package`'s bytes.

    Raises DecodeError/SchemaError for bytes that are not version 1's
    canonical form or break ``limits``, and the reader's errors for a tree
    that is not a valid package.
    """
    where = "edxml"
    m = cbor.expect_map(cbor.decode(data, max_bytes=MAX_CBOR_BYTES), where, {"v", "ns", "el", "att", "warn"})
    if cbor.get_int(m, "v", where) != FORMAT_VERSION:
        raise SchemaError(f"edxml.v: only version {FORMAT_VERSION} is known")
    uris = [
        _text(u, "edxml.ns", limits.max_name_chars)
        for u in cbor.get_list(m, "ns", where, min_len=1, max_len=limits.max_namespaces + 2)
    ]
    if uris[0] != "" or len(set(uris)) != len(uris):
        raise SchemaError('edxml.ns: must start with "" and hold each URI once')
    rows = cbor.get_list(m, "el", where, min_len=1, max_len=limits.max_elements)
    budget = [limits.max_header_chars]
    # Built bottom-up: path holds (row, children so far) from the root to the current element.
    path: list[tuple[list[Any], list[Element]]] = []

    def close_to(depth: int) -> None:
        while len(path) > depth:
            row, kids = path.pop()
            el = _element(row, kids, uris, limits, budget)
            if path:
                path[-1][1].append(el)
            else:
                done.append(el)

    done: list[Element] = []
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != 6:
            raise SchemaError(f"edxml.el[{i}]: expected [depth, ns, name, prefix, text, attrs]")
        d = row[0]
        if type(d) is not int or not 0 <= d <= len(path) or (d == 0 and i != 0) or d >= limits.max_depth:
            raise SchemaError(f"edxml.el[{i}]: depth {d!r} does not continue the tree")
        close_to(d)
        path.append((row, []))
    close_to(0)
    root = done[0]
    atts = cbor.get_list(m, "att", where, max_len=limits.max_attachments)
    elements = attachment_elements(root)
    if len(atts) != len(elements):
        raise SchemaError(f"edxml.att: {len(atts)} entries for {len(elements)} attachments")
    infos = []
    for i, (a, el) in enumerate(zip(atts, elements, strict=True)):
        if type(a) is not list or len(a) != 4:
            raise SchemaError(f"edxml.att[{i}]: expected [size, sha256, wrapper, media_type]")
        size, sha, wrapper, media = a
        if type(size) is not int or size < 0 or type(sha) is not bytes or len(sha) not in (0, 32):
            raise SchemaError(f"edxml.att[{i}]: bad size or sha256")
        infos.append(
            AttachmentInfo(
                index=i,
                content_id=strip_cid(el.value("ContentId")),
                name=el.value("AttachmentName"),
                declared_type=el.value("ContentType"),
                description=el.value("Description"),
                size=size,
                sha256=sha,
                wrapper=_text(wrapper, f"edxml.att[{i}].wrapper", 255),
                media_type=_text(media, f"edxml.att[{i}].media_type", 255),
            )
        )
    warns = []
    for i, w in enumerate(cbor.get_list(m, "warn", where, max_len=1024)):
        if type(w) is not list or len(w) != 2:
            raise SchemaError(f"edxml.warn[{i}]: expected [field, what]")
        warns.append(FieldWarning(_text(w[0], "edxml.warn", 512), _text(w[1], "edxml.warn", 512)))
    package = Package.from_tree(root, infos, warns)
    return package


def _text(v: Any, where: str, max_len: int) -> str:
    if type(v) is not str:
        raise SchemaError(f"{where}: expected text")
    if len(v) > max_len:
        raise SchemaError(f"{where}: longer than {max_len}")
    if _NOT_XML.search(v):
        raise SchemaError(f"{where}: a character XML cannot carry")
    return v


def _name(v: Any, where: str, limits: Limits) -> str:
    s = _text(v, where, limits.max_name_chars)
    if not _NAME.match(s):
        raise SchemaError(f"{where}: {s[:40]!r} is not an XML name")
    return s


def _prefix(v: Any, where: str, limits: Limits) -> str:
    s = _text(v, where, limits.max_name_chars)
    if s and not _NAME.match(s):
        raise SchemaError(f"{where}: {s[:40]!r} is not a prefix")
    return s


def _ns(v: Any, uris: list[str], where: str) -> str:
    if type(v) is not int or not 0 <= v < len(uris):
        raise SchemaError(f"{where}: namespace index {v!r}")
    return uris[v]


def _element(row: list[Any], kids: list[Element], uris: list[str], limits: Limits, budget: list[int]) -> Element:
    _, ns, name, prefix, text, attrs = row
    where = "edxml.el"
    t = _text(text, where, limits.max_text_chars)
    if type(attrs) is not list or len(attrs) > limits.max_attributes:
        raise SchemaError(f"{where}: attributes must be a list of at most {limits.max_attributes}")
    parsed = []
    for a in attrs:
        if type(a) is not list or len(a) != 4:
            raise SchemaError(f"{where}: an attribute is [ns, name, prefix, value]")
        value = _text(a[3], where, limits.max_text_chars)
        budget[0] -= len(value)
        parsed.append(Attr(_ns(a[0], uris, where), _name(a[1], where, limits), value, _prefix(a[2], where, limits)))
    budget[0] -= len(t)
    if budget[0] < 0:
        raise SchemaError(f"{where}: more than {limits.max_header_chars} characters of text")
    if len({(a.ns, a.name) for a in parsed}) != len(parsed):
        raise SchemaError(f"{where}: an attribute appears twice")
    if any((a.name == "xmlns" and not a.ns) or a.ns == XMLNS_NS for a in parsed):
        raise SchemaError(f"{where}: namespace declarations are not attributes here")
    return Element(
        _ns(ns, uris, where), _name(name, where, limits), t, tuple(kids), tuple(parsed), _prefix(prefix, where, limits)
    )
