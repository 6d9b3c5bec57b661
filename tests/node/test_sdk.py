"""The national SDK's HTTP calls across two real `truc run` daemons, with a client that signs as VNPT's SDK does.

G22's document system sends through its node; H29's polls its node, takes
the document, acknowledges it and sends statuses back; G22's sees them and
each recipient's state. Then every refusal: each answers the SDK's FAIL
envelope with its own ErrorCode, is counted, and stores nothing. The
attacks on the listener itself (slow headers and bodies, large headers,
too many connections) are in tests/node/test_sdk_hostile.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.edxml import EdocFields, FileSpec, ResponseFor, ZipMode, build_edoc, read_package, write_bytes
from protocol.edxml.build import StatusFields, build_status
from simnet.processes import free_port
from simnet.sdk_client import SdkClient
from tests.procs import Daemon, invoke, provision, running, wait_for
from tests.vectors.edxml import generate as gen

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
G22, H29, H01 = "000.00.00.G22", "000.00.00.H29", "000.00.00.H01"
TUNE = {'metrics_listen = ""': 'metrics_listen = "127.0.0.1:0"'}
SDK_TUNE = {"rate_per_s = 20": "rate_per_s = 50", "burst = 60": "burst = 200"}


class Sdk:
    """Each node's adapter URL and the secrets of the systems allowed on it."""

    def __init__(self, daemons: dict[str, Daemon], urls: dict[str, str], secrets: dict[tuple[str, str], str]) -> None:
        self.d = daemons
        self.urls = urls
        self.secrets = secrets

    def client(self, node: str, system: str, **kw: Any) -> SdkClient:
        return SdkClient(self.urls[node], system, self.secrets[(node, system)], **kw)


def add_system(home: Path, system: str, *agencies: str) -> str:
    args = ["sdk", "add-system", "--home", str(home), "--system-id", system]
    for a in agencies:
        args += ["--agency", a]
    return str(json.loads(invoke(*args, "--json"))["secret"])


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sdk]:
    homes = provision(tmp_path_factory.mktemp("sdk"), {"g22": [G22], "h29": [H29, "000.00.00.H01"]}, tune=TUNE)
    urls, secrets = {}, {}
    for name, home in homes.items():
        port = free_port()
        invoke("sdk", "enable", "--home", str(home), "--listen", f"127.0.0.1:{port}")
        cfg = home / "config.toml"
        text = cfg.read_text()
        for old, new in SDK_TUNE.items():
            text = text.replace(old, new)
        cfg.write_text(text)
        urls[name] = f"http://127.0.0.1:{port}/XrdAdapter/adapter"
    secrets["g22", "iofice"] = add_system(homes["g22"], "iofice", G22)
    secrets["g22", "flood"] = add_system(homes["g22"], "flood", G22)
    secrets["h29", "vpub"] = add_system(homes["h29"], "vpub", H29)
    secrets["h29", "h01sys"] = add_system(homes["h29"], "h01sys", H01)
    with running(homes) as daemons:
        yield Sdk(daemons, urls, secrets)


def package(subject: str, number: str, to: tuple[str, ...] = (H29,), size: int = 2000) -> bytes:
    fields = EdocFields(sender=G22, recipients=to, subject=subject, number=number, notation="VPCP-KSTT", date="2026-11-30")
    p = build_edoc(fields, names=lambda c: "", files=[FileSpec("cong-van.pdf", "application/pdf")])
    return write_bytes(p, [os.urandom(size)], zip=ZipMode.ZIP, at_ms=gen.AT, rng=os.urandom)


def status_package(received: bytes, code: int, note: str) -> bytes:
    edoc = read_package(received)[0].edoc
    assert edoc is not None
    rf = ResponseFor(edoc.sender.organ_id, f"{edoc.code_number}/{edoc.code_notation}", edoc.promulgation_date, edoc.document_id)
    st = build_status(StatusFields(H29, rf, code, int(time.time() * 1000), note), names=lambda c: "")
    return write_bytes(st, [], zip=ZipMode.RAW, at_ms=gen.AT, rng=os.urandom)


def listed(c: SdkClient, doc: str, messagetype: str = "edoc") -> bool:
    return any(r["docId"] == doc for r in c.received(messagetype))


# --- the whole flow ---------------------------------------------------------------------------


def test_send_list_get_ack_status_back_and_per_recipient_states(sdk: Sdk) -> None:
    g, h = sdk.client("g22", "iofice"), sdk.client("h29", "vpub")
    data = package("Về việc triển khai trục liên thông", "101")
    sent = g.send_edoc(data, G22, to=[H29])
    assert sent["status"] == "OK" and sent["ErrorCode"] == "0" and len(sent["DocId"]) == 64, sent
    doc = sent["DocId"]
    assert g.send_edoc(data, G22)["DocId"] == doc  # the SDK's retry is the same document

    wait_for(lambda: listed(h, doc), 60, "the document in H29's getReceivedEdocList")
    row = next(r for r in h.received() if r["docId"] == doc)
    assert (row["from"], row["to"], row["messageType"], row["serviceType"], row["status"]) == (
        G22,
        H29,
        "edoc",
        "eDoc",
        "initial",
    )
    assert h.count("edoc") >= 1

    got = h.get_edoc(doc)
    assert h.get_edoc(doc) == got == h.download(doc)  # byte-stable across calls and between getEdoc and downloadEdoc
    original, files = read_package(data)
    received, received_files = read_package(got)
    assert received_files == files and received.edoc is not None and original.edoc is not None
    assert received.edoc.document_id == original.edoc.document_id

    assert listed(h, doc)  # listed until acknowledged
    assert h.update_status(doc, "processing")["status"] == "OK" and listed(h, doc)
    assert h.update_status(doc, "done")["status"] == "OK"
    assert not listed(h, doc)
    assert h.update_status(doc, "done")["status"] == "OK"  # again: nothing changes

    three = h.send_edoc(status_package(got, 3, "Đã vào sổ công văn đến"), H29, messagetype="status")
    assert three["status"] == "OK", three

    def codes() -> list[str]:
        return [r["receiveStatus"] for r in g.sent(doc)]

    wait_for(lambda: codes() == ["03"], 60, "03 in G22's getSentEdocList")
    (row,) = g.sent(doc)
    assert (row["senderDocId"], row["fromCode"], row["toCode"], row["sendStatus"]) == (doc, G22, H29, "done")
    assert row["title"] == "Về việc triển khai trục liên thông" and row["notation"] == "101/VPCP-KSTT"
    assert row["receivedTime"] and row["receiveStatusDesc"].endswith("(03)")
    assert any(r["senderDocId"] == doc for r in g.sent())

    statuses = [r for r in g.received("status")]
    mine = [r for r in statuses if r["from"] == H29]
    assert len(mine) >= 2  # the node's own 01 on arrival, then the 03
    assert g.count("status") == len(statuses)
    by_code = {}
    for r in mine:
        st = read_package(g.get_edoc(r["docId"]))[0].status
        assert st is not None and st.response_for.document_id == original.edoc.document_id
        by_code[st.status_code] = r["docId"]
    assert {"01", "03"} <= set(by_code)
    assert g.update_status(by_code["03"], "done")["status"] == "OK"
    assert not listed(g, by_code["03"], "status") and listed(g, by_code["01"], "status")


def test_a_second_recipient_shows_its_own_state(sdk: Sdk) -> None:
    g = sdk.client("g22", "iofice")
    doc = g.send_edoc(package("Gửi hai nơi", "102", to=(H29, H01)), G22)["DocId"]
    wait_for(lambda: {r["toCode"]: r["sendStatus"] for r in g.sent(doc)} == {H29: "done", H01: "done"}, 60, "both delivered")
    h01 = sdk.client("h29", "h01sys")
    assert listed(h01, doc)
    vpub = sdk.client("h29", "vpub")
    assert vpub.update_status(doc, "done")["status"] == "OK"  # H29 takes it; H01's copy stays listed
    assert listed(h01, doc) and not listed(vpub, doc)


def test_the_acknowledgement_survives_kill_9(sdk: Sdk) -> None:
    g, h = sdk.client("g22", "iofice"), sdk.client("h29", "vpub")
    doc = g.send_edoc(package("Bền vững", "103"), G22)["DocId"]
    wait_for(lambda: listed(h, doc), 60, "delivery")
    assert h.update_status(doc, "done")["status"] == "OK"
    node = sdk.d["h29"]
    node.kill()
    node.start()
    assert not listed(h, doc)


def test_agency_lists_come_from_the_signed_directory(sdk: Sdk) -> None:
    c = sdk.client("g22", "iofice")
    plain = c.call("getAgenciesList")
    assert plain["status"] == "OK"
    rows = {r["code"]: r for r in plain["data"]}
    assert rows[G22]["oldCode"] == "G22" and set(rows[G22]) == {"id", "pid", "code", "name", "mail", "oldCode"}
    qd20 = {r["code"]: r for r in c.call("getAgenciesListQD20")["data"]}
    assert qd20[H29]["code102"] == "H29" and set(qd20[H29]) == {"id", "code", "name", "mail", "code102"}
    units = {r["code"]: r for r in c.call("getSynchronizeUnit")["data"]}
    assert units[H01]["centerCode"] == "H01" and units[H01]["version"] >= 1 and units[H01]["deleted"] is False
    for call in ("registerAgency", "deleteAgency"):
        r = c.call(call, AgencyCode=G22)
        assert r["status"] == "FAIL" and r["ErrorCode"] == "112" and "signed directory" in r["ErrorDesc"]


# --- refusals -------------------------------------------------------------------------------


def metrics(d: Daemon) -> str:
    line = next(ln for ln in d.log(tail=1_000_000).splitlines() if "metrics.listening" in ln)
    address = line.split('"address": "')[1].split('"')[0]
    return urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()


def docs_of(d: Daemon) -> int:
    return len(d.call("documents.list", role="sent", limit=100000))  # type: ignore[arg-type]


def fail(r: dict[str, Any], code: str) -> str:
    assert r["status"] == "FAIL" and r["ErrorCode"] == code, r
    return str(r["ErrorDesc"])


def test_each_refusal_has_its_own_error_code_and_stores_nothing(sdk: Sdk) -> None:
    g = sdk.client("g22", "iofice")
    before = docs_of(sdk.d["g22"])
    data = package("Bị từ chối", "104")

    wrong = SdkClient(sdk.urls["g22"], "iofice", "not-the-secret-at-all")
    assert "does not match" in fail(wrong.send_edoc(data, G22), "103")
    stranger = SdkClient(sdk.urls["g22"], "stranger", sdk.secrets["g22", "iofice"])
    fail(stranger.call("getReceivedEdocList", servicetype="eDoc", messagetype="edoc"), "102")
    late = SdkClient(sdk.urls["g22"], "iofice", sdk.secrets["g22", "iofice"], utc_offset_min=420 - 60)
    assert "from the node's clock" in fail(late.call("countReceiveEdoc", "GET"), "104")

    headers = g.signed({"servicetype": "eDoc", "messagetype": "edoc"})
    status, first, _ = g.raw("POST", "/getReceivedEdocList", headers)
    assert status == 200 and json.loads(first)["status"] == "OK"
    status, again, _ = g.raw("POST", "/getReceivedEdocList", headers)
    assert status == 401 and json.loads(again)["ErrorCode"] == "105"

    tampered = {**g.signed({"servicetype": "eDoc", "messagetype": "edoc"}), "XroadVnpt-messagetype": "status"}
    assert json.loads(g.raw("POST", "/getReceivedEdocList", tampered)[1])["ErrorCode"] == "103"
    unsigned = {"XroadVnpt-systemid": "iofice"}
    assert json.loads(g.raw("POST", "/getReceivedEdocList", unsigned)[1])["ErrorCode"] == "101"

    assert "acts for" in fail(g.send_edoc(data, H29), "106")  # from: an agency this system does not act for
    other = package("Giả mạo", "105")
    fake = other.replace(G22.encode(), H01.encode(), 1)  # the package's From is not the call's from
    assert read_package(fake)[0].edoc.sender.organ_id == H01  # type: ignore[union-attr]
    fail(g.send_edoc(fake, G22), "106")
    h = sdk.client("h29", "vpub")
    fail(h.call("getReceivedEdocList", servicetype="eDoc", messagetype="edoc", AgencyCode=H01), "106")

    fail(g.call("nonsense"), "111")
    fail(g.call("updateStatus", docid="00" * 32, status="done"), "202")
    fail(g.call("updateStatus", docid="00" * 32, status="maybe"), "109")
    fail(g.call("getEdoc", docId="not-an-id"), "202")
    fail(g.send_edoc(b"<not-edxml/>", G22), "201")

    # hash-file that is not the package's: refused after reading, before anything is kept
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file_doc"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    bad_hash = g.signed(
        {"from": G22, "servicetype": "eDoc", "messagetype": "edoc", "hash-file": "ab" * 32},
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert json.loads(g.raw("POST", "/sendEdoc", bad_hash, body)[1])["ErrorCode"] == "110"
    no_part = g.signed(
        {"from": G22, "servicetype": "eDoc", "messagetype": "edoc"}, content_type=f"multipart/form-data; boundary={boundary}"
    )
    other_part = body.replace(b'name="file_doc"', b'name="other"')
    assert "file_doc" in json.loads(g.raw("POST", "/sendEdoc", no_part, other_part)[1])["ErrorDesc"]
    broken = g.signed(
        {"from": G22, "servicetype": "eDoc", "messagetype": "edoc"}, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert json.loads(g.raw("POST", "/sendEdoc", broken, body[:-30])[1])["ErrorCode"] == "109"
    status_kind = g.send_edoc(data, G22, messagetype="status")  # the package is an edoc
    assert fail(status_kind, "201")

    assert docs_of(sdk.d["g22"]) == before
    log = sdk.d["g22"].log(tail=200_000)
    scraped = metrics(sdk.d["g22"])
    for reason in ("bad_signature", "unknown_system", "stale_timestamp", "replay", "foreign_agency", "hash_mismatch"):
        assert f'"reason": "{reason}"' in log, reason
        assert f'truc_sdk_refused{{reason="{reason}"}}' in scraped, reason


def test_a_hash_in_canonical_hex_is_accepted_too(sdk: Sdk) -> None:
    g = sdk.client("g22", "iofice")
    data = package("Băm chuẩn", "106")
    boundary = "xYz"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="file_doc"; filename="a.edxml"\r\n\r\n'.encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    headers = g.signed(
        {"from": G22, "servicetype": "eDoc", "messagetype": "edoc", "hash-file": hashlib.sha256(data).hexdigest()},
        content_type=f'multipart/form-data; boundary="{boundary}"',
    )
    status, answer, _ = g.raw("POST", "/sendEdoc", headers, body)
    assert status == 200 and json.loads(answer)["status"] == "OK", answer


def test_a_system_over_its_rate_is_refused_and_others_are_not(sdk: Sdk) -> None:
    flood = sdk.client("g22", "flood")
    codes = [flood.call("countReceiveEdoc", "GET")["ErrorCode"] for _ in range(260)]
    assert codes[0] == "0" and "107" in codes
    assert sdk.client("g22", "iofice").call("countReceiveEdoc", "GET")["status"] == "OK"


def test_a_system_reads_only_its_own_agencies_documents(sdk: Sdk) -> None:
    g = sdk.client("g22", "iofice")
    doc = g.send_edoc(package("Chỉ cho H01", "107", to=(H01,)), G22)["DocId"]
    h01 = sdk.client("h29", "h01sys")
    wait_for(lambda: listed(h01, doc), 60, "delivery to H01")
    h29 = sdk.client("h29", "vpub")
    assert not listed(h29, doc)
    fail(h29.call("getEdoc", docId=doc), "106")
    fail(h29.call("updateStatus", docid=doc, status="done"), "106")
    assert listed(h01, doc)
    assert base64.b64decode(h01.call("getEdoc", docId=doc)["data"]).startswith(b"<?xml")


def test_a_system_added_while_the_node_runs_is_allowed_after_a_restart(sdk: Sdk) -> None:
    node = sdk.d["g22"]
    secret = add_system(node.home, "late", G22)
    late = SdkClient(sdk.urls["g22"], "late", secret)
    fail(late.call("countReceiveEdoc", "GET"), "102")
    node.stop()
    node.start()
    assert late.call("countReceiveEdoc", "GET")["status"] == "OK"
