"""carry.differences: what simnet's verdict uses to say an exported package is the one that went in."""

from __future__ import annotations

import dataclasses

from protocol.edxml import ZipMode, read_package, with_trace, write_bytes
from protocol.edxml.carry import differences
from tests.vectors.edxml import generate as gen

G22, H29 = "000.00.00.G22", "000.00.00.H29"


def exported(data: bytes, zip_mode: ZipMode = ZipMode.AS_RECEIVED) -> bytes:
    """As a recipient's node writes it: the sending node's hop and its own appended."""
    package, files = read_package(data)
    hopped = with_trace(with_trace(package, G22, gen.AT), H29, gen.AT + 1)
    return write_bytes(hopped, files, zip=zip_mode, at_ms=gen.AT, rng=lambda n: b"\0" * n)


def test_a_whole_export_has_no_differences_and_each_kind_of_change_is_named() -> None:
    data = (gen.HERE / "corpus" / "vnpt-zipped.edxml").read_bytes()
    sent, _ = read_package(data)
    got, _ = read_package(exported(data))
    assert differences(sent, got, [G22, H29]) == []
    assert differences(sent, got, [G22]) == [f"trace_headers: added ['{G22}', '{H29}'], expected ['{G22}']"]
    unzipped, _ = read_package(exported(data, ZipMode.RAW))
    diffs = differences(sent, unzipped, [G22, H29])  # the zip wrapper is gone, and the declared type changed with it
    assert [d.split(":")[0] for d in diffs] == ["references", "attachments (name, sha256, zip wrapper)"]
    assert sent.edoc is not None
    other = dataclasses.replace(sent, edoc=dataclasses.replace(sent.edoc, subject="Khác"))
    assert [d.split(":")[0] for d in differences(other, got, [G22, H29])] == ["subject"]
    status, _ = read_package((gen.HERE / "corpus" / "status-03.edxml").read_bytes())
    assert differences(sent, status, [G22, H29]) == ["kind: sent edoc, received status"]
