"""Hard limits of the reader: what a package may not exceed (each breach is a typed error)."""

from __future__ import annotations

from dataclasses import dataclass, fields

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on everything a hostile package could inflate. Defaults fit every real package seen.

    The header (everything but attachment bytes) is small in practice: a few
    kB and a hundred elements. Attachments are streamed, so their caps are
    about disk and the recipient's safety, not memory.
    """

    max_depth: int = 32
    """Element nesting (the deepest real header is 8 levels)."""
    max_elements: int = 5_000
    """Elements in the whole package, attachment metadata included (not attachment bytes)."""
    max_attributes: int = 32
    """Attributes on one element (the SOAP-style TraceHeaderList has 4)."""
    max_namespaces: int = 64
    """Namespace declarations in the whole package."""
    max_name_chars: int = 256
    """Length of an element or attribute name, namespace URI included."""
    max_text_chars: int = 64 << 10
    """Character data of one header element or attribute value."""
    max_header_chars: int = 256 << 10
    """All character data outside attachment bytes (the header travels in Trục's encrypted manifest)."""
    max_attachments: int = 256
    """Attachments (and manifest references) in one package; Trục's manifest allows 256 files."""
    max_attachment_bytes: int = GiB
    """Decoded size of one attachment, before unwrapping (the base64 decodes to this)."""
    max_inflated_bytes: int = GiB
    """Total inflated size of the entries of one zip attachment (unwrapped or inspected)."""
    max_inflate_ratio: int = 100
    """Inflated size over compressed size of a zip attachment, checked once past ``ratio_grace_bytes``."""
    ratio_grace_bytes: int = 4 * MiB
    """Inflated bytes below which the ratio is not checked (small text files compress very well)."""
    max_token_bytes: int = 4 * MiB
    """Bytes expat may hold without completing a token (a start tag, a comment): it buffers an unfinished one whole."""
    max_zip_entries: int = 10_000
    """Entries of a zip attachment kept as is (a .docx has ~20)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"Limits.{f.name} must be positive")


DEFAULT_LIMITS = Limits()
