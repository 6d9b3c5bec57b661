from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.body import manifest_prefix
from protocol.document import (
    BusinessType,
    DocumentMeta,
    FileBytes,
    FileDone,
    FileEntry,
    ManifestRead,
    PlaintextReader,
    StatusNote,
    Urgency,
)
from protocol.errors import DecodeError, FrameError, SchemaError, TooLargeError
from protocol.framing import FrameDecoder, frame
from protocol.ids import Digest


def test_frames_fed_one_byte_at_a_time() -> None:
    payloads = [b"", b"a", b"hello" * 100]
    wire = b"".join(frame(p, max_bytes=1000) for p in payloads)
    dec = FrameDecoder(max_bytes=1000)
    got = []
    for i in range(len(wire)):
        dec.feed(wire[i : i + 1])
        while (f := dec.next_frame()) is not None:
            got.append(f)
    assert got == payloads
    dec.close()


def test_oversize_and_truncated_frames() -> None:
    dec = FrameDecoder(max_bytes=10)
    dec.feed(b"\x00\x00\x00\x0b")
    with pytest.raises(TooLargeError):
        dec.next_frame()
    dec = FrameDecoder(max_bytes=10)
    dec.feed(b"\x00\x00\x00\x05ab")
    assert dec.next_frame() is None
    with pytest.raises(FrameError):
        dec.close()
    with pytest.raises(TooLargeError):
        frame(b"x" * 11, max_bytes=10)


def meta(**kw: object) -> DocumentMeta:
    base: dict[str, object] = {
        "subject": "Về việc triển khai trục liên thông văn bản quốc gia",
        "number": "123",
        "notation": "VPCP-HC",
        "doc_type": "Công văn",
        "place": "Hà Nội",
        "date": "2026-11-20",
        "signer": "Nguyễn Văn A",
        "signer_title": "Chánh Văn phòng",
        "urgency": Urgency.URGENT,
        "due": "2026-12-01",
    }
    base.update(kw)
    return DocumentMeta(**base)  # type: ignore[arg-type]


def test_manifest_round_trip_keeps_vietnamese_text() -> None:
    m = meta(files=(FileEntry("công văn.pdf", "application/pdf", 3, Digest.of(b"abc")),))
    back = DocumentMeta.decode(m.encode())
    assert back == m
    assert back.subject.startswith("Về việc")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"subject": "  "}, "subject"),
        ({"date": "20/11/2026"}, "YYYY-MM-DD"),
        ({"business": BusinessType.REVOKE}, "must reference"),
        ({"ref": Digest.of(b"x")}, "does not reference"),
        ({"files": (FileEntry("a", "t/p", 1, Digest.of(b"1")), FileEntry("a", "t/p", 1, Digest.of(b"1")))}, "same name"),
    ],
)
def test_metadata_rules(kw: dict[str, object], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        meta(**kw)


def test_file_names_must_be_plain() -> None:
    bad = meta().to_cbor()
    bad["files"] = [{"name": "../etc/passwd", "mime": "text/plain", "size": 1, "sha256": b"\x00" * 32}]
    from protocol import cbor

    with pytest.raises(SchemaError, match="plain file name"):
        DocumentMeta.decode(cbor.encode(bad))


def test_status_note_round_trip() -> None:
    assert StatusNote.decode(StatusNote("Đã giao Vụ Tổng hợp xử lý").encode()).note == "Đã giao Vụ Tổng hợp xử lý"


def layout(files: list[bytes]) -> tuple[bytes, list[int]]:
    m = meta(files=tuple(FileEntry(f"f{i}", "application/octet-stream", len(f), Digest.of(f)) for i, f in enumerate(files)))
    manifest = m.encode()
    return manifest_prefix(manifest) + manifest + b"".join(files), [len(f) for f in files]


def read_all(plain: bytes, cuts: list[int]) -> tuple[bytes, list[bytes], list[int]]:
    reader = PlaintextReader()
    manifest = b""
    out: dict[int, bytes] = {}
    done: list[int] = []
    pos = 0
    pieces = []
    for c in [*sorted(cuts), len(plain)]:
        pieces.append(plain[pos:c])
        pos = max(pos, c)
    for piece in pieces:
        for ev in reader.feed(piece):
            if isinstance(ev, ManifestRead):
                manifest = ev.manifest
                reader.set_file_sizes([f.size for f in DocumentMeta.decode(manifest).files])
            elif isinstance(ev, FileBytes):
                out[ev.index] = out.get(ev.index, b"") + ev.data
            elif isinstance(ev, FileDone):
                done.append(ev.index)
    done.extend(ev.index for ev in reader.close())
    return manifest, [out.get(i, b"") for i in range(len(done))], done


@given(
    st.lists(st.binary(max_size=300), max_size=5),
    st.lists(st.integers(0, 3000), max_size=10),
)
def test_plaintext_reader_any_chunking(files: list[bytes], cuts: list[int]) -> None:
    plain, _ = layout(files)
    manifest, got, done = read_all(plain, [c % (len(plain) + 1) for c in cuts])
    assert got == files
    assert done == list(range(len(files)))
    assert hashlib.sha256(manifest).digest()


def test_plaintext_reader_refuses_extra_or_missing_bytes() -> None:
    plain, _ = layout([b"abc"])
    with pytest.raises(DecodeError, match="more bytes"):
        read_all(plain + b"x", [])
    with pytest.raises(DecodeError, match="inside file"):
        read_all(plain[:-1], [])
    with pytest.raises(DecodeError, match="inside the manifest"):
        read_all(plain[:6], [])
