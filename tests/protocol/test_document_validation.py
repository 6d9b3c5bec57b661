"""One set of manifest rules for both ends: what a sender can build, its recipient can decode, and nothing else.

A document whose manifest the recipient refuses (``../../etc/passwd`` as a
file name, an empty media type, a 40-character number) used to be accepted
at submit and then retried for 30 days. The rules now live in one place
(``protocol/document.py``) and run when a ``FileEntry`` or ``DocumentMeta``
is built, which is also how the decoder builds them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor
from protocol.document import DocumentMeta, FileEntry, check_attachments
from protocol.errors import DecodeError, SchemaError
from protocol.ids import Digest

SHA = Digest.of(b"x")
BAD_NAMES = [
    "",
    ".",
    "..",
    "../../etc/passwd",
    "a/b",
    "a\\b",
    "nul\x00.txt",
    "bell\x07.txt",
    "line\nbreak.txt",
    "tab\t.txt",
    "del\x7f.txt",
    "c1\x85.txt",
    "invoice\u202efdp.exe",  # right-to-left override: shows as "invoiceexe.pdf"
    "x" * 256,
    "ữ" * 86,  # 86 characters but 258 bytes: no file system takes that name
]
GOOD_NAMES = ["công văn số 12.pdf", "a..b.txt", ".hidden", "x" * 255, "ữ" * 85, "Phụ lục (kèm theo).docx"]
BAD_TYPES = [
    "",
    "text",
    "text/",
    "/plain",
    "text/plain/x",
    "te xt/plain",
    "text/pla in",
    "text/plain\x00",
    "t" * 120 + "/" + "p" * 7,
]
GOOD_TYPES = ["application/pdf", "t/p", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
              "text/plain; charset=utf-8", "image/svg+xml", "application/octet-stream"]  # fmt: skip


def manifest_with(name: str, mime: str) -> bytes:
    m = DocumentMeta(subject="Về việc thử nghiệm").to_cbor()
    m["files"] = [{"name": name, "mime": mime, "size": 1, "sha256": bytes(SHA)}]
    return cbor.encode(m)


def builds(name: str, mime: str) -> bool:
    try:
        FileEntry(name, mime, 1, SHA)
        check_attachments([(name, mime)])
    except SchemaError:
        return False
    return True


def decodes(name: str, mime: str) -> bool:
    try:
        DocumentMeta.decode(manifest_with(name, mime))
    except DecodeError:
        return False
    return True


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_file_names_are_refused_when_built_and_when_decoded(name: str) -> None:
    with pytest.raises(SchemaError, match="file name"):
        FileEntry(name, "text/plain", 1, SHA)
    with pytest.raises(SchemaError, match="file name"):
        check_attachments([(name, "text/plain")])
    assert not decodes(name, "text/plain")


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_file_names_pass_both_ways(name: str) -> None:
    assert builds(name, "text/plain") and decodes(name, "text/plain")


@pytest.mark.parametrize("mime", BAD_TYPES)
def test_bad_media_types_are_refused_when_built_and_when_decoded(mime: str) -> None:
    with pytest.raises(SchemaError, match="media type"):
        FileEntry("a.txt", mime, 1, SHA)
    assert not decodes("a.txt", mime)


@pytest.mark.parametrize("mime", GOOD_TYPES)
def test_good_media_types_pass_both_ways(mime: str) -> None:
    assert builds("a.txt", mime) and decodes("a.txt", mime)


@given(st.text(max_size=300), st.sampled_from(["text/plain", "", "a/b", "x/y; q=1"]) | st.text(max_size=40))
def test_a_sender_builds_exactly_what_a_recipient_decodes(name: str, mime: str) -> None:
    assert builds(name, mime) == decodes(name, mime), (name, mime)


def test_duplicate_names_are_refused_before_any_file_is_read() -> None:
    with pytest.raises(SchemaError, match="same name"):
        check_attachments([("a.pdf", "application/pdf"), ("a.pdf", "application/pdf")])


@pytest.mark.parametrize(
    ("field", "value"),
    [("number", "1" * 33), ("notation", "K" * 65), ("doc_type", "t" * 129), ("place", "p" * 129),
     ("signer", "s" * 129), ("signer_title", "t" * 129), ("subject", "s" * 2001)],
)  # fmt: skip
def test_text_fields_longer_than_the_recipient_decodes_are_refused_when_built(field: str, value: str) -> None:
    with pytest.raises(SchemaError, match="longer than"):
        DocumentMeta(**{"subject": "Về việc thử nghiệm", field: value})  # type: ignore[arg-type]
    fine: dict[str, Any] = {"subject": "Về việc thử nghiệm", field: value[:-1]}
    assert DocumentMeta.decode(DocumentMeta(**fine).encode()) == DocumentMeta(**fine)
