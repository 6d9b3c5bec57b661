"""The reader: edXML bytes in, events out (an incremental push parser, bounded memory).

    reader = Reader()
    for chunk in chunks:
        for event in reader.feed(chunk):
            ...
    for event in reader.close():
        ...

Events, in order: ``HeaderRead`` once the envelope is read and valid (before
any attachment byte in the usual layout; From/To can be checked against the
directory there), then per attachment ``AttachmentStarted``,
``AttachmentData``\\* (the real file's bytes: base64 decoded, VNPT's zip
unwrapped), ``AttachmentEnded`` (size, SHA-256, whether it was unwrapped),
and from :meth:`Reader.close` ``PackageRead`` with the final
:class:`~protocol.edxml.model.Package`. Until ``PackageRead`` the package is
not accepted: any error raised by ``feed`` or ``close`` means nothing of it
may be kept.

XML is parsed by the standard library's expat (``xml.parsers.expat``),
hardened: any DOCTYPE is refused at its first byte (so no entity can be
declared: no billion laughs, no quadratic blowup, no external entity), entity
declarations are refused again in case, parameter entities are never parsed,
and no external-entity handler exists (expat itself does no I/O). Character
data is delivered in pieces, never as one string: pyexpat hands expat at
most 1 MiB of a ``feed`` at a time, and ``buffer_text`` joins expat's
fragments only up to ``TEXT_BUFFER_CHARS`` (64 Ki, below malloc's mmap
threshold, which measured faster than larger buffers) and flushes at the end
of every ``feed``. So a 134 MB base64 text node is decoded piece by piece
(at most 768 KiB decoded at a time) and handed on. Feed pieces of 64 KiB or
so: that is the fastest size measured (docs/edxml.md).

Why one module: the parser's state (the element stack, depth and counts, the base64 lane,
the attachment decoders) is one state machine; split, that state would be passed around.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from xml.parsers import expat

from ..errors import (
    EdxmlBase64Error,
    EdxmlError,
    EdxmlForbiddenError,
    EdxmlHeaderError,
    EdxmlLimitError,
    EdxmlManifestError,
    EdxmlNotEdxmlError,
    EdxmlSyntaxError,
    EdxmlUnsafeNameError,
)
from .limits import DEFAULT_LIMITS, Limits
from .model import AttachmentInfo, FieldWarning, Kind, Package, guess_media_type, strip_cid, unsafe_name_reason
from .tree import EDXML_NS, KNOWN_NAMES, Attr, Element
from .zipstream import AttachmentDecoder

TEXT_BUFFER_CHARS = 1 << 16
_WS = b" \t\r\n"
_NS_SEP = "\x01"
_CTE_NAME = b"ContentTransferEncoded"
_TAIL = len(_CTE_NAME) - 1
_ASCII_COMPATIBLE = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1"})


def _lane_end(data: bytes, pos: int) -> int:
    """Where the fast lane stops: the next '<' or '&' (or the end of ``data``)."""
    lt = data.find(b"<", pos)
    amp = data.find(b"&", pos, lt if lt >= 0 else len(data))
    if amp >= 0:
        return amp
    return lt if lt >= 0 else len(data)


@dataclass(frozen=True, slots=True)
class HeaderRead:
    """The envelope (header and manifest) is read and valid; ``package.attachments`` is still empty."""

    package: Package


@dataclass(frozen=True, slots=True)
class AttachmentStarted:
    """Attachment ``index`` begins; the metadata is what preceded its ContentTransferEncoded (final values in AttachmentEnded)."""

    index: int
    content_id: str
    name: str
    declared_type: str


@dataclass(frozen=True, slots=True)
class AttachmentData:
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AttachmentEnded:
    index: int
    info: AttachmentInfo


@dataclass(frozen=True, slots=True)
class PackageRead:
    """The whole package is read and valid: commit it now, not before."""

    package: Package


Event = HeaderRead | AttachmentStarted | AttachmentData | AttachmentEnded | PackageRead


class _Base64:
    """Incremental strict base64: whitespace ignored, anything else outside the alphabet refused.

    Pieces are decoded through memoryviews: the only copy of a piece is its
    str -> bytes encoding (the 1-3 characters that straddle two pieces are
    decoded on their own).
    """

    __slots__ = ("_carry", "_done", "padded_tail")

    def __init__(self) -> None:
        self._carry = b""
        self._done = False
        self.padded_tail = True

    def feed(self, text: str) -> list[bytes]:
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise EdxmlBase64Error("a non-ASCII character") from None
        return self.feed_bytes(raw)

    def feed_bytes(self, raw: bytes) -> list[bytes]:
        if b"\n" in raw or b"\r" in raw or b" " in raw or b"\t" in raw:
            raw = raw.translate(None, _WS)
        view = memoryview(raw)
        out: list[bytes] = []
        if self._carry:
            need = 4 - len(self._carry)
            if len(view) < need:
                self._carry += raw
                return out
            out.append(self._decode(self._carry + bytes(view[:need])))
            view = view[need:]
            self._carry = b""
        n = len(view) & ~3
        if n:
            out.append(self._decode(view[:n]))
        if n < len(view):
            self._carry = bytes(view[n:])
        return out

    def _decode(self, block: bytes | memoryview) -> bytes:
        if self._done:
            raise EdxmlBase64Error("data after the padding")
        try:
            out = binascii.a2b_base64(block, strict_mode=True)
        except binascii.Error as exc:
            raise EdxmlBase64Error(str(exc)) from None
        if block[-1] == 0x3D:  # "=": the end of the data
            self._done = True
        return out

    def close(self) -> bytes:
        carry, self._carry = self._carry, b""
        if not carry:
            return b""
        if self._done or len(carry) == 1:
            raise EdxmlBase64Error("its length is not a multiple of 4")
        # Padding left out (2 or 3 characters): lenient, with a warning.
        self.padded_tail = False
        return self._decode(carry + b"=" * (4 - len(carry)))


class _Open:
    """An element being read."""

    __slots__ = ("attrs", "children", "name", "ns", "prefix", "text", "text_len")

    def __init__(self, ns: str, name: str, prefix: str, attrs: tuple[Attr, ...]) -> None:
        self.ns = ns
        self.name = name
        self.prefix = prefix
        self.attrs = attrs
        self.text: list[str] = []
        self.text_len = 0
        self.children: list[Element] = []

    def is_(self, name: str) -> bool:
        return self.name == name and self.ns == EDXML_NS

    def freeze(self) -> Element:
        text = "".join(self.text)
        if self.children and not text.strip():
            text = ""
        return Element(self.ns, self.name, text, tuple(self.children), self.attrs, self.prefix)


class _Attachment:
    """The attachment whose ContentTransferEncoded is being read."""

    __slots__ = ("b64", "decoded", "decoder", "head", "index", "sha", "size")

    def __init__(self, index: int, name: str, limits: Limits) -> None:
        self.index = index
        self.b64 = _Base64()
        self.decoder = AttachmentDecoder(name, limits)
        self.sha = hashlib.sha256()
        self.size = 0
        self.decoded = 0
        self.head = b""


class Reader:
    """An incremental edXML reader; see the module doc. Not reusable: one package per reader."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, fast_lane: bool = True) -> None:
        """``fast_lane`` False sends every byte through expat (the tests compare both ways)."""
        self._limits = limits
        # \x01 cannot occur in a namespace URI (XML 1.0 forbids it even as &#1;); a space can.
        p = expat.ParserCreate(encoding=None, namespace_separator=_NS_SEP)
        p.namespace_prefixes = True
        p.ordered_attributes = True
        p.buffer_text = True
        p.buffer_size = TEXT_BUFFER_CHARS
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._on_doctype
        p.EntityDeclHandler = self._on_entity
        p.UnparsedEntityDeclHandler = self._on_entity
        p.NotationDeclHandler = self._on_entity
        p.ElementDeclHandler = self._on_entity
        p.AttlistDeclHandler = self._on_entity
        p.StartElementHandler = self._on_start
        p.EndElementHandler = self._on_end
        p.CharacterDataHandler = self._on_text
        p.StartNamespaceDeclHandler = self._on_namespace
        p.XmlDeclHandler = self._on_xml_decl
        # Comments and processing instructions are dropped (no edXML producer
        # uses them to carry data); these handlers only record progress.
        p.CommentHandler = self._on_other
        p.ProcessingInstructionHandler = self._on_other
        p.StartCdataSectionHandler = self._on_other
        p.EndCdataSectionHandler = self._on_other
        # Newer expat defers re-parsing a token it could not finish until much
        # more data arrived; the cap on bytes without progress bounds that
        # work already, and the fast lane needs each '>' seen when fed.
        deferral = getattr(p, "SetReparseDeferralEnabled", None)
        if deferral is not None:
            deferral(False)
        self._parser = p
        self._fed = 0  # bytes given to expat
        self._progress = 0  # self._fed when a handler last ran
        # The fast lane (see _route): on, until the encoding is not ASCII-compatible.
        self._lanes = fast_lane
        self._in_lane = False
        self._lane_ok = False  # the open ContentTransferEncoded has had no text yet
        self._tail = b""  # the last bytes given to expat, for a tag name cut between two feeds
        self._pending_gt = False  # a ContentTransferEncoded name seen, its '>' not yet
        self._first = True
        self._events: list[Event] = []
        self._stack: list[_Open] = []
        self._root: Element | None = None
        self._elements = 0
        self._namespaces = 0
        self._header_chars = 0
        self._att: _Attachment | None = None  # inside a ContentTransferEncoded
        self._att_index = 0
        self._att_infos: list[AttachmentInfo] = []
        self._pending_info: dict[int, tuple[int, str, bytes, bytes]] = {}
        self._warnings: list[FieldWarning] = []
        self._header: Package | None = None
        self._error: EdxmlError | None = None
        self._closed = False

    # --- public --------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next bytes; returns the events they complete. Raises an EdxmlError subclass."""
        if self._closed:
            raise RuntimeError("feed() after close()")  # caller bug
        if self._error is not None:
            raise self._error
        if self._first and data:
            self._first = False
            if data[:2] in (b"\xfe\xff", b"\xff\xfe") or b"\x00" in data[:4]:
                self._lanes = False  # UTF-16/32: the lane's byte search is for ASCII-compatible text
        try:
            self._route(bytes(data))
        except EdxmlError as exc:
            self._error = exc
            raise
        events, self._events = self._events, []
        return events

    def close(self) -> list[Event]:
        """The input has ended: check the package is whole and consistent; the last event is PackageRead."""
        if self._closed:
            raise RuntimeError("close() called twice")  # caller bug
        if self._error is not None:
            raise self._error
        try:
            self._parse(b"", True)
        except EdxmlError as exc:
            self._error = exc
            raise
        self._closed = True
        if self._root is None:
            raise EdxmlSyntaxError("the input ends before the root element closes")
        package = Package.from_tree(self._root, self._att_infos, self._warnings)
        self._events.append(PackageRead(package))
        events, self._events = self._events, []
        return events

    # --- the fast lane -----------------------------------------------------------------
    #
    # Base64 is 99 % of a package; running it through expat costs a third of
    # the import (expat scans it, makes str of it, we make bytes again). So
    # bytes are given to expat up to the '>' of any tag whose bytes name
    # ContentTransferEncoded, one at a time; when expat has then opened an
    # attachment's ContentTransferEncoded (and nothing else explains the
    # name: a comment, an attribute, an end tag), the bytes that follow, up to
    # the next '<' or '&', are that element's character data by XML's own
    # rules, and go straight to the base64 decoder. From the '<' (or an '&'
    # character reference, rare) on, expat reads again and sees an element
    # whose text it was not shown. Anything that is not base64 in the lane is
    # an EdxmlBase64Error, as it would be through expat (where a byte XML
    # forbids would be an EdxmlSyntaxError instead). The only visible
    # difference: expat's line and column numbers in later syntax errors do
    # not count the lane's bytes.

    def _route(self, data: bytes) -> None:
        if not self._lanes:
            self._parse(data, False)
            return
        pos, n = 0, len(data)
        while pos < n:
            if self._in_lane:
                end = _lane_end(data, pos)
                att = self._att
                assert att is not None
                # in TEXT_BUFFER_CHARS steps, like expat's pieces: a large feed is not one large event
                for at in range(pos, end, TEXT_BUFFER_CHARS):
                    for decoded in att.b64.feed_bytes(data[at : min(at + TEXT_BUFFER_CHARS, end)]):
                        self._attachment_bytes(att, decoded)
                if end == n:
                    return
                self._in_lane = False
                pos = end
                continue
            stop = self._next_stop(data, pos)
            if stop < 0:
                self._expat(data[pos:] if pos else data)
                return
            self._expat(data[pos:stop])
            pos = stop
            if self._lanes and self._att is not None and self._lane_ok:
                self._in_lane = True

    def _expat(self, chunk: bytes) -> None:
        self._parse(chunk, False)
        self._tail = (self._tail + chunk[-_TAIL:])[-_TAIL:]

    def _next_stop(self, data: bytes, pos: int) -> int:
        """Just after the '>' closing a tag that names ContentTransferEncoded, or -1 when there is none in ``data``."""
        if self._pending_gt:
            gt = data.find(b">", pos)
            if gt < 0:
                return -1
            self._pending_gt = False
            return gt + 1
        # A name cut between the previous feed and this one: the tail holds at
        # most len(name) - 1 bytes, so a match here always ends in ``data``.
        straddle = self._tail + data[pos : pos + _TAIL]
        i = straddle.find(_CTE_NAME)
        if i >= 0:
            after = pos + i + len(_CTE_NAME) - len(self._tail)
        else:
            j = data.find(_CTE_NAME, pos)
            if j < 0:
                return -1
            after = j + len(_CTE_NAME)
        gt = data.find(b">", after)
        if gt < 0:
            self._pending_gt = True
            return -1
        return gt + 1

    def _on_xml_decl(self, _version: str, encoding: str | None, _standalone: int) -> None:
        self._progress = self._fed
        if encoding is not None and encoding.lower().replace("_", "-") not in _ASCII_COMPATIBLE:
            self._lanes = False

    # --- parsing -------------------------------------------------------------------

    def _parse(self, data: bytes, final: bool) -> None:
        self._fed += len(data)
        try:
            self._parser.Parse(data, final)
            if self._fed - self._progress > self._limits.max_token_bytes:
                raise EdxmlLimitError(f"more than {self._limits.max_token_bytes} bytes without a complete XML token")
        except EdxmlError as exc:
            self._error = exc
            raise
        except expat.ExpatError as exc:
            self._error = EdxmlSyntaxError(str(exc))
            raise self._error from None
        except RecursionError:
            self._error = EdxmlLimitError("nesting too deep")
            raise self._error from None
        except (LookupError, UnicodeError, ValueError) as exc:
            # expat asks Python's codecs for an encoding it does not know itself
            # (the XML declaration's): an unknown or multi-byte one lands here.
            self._error = EdxmlSyntaxError(f"the declared encoding cannot be read: {exc}")
            raise self._error from None

    def _on_other(self, *_args: object) -> None:
        self._progress = self._fed

    def _on_doctype(self, *_args: object) -> None:
        raise EdxmlForbiddenError("a DOCTYPE declaration")

    def _on_entity(self, *_args: object) -> None:
        raise EdxmlForbiddenError("a DTD declaration")

    def _on_namespace(self, prefix: str | None, uri: str | None) -> None:
        self._namespaces += 1
        if self._namespaces > self._limits.max_namespaces:
            raise EdxmlLimitError(f"more than {self._limits.max_namespaces} namespace declarations")
        self._count_chars(len(uri or "") + len(prefix or ""))

    def _count_chars(self, n: int) -> None:
        self._header_chars += n
        if self._header_chars > self._limits.max_header_chars:
            raise EdxmlLimitError(f"the header holds more than {self._limits.max_header_chars} characters")

    def _split(self, qname: str) -> tuple[str, str, str]:
        if len(qname) > self._limits.max_name_chars:
            raise EdxmlLimitError(f"a name longer than {self._limits.max_name_chars} characters")
        parts = qname.split(_NS_SEP)
        if len(parts) == 1:
            return "", parts[0], ""
        if len(parts) == 2:
            return parts[0], parts[1], ""
        return parts[0], parts[1], parts[2]

    def _on_start(self, qname: str, attrs: list[str]) -> None:
        self._progress = self._fed
        lim = self._limits
        self._elements += 1
        if self._elements > lim.max_elements:
            raise EdxmlLimitError(f"more than {lim.max_elements} elements")
        if len(self._stack) >= lim.max_depth:
            raise EdxmlLimitError(f"elements nested deeper than {lim.max_depth}")
        if self._att is not None:
            raise EdxmlBase64Error("ContentTransferEncoded holds an element")
        ns, name, prefix = self._split(qname)
        stack = self._stack
        if not stack:
            if self._root is not None:
                raise EdxmlSyntaxError("a second root element")
            if ns != EDXML_NS or name != "edXML":
                raise EdxmlNotEdxmlError(f"root element {{{ns}}}{name}" if ns else f"root element {name} has no namespace")
        elif not ns and name in KNOWN_NAMES:
            ns = EDXML_NS  # a producer that left the namespace out means edXML's (docs/edxml.md)
        if len(attrs) > 2 * lim.max_attributes:
            raise EdxmlLimitError(f"more than {lim.max_attributes} attributes on {name}")
        parsed: list[Attr] = []
        for i in range(0, len(attrs), 2):
            a_ns, a_name, a_prefix = self._split(attrs[i])
            value = attrs[i + 1]
            if len(value) > lim.max_text_chars:
                raise EdxmlLimitError(f"an attribute value longer than {lim.max_text_chars} characters")
            self._count_chars(len(value) + len(attrs[i]))
            parsed.append(Attr(a_ns, a_name, value, a_prefix))
        self._count_chars(len(qname))
        node = _Open(ns, name, prefix, tuple(parsed))
        if ns == EDXML_NS and len(stack) == 2 and stack[1].is_("AttachmentEncoded") and name == "Attachment":
            if self._header is not None and self._header.kind is Kind.STATUS:
                raise EdxmlHeaderError("a status package carries no attachments")
            if self._att_index >= lim.max_attachments:
                raise EdxmlLimitError(f"more than {lim.max_attachments} attachments")
        elif ns == EDXML_NS and name == "ContentTransferEncoded" and self._in_attachment():
            parent = stack[-1]
            if any(c.is_("ContentTransferEncoded") for c in parent.children):
                raise EdxmlBase64Error("an Attachment with two ContentTransferEncoded")
            meta = _meta(parent.children)
            self._att = _Attachment(self._att_index, meta[1], lim)
            self._lane_ok = True
            self._events.append(AttachmentStarted(self._att_index, meta[0], meta[1], meta[2]))
        stack.append(node)

    def _in_attachment(self) -> bool:
        s = self._stack
        return len(s) == 3 and s[2].is_("Attachment") and s[1].is_("AttachmentEncoded")

    def _on_text(self, text: str) -> None:
        self._progress = self._fed
        att = self._att
        if att is not None:
            self._lane_ok = False
            for decoded in att.b64.feed(text):
                self._attachment_bytes(att, decoded)
            return
        if not self._stack:
            return  # whitespace around the root (expat refuses anything else there)
        top = self._stack[-1]
        top.text_len += len(text)
        if top.text_len > self._limits.max_text_chars:
            raise EdxmlLimitError(f"{top.name} holds more than {self._limits.max_text_chars} characters")
        self._count_chars(len(text))
        top.text.append(text)

    def _attachment_bytes(self, att: _Attachment, decoded: bytes) -> None:
        if not decoded:
            return
        att.decoded += len(decoded)
        if att.decoded > self._limits.max_attachment_bytes:
            raise EdxmlLimitError(f"attachment {att.index + 1} is larger than {self._limits.max_attachment_bytes} bytes")
        for piece in att.decoder.feed(decoded):
            self._deliver(att, piece)

    def _deliver(self, att: _Attachment, piece: bytes) -> None:
        if not piece:
            return
        if len(att.head) < 16:
            att.head += piece[: 16 - len(att.head)]
        att.sha.update(piece)
        att.size += len(piece)
        self._events.append(AttachmentData(att.index, piece))

    def _on_end(self, _qname: str) -> None:
        self._progress = self._fed
        node = self._stack.pop()
        att = self._att
        if att is not None:  # the end of a ContentTransferEncoded
            self._att = None
            self._attachment_bytes(att, att.b64.close())
            for piece in att.decoder.close():
                self._deliver(att, piece)
            where = f"AttachmentEncoded/Attachment[{att.index + 1}]"
            if not att.b64.padded_tail:
                self._warnings.append(FieldWarning(f"{where}/ContentTransferEncoded", "base64 without its final padding"))
            for what in att.decoder.warnings:
                self._warnings.append(FieldWarning(f"{where}/ContentTransferEncoded", what))
            self._pending_info[att.index] = (
                att.size,
                att.decoder.wrapper,
                att.sha.digest(),
                att.head,
            )
        element = node.freeze()
        if not self._stack:
            self._root = element
            return
        parent = self._stack[-1]
        parent.children.append(element)
        depth = len(self._stack)
        if element.ns != EDXML_NS:
            return
        if depth == 1 and element.name == "edXMLEnvelope":
            partial = Element(parent.ns, parent.name, "", tuple(parent.children), parent.attrs, parent.prefix)
            self._header = Package.from_tree(partial, complete=False)
            if len(self._header.edoc.references if self._header.edoc else ()) > self._limits.max_attachments:
                raise EdxmlLimitError(f"the manifest lists more than {self._limits.max_attachments} attachments")
            self._events.append(HeaderRead(self._header))
        elif depth == 3 and element.name == "AttachmentName" and self._in_attachment():
            name = element.text.strip()
            why = unsafe_name_reason(name, allow_dirs=False)
            if why is not None:
                raise EdxmlUnsafeNameError(f"AttachmentName {name[:80]!r} has {why}")
        elif depth == 2 and element.name == "Attachment" and parent.is_("AttachmentEncoded"):
            self._end_attachment(element)

    def _end_attachment(self, element: Element) -> None:
        index = self._att_index
        facts = self._pending_info.pop(index, None)
        if facts is None:
            raise EdxmlManifestError(f"Attachment {index + 1} has no ContentTransferEncoded")
        size, wrapper, digest, head = facts
        content_id, name, declared, description = _meta(element.children)
        if self._header is not None and self._header.edoc is not None:
            refs = {r.content_id for r in self._header.edoc.references}
            if content_id not in refs:
                raise EdxmlManifestError(f"Attachment {content_id!r} is not listed in the manifest")
        info = AttachmentInfo(
            index=index,
            content_id=content_id,
            name=name,
            declared_type=declared,
            description=description,
            size=size,
            sha256=digest,
            wrapper=wrapper,
            media_type=guess_media_type(name, head, declared),
        )
        self._att_infos.append(info)
        self._att_index += 1
        self._events.append(AttachmentEnded(index, info))


def _meta(children: list[Element] | tuple[Element, ...]) -> tuple[str, str, str, str]:
    """(content id without cid:, AttachmentName, ContentType, Description) from an Attachment's children."""
    values = {"ContentId": "", "AttachmentName": "", "ContentType": "", "Description": ""}
    for c in children:
        if c.ns == EDXML_NS and c.name in values and not values[c.name]:
            values[c.name] = c.text.strip()
    return strip_cid(values["ContentId"]), values["AttachmentName"], values["ContentType"], values["Description"]


def read_package(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Package, list[bytes]]:
    """Read a whole package held in memory (tests, small packages): the package and each attachment's bytes."""
    reader = Reader(limits)
    files: list[bytearray] = []
    package: Package | None = None
    for event in reader.feed(data) + reader.close():
        if isinstance(event, AttachmentStarted):
            files.append(bytearray())
        elif isinstance(event, AttachmentData):
            files[event.index] += event.data
        elif isinstance(event, PackageRead):
            package = event.package
    assert package is not None
    return package, [bytes(f) for f in files]
