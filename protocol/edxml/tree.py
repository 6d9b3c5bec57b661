"""The lossless header tree: every element of a package except attachment bytes.

A received header is kept as a small generic tree so that every element,
unknown ones included, comes out again on export in its original order with
its namespace, attributes and text. Typed access for the fields Trục needs is
a view over this tree (:mod:`protocol.edxml.model`), never a second copy.

Prefixes are hints only: an element is its (namespace URI, local name); the
writer always spells the edXML namespace ``edXML:`` and reuses the received
prefix for foreign namespaces (xmldsig, SOAP, xlink). Equality ignores them,
so "read, write, read" compares equal whatever prefixes the producer chose.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
XMLDSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XML_NS = "http://www.w3.org/XML/1998/namespace"
XMLNS_NS = "http://www.w3.org/2000/xmlns/"
EDXML_PREFIX = "edXML"

# Element names of QCVN 102:2016 as real producers write them (EDXML.md §1-5).
# An element in no namespace with one of these names, inside an edXML root, is
# read as edXML: a producer that writes <AttachmentEncoded> without a
# namespace means the edXML one (the other reading would make it unknown and
# its attachments invisible).
KNOWN_NAMES = frozenset(
    [
        "edXML",
        "edXMLEnvelope",
        "edXMLHeader",
        "edXMLBody",
        "edXMLManifest",
        "Reference",
        "AttachmentEncoded",
        "Attachment",
        "ContentId",
        "ContentType",
        "Description",
        "AttachmentName",
        "ContentTransferEncoded",
        "MessageHeader",
        "From",
        "To",
        "OrganId",
        "OrganizationInCharge",
        "OrganName",
        "OrganAdd",
        "Email",
        "Telephone",
        "Fax",
        "Website",
        "DocumentId",
        "Code",
        "CodeNumber",
        "CodeNotation",
        "PromulgationInfo",
        "Place",
        "PromulgationDate",
        "DocumentType",
        "Type",
        "TypeDetail",
        "TypeName",
        "Subject",
        "Content",
        "SignerInfo",
        "Competence",
        "Position",
        "FullName",
        "DueDate",
        "ToPlaces",
        "OtherInfo",
        "Priority",
        "SphereOfPromulgation",
        "TyperNotation",
        "PromulgationAmount",
        "PageAmount",
        "Direction",
        "Appendixes",
        "Appendix",
        "ResponseFor",
        "SteeringType",
        "ResponseForTask",
        "TaskCode",
        "ApplicationType",
        "ReplyFors",
        "ReferenceCodes",
        "TraceHeaderList",
        "TraceHeader",
        "Timestamp",
        "Bussiness",
        "Business",
        "BussinessDocType",
        "BussinessDocReason",
        "Paper",
        "BussinessDocumentInfo",
        "DocumentInfo",
        "DocumentReceiver",
        "ReceiverList",
        "Receiver",
        "ReceiverType",
        "ReplacementInfoList",
        "ReplacementInfo",
        "OrganIdList",
        "StaffInfo",
        "Department",
        "Staff",
        "Mobile",
        "DepartmentId",
        "StaffId",
        "StatusCode",
        "Signature",
        "DigitalSignature",
    ]
)


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute; ``ns`` is "" for an unprefixed attribute (the usual case)."""

    ns: str
    name: str
    value: str
    prefix: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Element:
    """One XML element of the header: (namespace, local name), attributes, text, children.

    ``text`` is the element's character data. For an element with children it
    is kept only when it is not whitespace (edXML has no mixed content;
    indentation between elements is not content), and written before the
    children.
    """

    ns: str
    name: str
    text: str = ""
    children: tuple[Element, ...] = ()
    attrs: tuple[Attr, ...] = ()
    prefix: str = field(default="", compare=False)

    def is_(self, name: str, ns: str = EDXML_NS) -> bool:
        return self.name == name and self.ns == ns

    def child(self, *names: str) -> Element | None:
        """The first child in the edXML namespace with one of ``names`` (spelling variants), or None."""
        for c in self.children:
            if c.ns == EDXML_NS and c.name in names:
                return c
        return None

    def all(self, name: str) -> Iterator[Element]:
        """The children in the edXML namespace called ``name``, in order."""
        return (c for c in self.children if c.ns == EDXML_NS and c.name == name)

    def find(self, *path: str) -> Element | None:
        """Follow a path of edXML child names (first match at each step)."""
        node: Element | None = self
        for step in path:
            if node is None:
                return None
            node = node.child(step)
        return node

    def value(self, *path: str) -> str:
        """The stripped text at ``path``, or "" when the element is absent or empty."""
        node = self.find(*path)
        return node.text.strip() if node is not None else ""

    def attr(self, name: str, ns: str = "") -> str | None:
        for a in self.attrs:
            if a.name == name and a.ns == ns:
                return a.value
        return None

    def with_children(self, children: tuple[Element, ...]) -> Element:
        return replace(self, children=children)

    def walk(self) -> Iterator[Element]:
        """This element and every descendant, in document order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def edxml(name: str, text: str = "", children: tuple[Element, ...] | list[Element] = (), **attrs: str) -> Element:
    """An element in the edXML namespace (for builders and tests)."""
    return Element(
        EDXML_NS,
        name,
        text,
        tuple(children),
        tuple(Attr("", k, v) for k, v in attrs.items()),
        EDXML_PREFIX,
    )


def count(root: Element) -> int:
    return sum(1 for _ in root.walk())


def depth(root: Element) -> int:
    best = 0
    stack = [(root, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in node.children)
    return best
