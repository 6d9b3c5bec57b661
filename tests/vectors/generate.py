"""Build the golden vectors from fixed seeds; ``python -m tests.vectors.generate`` rewrites the files.

Rewrite them only for a deliberate format change (and bump the version in
docs/). ``tests/test_vectors.py`` fails when the code stops producing exactly
these bytes.
"""

from __future__ import annotations

from pathlib import Path

from identity.directory import DirectoryDelta, JoinRequest, NodeRecord, encode_chain, load_chain, sign_delta, sign_snapshot
from identity.directory_cache import cache_mac_key, chain_keys, encode_verified
from identity.keys import AgencyKeys, AuthorityPublic, NodeKey, SigningKey
from identity.provision import DeterministicRng, ProvisionedNode, agency_record, build_directory
from identity.sealing import FileSource, Recipient, seal_document, seal_status
from protocol import cbor
from protocol.agency import AgencyCode
from protocol.document import DocumentMeta, Urgency
from protocol.framing import frame, tagged
from protocol.ids import Digest
from protocol.status import StatusCode
from store import keys as k
from store.records import Cursor, DeliveryKind, DeliveryRecord, DeliveryState, DocRecord, DocRole, HistoryRecord, InboxEntry
from tests.vectors.hexfile import to_hex_file

HERE = Path(__file__).resolve().parent
NET = "truc-vectors"
AT = 1_795_000_000_000
DAY = 86_400_000


class Fixture:
    def __init__(self) -> None:
        rng = DeterministicRng(b"truc golden vectors v1")
        self.authority = SigningKey.generate(rng)
        self.g22 = AgencyKeys.generate(AgencyCode.parse("G22"), rng)
        self.h01 = AgencyKeys.generate(AgencyCode.parse("H01"), rng)
        self.h29 = AgencyKeys.generate(AgencyCode.parse("H29"), rng)
        self.nodes = [
            ProvisionedNode(NodeKey(rng(32)), [self.g22], ("/ip4/10.0.0.22/tcp/4001",)),
            ProvisionedNode(NodeKey(rng(32)), [self.h01], ("/ip4/10.0.1.1/tcp/4001",)),
            ProvisionedNode(NodeKey(rng(32)), [self.h29], ("/ip4/10.0.1.29/tcp/4001",)),
        ]
        names = {
            self.g22.code: "Văn phòng Chính phủ",
            self.h01.code: "UBND tỉnh An Giang",
            self.h29.code: "UBND thành phố Hồ Chí Minh",
        }
        self.directory = build_directory(net=NET, nodes=self.nodes, names=names, serial=1, at=AT, until=AT + 365 * DAY)

    def recipient(self, keys: AgencyKeys) -> Recipient:
        return Recipient(keys.code, keys.encryption.public)


def meta() -> DocumentMeta:
    return DocumentMeta(
        subject="Về việc thử nghiệm trục liên thông văn bản",
        number="15",
        notation="VPCP-KSTT",
        doc_type="Công văn",
        place="Hà Nội",
        date="2026-11-22",
        signer="Nguyễn Văn A",
        signer_title="Phó Chủ nhiệm",
        urgency=Urgency.URGENT,
        due="2026-12-15",
    )


def build() -> dict[str, tuple[str, bytes]]:
    f = Fixture()
    out: dict[str, tuple[str, bytes]] = {}
    out["cbor-canonical"] = (
        "canonical CBOR of {'to': ['000.00.00.H01'], 'at': 1795000000000, 'kind': 'doc', 'v': 1}",
        cbor.encode({"to": ["000.00.00.H01"], "at": AT, "kind": "doc", "v": 1}),
    )
    doc, _ = seal_document(
        meta(),
        [FileSource("cong-van.txt", "text/plain", data="Kính gửi: UBND tỉnh An Giang\n".encode())],
        net=NET,
        sender=f.g22,
        recipients=[f.recipient(f.h01), f.recipient(f.h29)],
        at=AT,
        rng=DeterministicRng(b"doc-inline"),
    )
    out["document-inline"] = ("document envelope, G22 -> H01 + H29, inline body (wire bytes)", doc.encode())
    blocks: list[bytes] = []
    big, _ = seal_document(
        meta(),
        [FileSource("phu-luc.bin", "application/octet-stream", data=DeterministicRng(b"payload")(50_000))],
        net=NET,
        sender=f.g22,
        recipients=[f.recipient(f.h01)],
        at=AT + 1,
        rng=DeterministicRng(b"doc-blocks"),
        on_block=lambda h, b: blocks.append(b),
    )
    out["document-blocks"] = ("document envelope with one 50 kB block carried separately (wire bytes)", big.encode())
    out["document-blocks.block0"] = ("that document's sealed block 0", blocks[0])
    status = seal_status(
        net=NET,
        sender=f.h01,
        recipient=f.recipient(f.g22),
        doc=doc.id,
        code=StatusCode.ARRIVED,
        seq=1,
        note="",
        at=AT + 2,
        rng=DeterministicRng(b"status"),
    )
    out["status-01"] = ("status 01 (receipt) from H01 for document-inline (wire bytes)", status.encode())
    snap = sign_snapshot(f.directory, f.authority, at=AT)
    delta = DirectoryDelta(revoke=((f.h29.signing.kid, AT + DAY),))
    link = sign_delta(delta, net=NET, base=1, serial=2, until=AT + 400 * DAY, key=f.authority, at=AT + DAY)
    out["directory-chain"] = (
        "directory file: snapshot serial 1 + delta serial 2 (revokes H29's key)",
        encode_chain([snap, link]),
    )
    authority = AuthorityPublic(f.authority.public, NET)
    out["directory-cache"] = (
        "verified form of directory-chain (HOME/cache/directory.bin), HMAC key from the G22 node's key",
        encode_verified(
            load_chain([snap, link], authority),
            key=chain_keys([snap, link], authority)[-1],
            links=2,
            mac_key=cache_mac_key(f.nodes[0].key),
        ),
    )
    node = f.nodes[1]
    join = JoinRequest(NET, NodeRecord(node.peer_id, node.addrs), (agency_record(f.h01, "UBND tỉnh An Giang", node.peer_id),))
    out["join-request"] = ("join request of the H01 node, signed by its node key", join.signed(node.key).encode())
    out["frame"] = ("a length-prefixed frame holding b'truc'", frame(b"truc", max_bytes=16))
    out["frame-tagged"] = (
        "a frame of a persistent request stream (/truc/*/2): request id 7 holding b'truc', then id 0x01020304 holding nothing",
        tagged(7, b"truc", max_bytes=16) + tagged(0x01020304, b"", max_bytes=16),
    )
    out["store-keys"] = ("store keys and records, one per keyspace (see docs/storage.md)", store_sample(doc.id))
    out["store-keys-edxml"] = ("store format 3: the edXML index (G) and names (J) of one document", edxml_store_sample(doc.id))
    edoc, _ = seal_document(
        edxml_meta(),
        [FileSource("cong-van.pdf", "application/pdf", data=b"%PDF-1.7 vector")],
        net=NET,
        sender=f.g22,
        recipients=[f.recipient(f.h01)],
        at=AT + 3,
        rng=DeterministicRng(b"doc-edxml"),
    )
    out["document-edxml"] = (
        "document envelope G22 -> H01 whose manifest (version 2) carries an edXML header (wire bytes)",
        edoc.encode(),
    )
    out.update(ipc_sample(doc.id))
    out.update(sync_sample())
    return out


def sync_sample() -> dict[str, tuple[str, bytes]]:
    """/truc/sync/1 heads exchange (docs/overlay.md), with the asker's own heads riding along."""
    from protocol import messages as m

    epoch = bytes(range(16))
    mine = m.HeadsResponse(epoch, (("G22", 12), ("H01", 3)), 2)
    return {
        "sync-heads-request": (
            "sync heads request for shards G22 and H29, carrying the asker's own heads (mine)",
            m.SyncRequest(m.SyncOp.HEADS, shards=("G22", "H29"), mine=mine).encode(),
        ),
        "sync-heads-response": (
            "sync heads response: epoch, heads per shard, directory serial",
            m.HeadsResponse(bytes(reversed(range(16))), (("G22", 40), ("H29", 7)), 2).encode(),
        ),
    }


def ipc_sample(doc_id: Digest) -> dict[str, tuple[str, bytes]]:
    """The frames of docs/ipc.md's worked example, byte for byte."""
    from protocol import ipc
    from protocol.errors import UnknownAgencyError

    def framed(payload: bytes) -> bytes:
        return frame(payload, max_bytes=ipc.MAX_FRAME_BYTES)

    submit = ipc.Request(
        1,
        "submit",
        {
            "from": "000.00.00.G22",
            "to": ["000.00.00.H29"],
            "subject": "Về việc thử nghiệm",
            "files": [{"name": "cv.txt", "mime": "text/plain", "data": b"Xin chao"}],
            "idempotency_key": "cv-2026-0001",
        },
    )
    return {
        "ipc-submit-request": ("IPC frame: submit request, id 1", framed(submit.encode())),
        "ipc-submit-response": ("IPC frame: its answer", framed(ipc.response(1, {"id": str(doc_id)}))),
        "ipc-error-response": (
            "IPC frame: an error answer, id 2",
            framed(ipc.error_response(2, UnknownAgencyError("000.00.00.H05"))),
        ),
        "ipc-chunk": ("IPC frame: document.get chunk of file 0 for request 3", framed(ipc.chunk(3, 0, b"Xin chao"))),
        "ipc-event": (
            "IPC frame: an event on subscription 4",
            framed(ipc.event(4, "receipt.received", AT, {"doc": str(doc_id), "recipient": "000.00.00.H29", "at": AT})),
        ),
        "ipc-upload": (
            "IPC frames: submit request 5 declaring a streamed 12-byte file, then its two upload frames",
            framed(
                ipc.Request(
                    5,
                    "submit",
                    {
                        "from": "000.00.00.G22",
                        "to": ["000.00.00.H29"],
                        "subject": "Về việc thử nghiệm",
                        "files": [{"name": "phu-luc.txt", "mime": "text/plain", "size": 12, "sha256": UPLOAD_SHA256}],
                    },
                ).encode()
            )
            + framed(ipc.Upload(5, 0, b"Xin chao ").encode())
            + framed(ipc.Upload(5, 0, b"moi").encode()),
        ),
        **ipc_edxml_sample(doc_id),
    }


def ipc_edxml_sample(doc_id: Digest) -> dict[str, tuple[str, bytes]]:
    """docs/ipc.md's edxml.submit: a status package streamed as upload frames, and its answer."""
    import hashlib

    from protocol import ipc
    from protocol.edxml import ResponseFor, StatusFields, ZipMode, build_status, write_bytes

    def framed(payload: bytes) -> bytes:
        return frame(payload, max_bytes=ipc.MAX_FRAME_BYTES)

    fields = StatusFields(
        "000.00.00.H29",
        ResponseFor("000.00.00.G22", "12/VPCP-KSTT", "2026/12/01", "000.00.00.G22,2026/12/01,12/VPCP-KSTT"),
        3,
        AT,
        "Đã vào sổ văn bản đến",
    )
    package = write_bytes(build_status(fields, names=lambda code: ""), [], zip=ZipMode.RAW)
    half = len(package) // 2
    request = ipc.Request(6, "edxml.submit", {"package": {"size": len(package), "sha256": hashlib.sha256(package).hexdigest()}})
    answer = {
        "kind": "status",
        "id": "5" * 64,
        "doc": str(doc_id),
        "document_id": fields.response_for.document_id,
        "duplicate": False,
        "code": "03",
        "warnings": [],
    }
    return {
        "ipc-edxml-submit": (
            f"IPC frames: edxml.submit request 6 declaring a {len(package)}-byte status package, two upload frames, the answer",
            framed(request.encode())
            + framed(ipc.Upload(6, 0, package[:half]).encode())
            + framed(ipc.Upload(6, 0, package[half:]).encode())
            + framed(ipc.response(6, answer)),
        ),
    }


UPLOAD_SHA256 = "90c6384287945e78b04a0ea1a9ffcd58014e0e55e83a93f52344acd793686ba5"  # sha256(b"Xin chao moi")


def edxml_meta() -> DocumentMeta:
    """A manifest carrying the edXML header VNPT's library would write for meta()'s document (docs/protocol.md §4.1)."""
    import dataclasses
    import hashlib

    from protocol.edxml import EdocFields, FileSpec, build_edoc, encode_package

    data = b"%PDF-1.7 vector"
    fields = EdocFields.from_meta(meta(), sender="000.00.00.G22", recipients=["000.00.00.H01"])
    package = build_edoc(
        fields,
        names=lambda code: "",
        files=[FileSpec("cong-van.pdf", "application/pdf", len(data), hashlib.sha256(data).digest())],
        trace=[("000.00.00.G22", AT + 3)],
    )
    return dataclasses.replace(meta(), edxml=encode_package(package))


def edxml_store_sample(doc_id: Digest) -> bytes:
    import hashlib

    from store.records import EdxmlRef

    g22, h01 = AgencyCode.parse("G22"), AgencyCode.parse("H01")
    ref = EdxmlRef("000.00.00.G22,2026/11/22,15/VPCP-KSTT", "15", "VPCP-KSTT", "2026/11/22", str(g22), bytes(32))
    pairs = [
        (k.EDXML_INDEX + k.code(h01) + k.code(g22) + hashlib.sha256(ref.document_id.encode()).digest() + doc_id, b""),
        (k.EDXML_REF + doc_id, ref.encode()),
    ]
    return cbor.encode([[key, value] for key, value in pairs])


def store_sample(doc_id: Digest) -> bytes:
    g22, h01 = AgencyCode.parse("G22"), AgencyCode.parse("H01")
    pairs = [
        (k.ENVELOPE + doc_id, b""),
        (k.INBOX + k.code(h01) + k.u64(7), InboxEntry(doc_id, str(g22), AT, 0).encode()),
        (k.INBOX_BY_ID + k.code(h01) + doc_id, k.u64(7)),
        (
            k.OUTBOX + k.code(g22) + doc_id + k.code(h01),
            DeliveryRecord(
                DeliveryKind.DOCUMENT,
                DeliveryState.PENDING,
                attempts=1,
                failures=1,
                next_at=AT + 1000,
                first_at=AT,
                last_at=AT,
                last_error="peer unreachable",
            ).encode(),
        ),
        (k.RETRY + k.u64(AT + 1000) + doc_id + k.code(h01), k.code(g22)),
        (k.PENDING + k.code(h01) + doc_id, k.code(g22)),
        (
            k.HISTORY + doc_id + k.code(h01) + k.u32(1) + doc_id,
            HistoryRecord(1, "recipient", str(h01), 1, AT, AT + 5).encode(),
        ),
        (k.LOG + k.shard("H01") + k.u64(42), bytes(doc_id)),
        (k.PARKED + doc_id + doc_id, b""),
        (k.CURSOR + k.shard("H01") + bytes(38), Cursor(b"\x01" * 16, 42).encode()),
        (
            k.DOC + doc_id,
            DocRecord(DocRole.SENT, str(g22), (str(h01),), AT, AT, 100, 1, True, subject="Về việc").encode(),
        ),
    ]
    return cbor.encode([[key, value] for key, value in pairs])


def main() -> None:
    for name, (comment, data) in build().items():
        (HERE / f"{name}.hex").write_text(to_hex_file(comment, data))
        print(f"wrote {name}.hex ({len(data)} bytes)")


if __name__ == "__main__":
    main()
