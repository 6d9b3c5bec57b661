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


def read_in_pieces(data: bytes, cuts: list[int]) -> tuple[Package, list[bytes]]:
    reader = Reader()
    files: dict[int, bytearray] = {}
    package = None
    bounds = [0, *sorted(set(c % (len(data) + 1) for c in cuts)), len(data)]
    events = []
    for a, b in itertools.pairwise(bounds):
        events += reader.feed(data[a:b])
    events += reader.close()
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
def test_reader_fed_large_pieces_keeps_text_in_bounded_pieces() -> None:
    """One feed of a whole 8 MB package: character data still arrives in pieces (pyexpat hands expat 1 MiB at a time)."""
    size = 6 * MB
    data = b"".join(write_package(big_package(size), [lambda: big_file(size)]))
    reader = Reader()
    pieces = [e for e in reader.feed(data) + reader.close() if isinstance(e, AttachmentData)]
    assert sum(len(p.data) for p in pieces) == size
    assert max(len(p.data) for p in pieces) <= (1 << 20) * 3 // 4 + 3
