"""``truc edxml`` against real daemons over their IPC sockets: packages in, packages out, statuses back."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.client import Client
from cli.main import cli
from protocol.edxml import EdocFields, FileSpec, ZipMode, build_edoc, read_package, write_bytes
from tests.procs import Daemon, provision, running, wait_for
from tests.vectors.edxml import generate as gen

pytestmark = pytest.mark.slow
G22, H01, H29 = "000.00.00.G22", "000.00.00.H01", "000.00.00.H29"
CORPUS = gen.HERE / "corpus"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    homes = provision(tmp_path_factory.mktemp("edxml"), {"g22": [G22], "h01": [H01], "h29": [H29]})
    with running(homes) as daemons:
        yield daemons


def truc(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(truc(*args, "--json").output)


def in_inbox(d: Daemon, code: str, doc: str) -> bool:
    return any(i["id"] == doc for i in d.call("inbox.list", code=code, limit=1000)["items"])  # type: ignore[index]


def test_check_reads_packages_without_a_node_one_line_each_and_exit_1_if_any_is_refused(tmp_path: Path) -> None:
    good = [str(CORPUS / "vnpt-zipped.edxml"), str(CORPUS / "status-03.edxml")]
    r = truc("edxml", "check", *good)
    lines = r.output.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{good[0]}: ok edoc from {G22} to {H29},{H01} DocumentId ")
    assert "7816-VPCP-TTĐT.pdf" in lines[0] and "zipped" in lines[0]
    assert lines[1].startswith(f"{good[1]}: ok status 03 from {H29} to {G22}")
    [s] = as_json("edxml", "check", good[0])
    assert s["ok"] and s["kind"] == "edoc" and s["to"] == [H29, H01]
    assert s["attachments"][0]["zipped"] and s["attachments"][0]["type"] == "application/pdf"
    hostile = str(gen.HERE / "hostile" / "xxe-file.edxml")
    missing = str(tmp_path / "absent.edxml")
    r = truc("edxml", "check", good[0], hostile, missing, code=1)
    lines = r.output.splitlines()
    assert len(lines) == 3 and ": ok edoc" in lines[0] and "Traceback" not in r.output
    assert lines[1].startswith(f"{hostile}: refused edxml_forbidden: ") and "DOCTYPE" in lines[1]
    assert lines[2].startswith(f"{missing}: refused file: cannot read it")


def test_a_vnpt_package_crosses_and_comes_back_out_unchanged_but_for_one_trace_header(
    nodes: dict[str, Daemon], tmp_path: Path
) -> None:
    g, h29, h01 = (str(nodes[n].home) for n in ("g22", "h29", "h01"))
    sent = as_json("edxml", "send", str(CORPUS / "vnpt-zipped.edxml"), "--home", g)
    assert sent["kind"] == "edoc" and not sent["duplicate"]
    assert as_json("edxml", "send", str(CORPUS / "vnpt-zipped.edxml"), "--home", g)["id"] == sent["id"]
    wait_for(lambda: in_inbox(nodes["h29"], H29, sent["id"]) and in_inbox(nodes["h01"], H01, sent["id"]), 60, "delivery")
    original, files = read_package((CORPUS / "vnpt-zipped.edxml").read_bytes())
    for home, code in ((h29, H29), (h01, H01)):
        out = tmp_path / f"{code}.edxml"
        r = as_json("edxml", "export", sent["id"], "-o", str(out), "--home", home)
        assert r["document_id"] == original.edoc.document_id  # type: ignore[union-attr]
        assert hashlib.sha256(out.read_bytes()).hexdigest() == r["sha256"]
        package, out_files = read_package(out.read_bytes())
        assert out_files == files and package.attachments[0].wrapper == original.attachments[0].wrapper
        assert [t.organ_id for t in package.edoc.trace_headers][-2:] == [G22, code]  # type: ignore[union-attr]
    item = nodes["h29"].call("inbox.list", code=H29)["items"][0]  # type: ignore[index]
    assert (item["document_id"], item["number"]) == (original.edoc.document_id, "7816")  # type: ignore[union-attr]
    row = next(line for line in truc("inbox", "--home", h29).output.splitlines() if line.startswith(sent["id"][:12]))
    assert "7816/VPCP-TTĐT" in row
    assert f"edXML DocumentId {original.edoc.document_id}" in truc("track", sent["id"], "--home", h29).output  # type: ignore[union-attr]
    # The sender's node cannot open what it sent: not a recipient (exit 1).
    r = truc("edxml", "export", sent["id"], "-o", str(tmp_path / "x.edxml"), "--home", g, code=1)
    assert "sender's own document system" in r.output
    assert not (tmp_path / "x.edxml").exists()


def test_a_large_package_streams_in_and_out(nodes: dict[str, Daemon], tmp_path: Path) -> None:
    """7 MiB of attachment: the package is streamed as upload frames, the export as chunks, both checked."""
    data = os.urandom(7 << 20)
    fields = EdocFields(sender=G22, recipients=(H29,), subject="Hồ sơ lớn", number="88", notation="VPCP-HS", date="2026-11-30")
    package = build_edoc(fields, names=lambda c: "", files=[FileSpec("ho-so.pdf", "application/pdf")])
    path = tmp_path / "big.edxml"
    path.write_bytes(write_bytes(package, [data], zip=ZipMode.ZIP, at_ms=gen.AT, rng=os.urandom))
    sent = as_json("edxml", "send", str(path), "--home", str(nodes["g22"].home))
    wait_for(lambda: in_inbox(nodes["h29"], H29, sent["id"]), 60, "delivery")
    out = tmp_path / "out.edxml"
    with Client(nodes["h29"].home / "truc.sock") as c:
        r = c.edxml_export(sent["id"], out, zip="raw")
    assert r["size"] == out.stat().st_size > 7 << 20
    assert read_package(out.read_bytes())[1] == [data]


def test_status_packages_go_back_to_the_senders_software(nodes: dict[str, Daemon], tmp_path: Path) -> None:
    g, h29 = str(nodes["g22"].home), str(nodes["h29"].home)
    doc = as_json("edxml", "send", str(CORPUS / "containers.edxml"), "--home", g)["id"]
    wait_for(lambda: in_inbox(nodes["h29"], H29, doc), 60, "delivery")
    one = as_json("edxml", "send", str(CORPUS / "status-01.edxml"), "--home", h29)
    assert one["duplicate"] and one["doc"] == doc  # the node sent its own 01 on arrival
    three = as_json("edxml", "send", str(CORPUS / "status-03.edxml"), "--home", h29)
    assert three["kind"] == "status" and three["code"] == "03" and not three["duplicate"]

    def codes() -> list[str]:
        return [s["code"] for s in as_json("edxml", "statuses", doc, "--home", g)]

    wait_for(lambda: codes() == ["01", "03"], 60, "statuses back at the sender")
    listed = as_json("edxml", "statuses", doc, "-o", str(tmp_path / "st"), "--home", g)
    for s in listed:
        package, _ = read_package(Path(s["path"]).read_bytes())
        assert package.status is not None and package.status.sender.organ_id == H29
        assert package.status.response_for.document_id == "000.00.00.G22,2026/11/22,15/VPCP-KSTT"
    assert "Đã vào sổ" in (tmp_path / "st" / f"02-status-03-{three['id'][:12]}.edxml").read_text("utf-8")
    # The form of the issue: export --statuses writes one file per package, numbered in order.
    out = tmp_path / "export-st"
    r = truc("edxml", "export", doc, "--as", G22, "--statuses", "--out", str(out), "--home", g)
    files = sorted(p.name for p in out.iterdir())
    assert [f[:12] for f in files] == ["01-status-01", "02-status-03"] and str(out) in r.output
    r = truc("edxml", "export", doc, "--as", G22, "--statuses", "--out", str(out / files[0]), "--home", g, code=2)
    assert "is not a directory" in r.output
