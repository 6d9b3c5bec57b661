"""``truc demo``: a local network of real node processes on 127.0.0.1, end to end.

Everything is real: an authority key and a signed directory made by the same
code as ``truc authority init`` / ``truc init`` / ``truc directory add``,
four ``truc run`` processes (libp2p over loopback, LevelDB stores, IPC
sockets), and this script acting as the agencies' document systems through
the IPC client. Every claim printed is checked; a failed check exits 1. One
check reads a store: while a node is stopped, the demo opens it to verify,
with identity/, the signature of a receipt that node sent.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from identity import sdk_systems
from identity.directory import load_chain, read_chain_file
from identity.home import Home
from identity.keys import load_authority_public
from identity.trust import Trust
from protocol.agency import AgencyCode, parse_agency_list
from protocol.edxml import (
    EdocFields,
    FileSpec,
    ResponseFor,
    StatusFields,
    ZipMode,
    build_edoc,
    build_status,
    read_package,
    write_bytes,
)
from protocol.envelope import Envelope, Kind, MessageHeader
from protocol.errors import TrucError
from protocol.ids import Digest
from protocol.status import StatusCode
from store.store import Store

from .processes import FAST_SYNC, NodeProcess, ProcessNetwork, free_port, wait_for
from .sdk_client import SdkClient

NETWORK = "truc-demo"
AGENCIES = ["000.00.00.G22", "000.00.00.H29", "000.00.00.H17", "000.00.00.H41"]  # verified codes of the 2019 list
SENDER = AGENCIES[0]
AGENCY_LIST = Path(__file__).resolve().parent / "data" / "agencies-level1.csv"


class DemoFailed(Exception):
    pass


class DemoNode:
    """An agency's node: its process, and what the story prints about it."""

    def __init__(self, code: str, name: str, node: NodeProcess, peer_id: str, port: int) -> None:
        self.code = code
        self.name = name
        self.node = node
        self.home = node.home
        self.peer_id = peer_id
        self.port = port

    @property
    def short(self) -> str:
        return AgencyCode.parse(self.code).short()

    def client(self) -> Any:
        return self.node.client()

    def call(self, method: str, **params: Any) -> Any:
        return self.node.call(method, **params)


class Demo:
    def __init__(self, root: Path, *, short: bool, echo: Callable[[str], None] = click.echo) -> None:
        self.root = root
        self.short = short
        self.echo = echo
        self.nodes: dict[str, DemoNode] = {}
        self.net: ProcessNetwork | None = None
        self.checks = 0

    # --- helpers -----------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.echo(text)

    def check(self, ok: bool, claim: str) -> None:
        if not ok:
            raise DemoFailed(claim)
        self.checks += 1

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        try:
            return wait_for(predicate, timeout, what)
        except TimeoutError:
            raise DemoFailed(f"{what}: not within {timeout:.0f} s") from None

    def submit(self, sender: DemoNode, to: list[DemoNode], subject: str, files: list[tuple[str, bytes]], **meta: Any) -> str:
        params = {"from": sender.code, "to": [n.code for n in to], "subject": subject, **meta}
        params["files"] = [{"name": name, "mime": _mime(name), "data": data} for name, data in files]
        return str(sender.call("submit", **params)["id"])

    def receipts(self, doc: str) -> dict[str, dict[str, Any]]:
        track = self.nodes[SENDER].call("document.track", id=doc)
        return {r["code"]: r for r in track["recipients"]}

    # --- the story -----------------------------------------------------------------------

    def run(self) -> None:
        self.setup()
        self.broadcast()
        self.status_flow()
        self.edxml_flow()
        self.sdk_flow()
        self.offline_recipient()
        self.crash_recipient()
        self.summary()

    def setup(self) -> None:
        names = {r.code: r.name for r in parse_agency_list(AGENCY_LIST.read_text("utf-8"))}
        self.say(f"Trục demo: {len(AGENCIES)} nodes on 127.0.0.1, working directory {self.root}")
        homes = {AgencyCode.parse(c).short().lower(): [c] for c in AGENCIES}
        self.net = ProcessNetwork(self.root, homes, network=NETWORK, names=names, tune=FAST_SYNC)
        for home_name, (code,) in homes.items():
            c = AgencyCode.parse(code)
            self.nodes[code] = DemoNode(
                code, names.get(c, code), self.net[home_name], self.net.peer_ids[home_name], self.net.ports[home_name]
            )
        self.say(f"  authority: network {NETWORK!r}, signed directory serial {self.net.serial} listing {len(AGENCIES)} agencies")
        self.sdk: dict[str, SdkClient] = {}
        for code in (SENDER, "000.00.00.H29"):  # their operators switch the SDK's HTTP calls on (truc sdk enable, add-system)
            home = self.nodes[code].home
            port = free_port()
            sdk_systems.enable(home, f"127.0.0.1:{port}")
            secret, _ = sdk_systems.add_system(
                home, f"vanban-{AgencyCode.parse(code).short().lower()}", [AgencyCode.parse(code)], os.urandom
            )
            url = f"http://127.0.0.1:{port}/XrdAdapter/adapter"
            self.sdk[code] = SdkClient(url, f"vanban-{AgencyCode.parse(code).short().lower()}", secret)
        self.net.start_all()
        for n in self.nodes.values():
            self.say(f"  node {n.short:4} {n.name:28} {n.peer_id[:20]}…  /ip4/127.0.0.1/tcp/{n.port}")
        self.say("  every node is connected to the 3 others (Noise-encrypted libp2p, members of the directory only)")

    def broadcast(self) -> None:
        g22 = self.nodes[SENDER]
        others = [n for c, n in self.nodes.items() if c != SENDER]
        attachment = os.urandom(2_000_000 if self.short else 12_000_000)
        letter = "Kính gửi: Ủy ban nhân dân các tỉnh, thành phố trực thuộc Trung ương\n".encode()
        self.say()
        self.say(
            f"1. {g22.short} sends a document with 2 attachments ({len(attachment) / 1e6:.0f} MB) "
            f"to {', '.join(n.short for n in others)}"
        )
        doc = self.submit(
            g22,
            others,
            "Về việc triển khai trục liên thông văn bản quốc gia",
            [("cong-van.txt", letter), ("phu-luc.bin", attachment)],
            number="1234",
            notation="VPCP-KSTT",
            type="Công văn",
            urgency=1,
            signer="Nguyễn Văn A",
        )
        tracked = sorted(self.receipts(doc))
        self.check(tracked == sorted(n.code for n in others), f"{g22.short} tracks the document for its 3 recipients")
        self.say(f"   document {doc[:12]}… accepted by {g22.short}, which tracks its delivery to each recipient")
        self.wait(lambda: all(r["state"] == "delivered" for r in self.receipts(doc).values()), 60, "receipts for the broadcast")
        for code, r in self.receipts(doc).items():
            (s01,) = [s for s in r["statuses"] if s["code"] == "01"]
            short = AgencyCode.parse(code).short()
            self.check(s01["author"] == code, f"the 01 receipt at {g22.short} is from {short} itself")
            self.say(f"   01 receipt from {short}, {s01['received_at'] - r['first_sent']} ms after sending")
        out = self.root / "received" / "h29"
        with self.nodes["000.00.00.H29"].client() as c:
            got = c.get_document(doc, out)
        self.check((out / "phu-luc.bin").read_bytes() == attachment, "H29 holds the exact attachment")
        self.say(
            f"   H29 opened it: {got['metadata']['notation']} '{got['metadata']['subject']}', "
            f"files verified by SHA-256 into {out}"
        )
        self.doc = doc

    def status_flow(self) -> None:
        h29 = self.nodes["000.00.00.H29"]
        self.say()
        self.say("2. H29 processes it; each status, with its note, appears in G22's tracking")
        for code, note in [
            ("03", "Đã vào sổ văn bản đến"),
            ("04", "Giao Sở Thông tin và Truyền thông"),
            ("05", "Đang xử lý"),
            ("06", "Đã hoàn thành"),
        ]:
            h29.call("status.send", id=self.doc, code=code, note=note)
        self.wait(
            lambda: [s["code"] for s in self.receipts(self.doc)[h29.code]["statuses"]] == ["01", "03", "04", "05", "06"],
            30,
            "status flow at G22",
        )
        for s in self.receipts(self.doc)[h29.code]["statuses"]:
            self.say(f"   {s['code']}  {s['note'] or '(receipt, sent by the node itself)'}")
        try:
            h29.call("status.send", id=self.doc, code="04")
            raise DemoFailed("an illegal status was accepted")
        except DemoFailed:
            raise
        except Exception as exc:
            self.say(f"   an illegal status is refused: {exc}")

    def edxml_flow(self) -> None:
        """The agencies' existing software: an edXML package in, unchanged, at one end; out, whole, at the others."""
        g22, h29, h17 = self.nodes[SENDER], self.nodes["000.00.00.H29"], self.nodes["000.00.00.H17"]
        self.say()
        self.say(
            f"3. {g22.short}'s existing software sends an edXML package (QCVN 102, attachment in VNPT's zip) "
            f"to {h29.short} and {h17.short}"
        )
        pdf = b"%PDF-1.7\n" + os.urandom(200_000)
        fields = EdocFields(
            sender=g22.code,
            recipients=(h29.code, h17.code),
            subject="Về việc liên thông văn bản điện tử theo QCVN 102:2016",
            number="2345",
            notation="VPCP-KSTT",
            type_name="Công văn",
            date=time.strftime("%Y-%m-%d"),
            signer="Nguyễn Văn A",
        )
        names = {n.code: n.name for n in self.nodes.values()}
        package = build_edoc(fields, names=lambda c: names.get(c, ""), files=[FileSpec("2345-VPCP-KSTT.pdf", "application/pdf")])
        data = write_bytes(package, [pdf], zip=ZipMode.ZIP, at_ms=int(time.time() * 1000), rng=os.urandom)
        with g22.client() as c:
            sent = c.edxml_submit(data)
            again = c.edxml_submit(data)
        self.check(again["duplicate"] and again["id"] == sent["id"], "the same package sent twice is one document")
        self.say(f"   DocumentId {sent['document_id']} is document {sent['id'][:12]}…; sent again, it stays one document")
        doc = sent["id"]
        self.wait(lambda: all(r["state"] == "delivered" for r in self.receipts(doc).values()), 60, "receipts for the package")
        for node in (h29, h17):
            out = self.root / "received" / f"{node.short.lower()}.edxml"
            with node.client() as c:
                c.edxml_export(doc, out)
            got, files = read_package(out.read_bytes())
            assert got.edoc is not None
            self.check(files == [pdf] and got.attachments[0].wrapper != "", f"{node.short} exports the package, PDF intact")
            self.check(
                [t.organ_id for t in got.edoc.trace_headers] == [g22.code, node.code],
                f"{node.short}'s package carries one TraceHeader per hop",
            )
            self.say(f"   {node.short}'s software gets it back as edXML ({out.stat().st_size} bytes), PDF still in VNPT's zip")
        answer = build_status(
            StatusFields(h29.code, ResponseFor(g22.code, "2345/VPCP-KSTT", "", sent["document_id"]), 3, int(time.time() * 1000)),
            names=lambda c: names.get(c, ""),
        )
        with h29.client() as c:
            c.edxml_submit(write_bytes(answer, [], zip=ZipMode.RAW))
        self.wait(
            lambda: [s["code"] for s in g22.call("edxml.statuses", id=doc)["statuses"] if s["from"] == h29.code] == ["01", "03"],
            30,
            "H29's status package at G22",
        )
        self.say(f"   {h29.short}'s software answers with a status package (03); {g22.short}'s software reads 01 and 03 back")

    def sdk_flow(self) -> None:
        """Software built on VNPT's SDK, its endpoint pointed at the node: sendEdoc in, the polling calls out."""
        g22, h29 = self.nodes[SENDER], self.nodes["000.00.00.H29"]
        sender, receiver = self.sdk[g22.code], self.sdk[h29.code]
        self.say()
        self.say(f"4. Software built on the national SDK, its endpoint URL pointed at its node: {g22.short} calls sendEdoc")
        fields = EdocFields(
            sender=g22.code,
            recipients=(h29.code,),
            subject="Về việc chuyển đổi phần mềm quản lý văn bản sang Trục",
            number="3456",
            notation="VPCP-KSTT",
            date=time.strftime("%Y-%m-%d"),
        )
        package = build_edoc(fields, names=lambda c: "", files=[FileSpec("3456-VPCP-KSTT.pdf", "application/pdf")])
        data = write_bytes(
            package, [b"%PDF-1.7\n" + os.urandom(50_000)], zip=ZipMode.ZIP, at_ms=int(time.time() * 1000), rng=os.urandom
        )
        sent = sender.send_edoc(data, g22.code, to=[h29.code])
        self.check(sent["status"] == "OK", f"sendEdoc answers OK: {sent}")
        doc = sent["DocId"]
        self.say(f"   sendEdoc (signed with the system's secret, HMAC-SHA256) answered DocId {doc[:12]}…")
        self.wait(lambda: any(r["docId"] == doc for r in receiver.received()), 60, "the document in H29's getReceivedEdocList")
        got = receiver.get_edoc(doc)
        self.check(
            got == receiver.get_edoc(doc) and read_package(got)[1] == read_package(data)[1], "getEdoc is the package, twice"
        )
        self.check(receiver.update_status(doc)["status"] == "OK", "updateStatus(done) answers OK")
        self.check(all(r["docId"] != doc for r in receiver.received()), "an acknowledged document leaves the list")
        self.say(
            f"   {h29.short}'s software polled getReceivedEdocList, took it with getEdoc ({len(got)} bytes of edXML) "
            "and updateStatus(done): it is off the list"
        )
        self.wait(lambda: [r["sendStatus"] for r in sender.sent(doc)] == ["done"], 30, "getSentEdocList at G22")
        self.say(
            f"   {g22.short}'s getSentEdocList: {h29.short} sendStatus done, receiveStatus {sender.sent(doc)[0]['receiveStatus']}"
        )

    def offline_recipient(self) -> None:
        g22, h41 = self.nodes[SENDER], self.nodes["000.00.00.H41"]
        n = 2 if self.short else 5
        self.say()
        self.say(f"5. {h41.short} stops (SIGTERM); {g22.short} sends it {n} documents meanwhile")
        took = h41.node.stop(signal.SIGTERM)
        assert h41.node.proc is not None
        self.check(h41.node.proc.returncode == 0, f"{h41.short} exited cleanly")
        self.say(f"   {h41.short} stopped cleanly in {took:.1f} s (exit {h41.node.proc.returncode})")
        self.verify_receipt(h41, self.doc)
        self.say(
            f"   its store holds the 01 receipt it sent for document 1: signed with {h41.short}'s key, "
            "verified against the signed directory"
        )
        docs = [self.submit(g22, [h41], f"Thông báo số {i + 1}", [("tb.txt", f"Thông báo {i + 1}".encode())]) for i in range(n)]
        self.wait(lambda: any(q["recipient"] == h41.code for q in g22.call("queues.list")), 20, "queued for H41")
        q = next(q for q in g22.call("queues.list") if q["recipient"] == h41.code)
        self.say(f"   G22's queue for {h41.short}: {q['pending']} pending, because {q['reason']}")
        h41.node.start()
        took = self.wait(lambda: all(self.receipts(d)[h41.code]["state"] == "delivered" for d in docs), 60, "catch-up of H41")
        inbox = h41.call("inbox.list")["items"]
        self.check(sorted(i["id"] for i in inbox if i["id"] in docs) == sorted(docs), "H41 got every document once")
        self.say(
            f"   {h41.short} restarted and caught up: {n}/{n} documents in its inbox, receipts back {took:.1f} s after restart"
        )

    def crash_recipient(self) -> None:
        g22, h17 = self.nodes[SENDER], self.nodes["000.00.00.H17"]
        n = 8 if self.short else 30
        self.say()
        self.say(f"6. {g22.short} sends {n} documents to {h17.short}; {h17.short} is killed with SIGKILL in the middle")
        docs = []
        with g22.client() as c:
            for i in range(n):
                size = 1_500_000 if i % 4 == 1 else 3_000
                docs.append(
                    c.call(
                        "submit",
                        **{
                            "from": g22.code,
                            "to": [h17.code],
                            "subject": f"Văn bản {i + 1}",
                            "files": [{"name": "vb.bin", "data": os.urandom(size)}],
                        },
                    )["id"]
                )
                if i == n // 2:
                    h17.node.kill()
                    receipted = sum(1 for d in docs if self.receipts(d)[h17.code]["state"] == "delivered")
                    self.say(f"   killed {h17.short} after {i + 1} documents ({receipted} already receipted)")
        h17.node.start()
        took = self.wait(lambda: all(self.receipts(d)[h17.code]["state"] == "delivered" for d in docs), 90, "recovery of H17")
        ids = [i["id"] for i in h17.call("inbox.list", limit=1000)["items"]]
        self.check(sorted(i for i in ids if i in docs) == sorted(docs), "H17 holds every document exactly once")
        self.check(len(ids) == len(set(ids)), "no duplicates in H17's inbox")
        self.say(
            f"   {h17.short} restarted: {n}/{n} documents, each exactly once, "
            f"all receipted {took:.1f} s after restart; nothing lost"
        )

    def verify_receipt(self, node: DemoNode, doc: str) -> None:
        """The 01 receipt ``node`` sent for ``doc``, read from its store (the node is stopped), verified as a peer does."""
        (s01,) = [s for s in self.receipts(doc)[node.code]["statuses"] if s["code"] == "01"]
        home = Home.load(node.home)
        authority = load_authority_public(home.authority_pub)
        directory = load_chain(read_chain_file(home.directory), authority)
        with Store(home.store, create=False, offline=True) as store:
            raw = store.get_envelope(Digest.parse(s01["id"]))
        self.check(raw is not None, f"{node.short}'s store holds the receipt {s01['id'][:12]}…")
        assert raw is not None
        env = Envelope.decode(raw)
        h = env.header
        self.check(
            isinstance(h, MessageHeader)
            and h.kind is Kind.STATUS
            and h.code is StatusCode.ARRIVED
            and h.doc == Digest.parse(doc)
            and str(h.sender) == node.code,
            f"the envelope is {node.short}'s 01 about document 1",
        )
        try:
            Trust(directory, authority).verify(env, int(time.time() * 1000), check_age=False)
        except TrucError as exc:
            raise DemoFailed(f"{node.short}'s receipt does not verify: {exc.message}") from None
        self.checks += 1

    def summary(self) -> None:
        stats = self.nodes[SENDER].call("stats")
        d = stats["deliveries"]
        self.say()
        self.say(
            f"Summary at G22: {sum(stats['sent'].values())} documents sent, {d['delivered']} deliveries receipted, "
            f"{d['pending']} pending, {d['failed']} failed; receipt latency p50 {stats['receipt_latency_ms']['p50']} ms"
        )
        self.check(d["pending"] == 0 and d["failed"] == 0, "nothing pending or failed")
        self.say(f"All {self.checks} checks passed.")

    def stop_all(self) -> None:
        if self.net is not None:
            self.net.stop_all()


def _mime(name: str) -> str:
    return "text/plain" if name.endswith(".txt") else "application/octet-stream"


def run_demo(*, short: bool, keep: Path | None) -> int:
    root = keep if keep is not None else Path(tempfile.mkdtemp(prefix="truc-demo-"))
    if keep is not None:
        if keep.exists() and any(keep.iterdir()):
            click.echo(f"truc demo: {keep} is not empty", err=True)
            return 2
        keep.mkdir(parents=True, exist_ok=True)
    demo = Demo(root, short=short)
    try:
        demo.run()
        code = 0
    except DemoFailed as exc:
        click.echo(f"\nDEMO FAILED: {exc}\n(node logs are in {root}/*/node.log)", err=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        demo.stop_all()
    if keep is None and code == 0:
        shutil.rmtree(root, ignore_errors=True)
        click.echo("Stopped the nodes and removed the temporary network.")
    else:
        first = next(iter(demo.nodes.values()), None)
        hint = f"; restart a node with: truc run --home {first.home}" if first else ""
        click.echo(f"The network is kept in {root}{hint}")
    return code
