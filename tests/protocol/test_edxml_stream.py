"""The reader as a stream: any split of the bytes gives the same result, hostile bytes only typed errors, memory stays flat."""

from __future__ import annotations

import hashlib
import itertools
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import errors
from protocol.edxml import (
    AttachmentData,
    AttachmentEnded,
    EdocFields,
    FileSpec,
    Package,
    PackageRead,
    Reader,
    ZipMode,
    build_edoc,
    read_package,
    write_package,
)
from tests.vectors.edxml import generate as gen

CORPUS = {name: data for name, data in gen.corpus().items()}


def read_in_pieces(data: bytes, cuts: list[int], reader: Reader | None = None) -> tuple[Package, list[bytes]]:
    """Feed ``data`` cut at ``cuts`` (taken modulo its length); the package and its files from the events."""
    reader = reader or Reader()
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    events = []
    for a, b in itertools.pairwise(bounds):
        events += reader.feed(data[a:b])
    events += reader.close()
    files: dict[int, bytearray] = {}
    package = None
    for e in events:
        if isinstance(e, AttachmentData):
            files.setdefault(e.index, bytearray()).extend(e.data)
        elif isinstance(e, AttachmentEnded):
            files.setdefault(e.index, bytearray())
        elif isinstance(e, PackageRead):
            package = e.package
    assert package is not None
    return package, [bytes(files[i]) for i in sorted(files)]


@pytest.mark.parametrize("name", ["vnpt-zipped", "bkav", "dotnet", "lgsp", "containers", "status-13"])
def test_one_byte_at_a_time(name: str) -> None:
    data = CORPUS[name]
    assert read_in_pieces(data, list(range(len(data)))) == read_package(data)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CORPUS)), cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=40))
def test_any_split_gives_the_same_package(name: str, cuts: list[int]) -> None:
    data = CORPUS[name]
    assert read_in_pieces(data, cuts) == read_package(data)


def only_typed_errors(data: bytes) -> None:
    try:
        read_package(data)
    except errors.RemoteError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes) -> None:
    only_typed_errors(data)


@settings(max_examples=300)
@given(
    name=st.sampled_from(sorted(CORPUS)),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8),
)
def test_mutated_packages_raise_only_typed_errors(name: str, edits: list[tuple[int, int]]) -> None:
    data = bytearray(CORPUS[name])
    for pos, value in edits:
        data[pos % len(data)] = value
    only_typed_errors(bytes(data))


@settings(max_examples=200)
@given(
    name=st.sampled_from(["vnpt-zipped", "containers"]),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=4),
)
def test_mutated_zips_raise_only_typed_errors(name: str, edits: list[tuple[int, int]]) -> None:
    """Mutations land inside the attachment bytes (before base64), where the zip walk has to cope."""
    pkg, files = read_package(CORPUS[name])
    for i, f in enumerate(files):
        blob = bytearray(gen.zip_files([(f"{gen.WRAP_UUID}.pdf", f)]) if not pkg.attachments[i].name.endswith("zip") else f)
        for pos, value in edits:
            blob[pos % len(blob)] = value
        only_typed_errors(gen.edoc_with([("a.pdf", "application/zip", bytes(blob))]))


# --- memory ---------------------------------------------------------------------------------

MB = 1 << 20
BLOCK = gen.payload("block", 64 << 10)  # 64 KiB that do not compress (repeats are 64 KiB apart, past deflate's window)


def big_file(size: int) -> Iterator[bytes]:
    for i in range(0, size, len(BLOCK)):
        yield BLOCK[: min(len(BLOCK), size - i)]


def big_package(size: int) -> Package:
    fields = EdocFields(sender="000.00.00.G22", recipients=("000.00.00.H29",), subject="Lớn", document_id="big-1")
    return build_edoc(fields, names=lambda c: c, files=[FileSpec("lon.pdf", "application/pdf")])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", [ZipMode.RAW, ZipMode.ZIP])
def test_a_20_mb_attachment_streams_through_writer_and_reader_in_flat_memory(mode: ZipMode) -> None:
    size = 20 * MB
    package = big_package(size)
    expected = hashlib.sha256()
    for chunk in big_file(size):
        expected.update(chunk)
    tracemalloc.start()
    try:
        reader = Reader()
        got = hashlib.sha256()
        n = 0
        xml_bytes = 0
        final = None
        pieces = write_package(package, [lambda: big_file(size)], zip=mode, at_ms=gen.AT, rng=lambda k: bytes(k))
        for piece in pieces:
            xml_bytes += len(piece)
            for e in reader.feed(piece):
                if isinstance(e, AttachmentData):
                    got.update(e.data)
                    n += len(e.data)
        for e in reader.close():
            if isinstance(e, PackageRead):
                final = e.package
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == size and got.digest() == expected.digest()
    assert xml_bytes > size * 4 // 3  # the package really carried the bytes as base64
    assert final is not None and final.attachments[0].unwrapped is (mode is ZipMode.ZIP)
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB for a {size // MB} MB attachment"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fast_lane", [True, False])
def test_reader_fed_large_pieces_keeps_text_in_bounded_pieces(fast_lane: bool) -> None:
    """One feed of a whole 8 MB package: the attachment still arrives in pieces.

    Through expat, pyexpat hands expat 1 MiB at a time; the lane steps 64 KiB.
    """
    size = 6 * MB
    data = b"".join(write_package(big_package(size), [lambda: big_file(size)]))
    reader = Reader(fast_lane=fast_lane)
    pieces = [e for e in reader.feed(data) + reader.close() if isinstance(e, AttachmentData)]
    assert sum(len(p.data) for p in pieces) == size
    limit = (64 << 10) if fast_lane else (1 << 20)
    assert max(len(p.data) for p in pieces) <= limit * 3 // 4 + 3


# --- the fast lane against expat's path ---------------------------------------------------


def outcome(data: bytes, cuts: list[int], *, fast_lane: bool) -> tuple[Package, list[bytes]] | str:
    """The package and files read with or without the fast lane, or "error" for a typed error."""
    try:
        return read_in_pieces(data, cuts, Reader(fast_lane=fast_lane))
    except errors.RemoteError:
        return "error"


ALL_INPUTS = {**CORPUS, **{f"hostile-{k}": v for k, (v, _) in gen.hostile().items()}}


@pytest.mark.parametrize("name", sorted(ALL_INPUTS))
def test_fast_lane_agrees_with_expat(name: str) -> None:
    data = ALL_INPUTS[name]
    for cuts in ([], list(range(0, len(data), 7)), list(range(0, len(data), 4096))):
        assert outcome(data, cuts, fast_lane=True) == outcome(data, cuts, fast_lane=False), cuts[:3]


@settings(max_examples=300)
@given(
    name=st.sampled_from(sorted(CORPUS)),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.sampled_from(b"<>&;#/=-x \r\n\x00\xc3ABC")), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12),
)
def test_fast_lane_agrees_with_expat_on_mutated_input(name: str, edits: list[tuple[int, int]], cuts: list[int]) -> None:
    """Mutations aimed at what the lane looks for ('<', '&', '>') around the base64."""
    data = bytearray(CORPUS[name])
    starts = [i for i in range(len(data)) if data.startswith(b"ContentTransferEncoded", i)] or [0]
    for pos, value in edits:
        at = starts[pos % len(starts)] + pos % 64
        data[at % len(data)] = value
    a = outcome(bytes(data), cuts, fast_lane=True)
    b = outcome(bytes(data), cuts, fast_lane=False)
    assert a == b


def test_fast_lane_handles_comments_cdata_and_references_inside_the_base64() -> None:
    payload = gen.pdf("lane", 900)
    text = gen.b64(payload, 60)
    parts = [text[:100], "<!-- a comment -->", text[100:200], "&#13;&#10;", text[200:300]]
    parts += ["<![CDATA[", text[300:400], "]]>", text[400:]]
    data = gen.edoc_with([("a.pdf", "application/pdf", payload)]).replace(gen.b64(payload).encode(), "".join(parts).encode())
    for fast in (True, False):
        result = outcome(data, list(range(0, len(data), 13)), fast_lane=fast)
        assert result != "error" and result[1] == [payload]


def test_utf16_packages_are_read_through_expat() -> None:
    data = gen.corpus()["lgsp"].decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    pkg, files = read_package(data)
    assert files == [gen.LGSP_FILE] and pkg == read_package(gen.corpus()["lgsp"])[0]


def test_an_unfinished_token_is_capped() -> None:
    reader = Reader()
    reader.feed(b'<edXML:edXML xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"><x a="')
    with pytest.raises(errors.EdxmlLimitError, match="without a complete XML token"):
        for _ in range(100):
            reader.feed(b"y" * (64 << 10))
    reader = Reader()
    reader.feed(b'<edXML:edXML xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"><!--')
    with pytest.raises(errors.EdxmlLimitError):
        for _ in range(100):
            reader.feed(b"z" * (64 << 10))
    with pytest.raises(errors.EdxmlLimitError):  # and the reader stays failed
        reader.feed(b"-->")
