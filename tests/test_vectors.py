"""Golden vectors pin every wire and disk encoding and the signatures over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity.directory import JoinRequest, decode_chain, load_chain
from identity.directory_cache import cache_mac_key, chain_keys, decode_verified
from identity.keys import AuthorityPublic, verify_signature
from identity.sealing import read_document, read_status_note
from identity.trust import Trust
from protocol import cbor
from protocol.document import DocumentMeta, FileBytes
from protocol.envelope import Envelope, MessageHeader
from protocol.errors import RevokedKeyError
from protocol.framing import FrameDecoder, tagged_header
from protocol.status import StatusCode
from tests.vectors.generate import AT, NET, Fixture, build
from tests.vectors.hexfile import read_hex_file

VECTORS = Path(__file__).resolve().parent / "vectors"
BUILT = build()


@pytest.mark.parametrize("name", sorted(BUILT))
def test_code_still_produces_the_pinned_bytes(name: str) -> None:
    pinned = read_hex_file(VECTORS / f"{name}.hex")
    assert BUILT[name][1] == pinned, f"{name}: the encoding changed; if deliberate, bump the format version and regenerate"


def test_every_vector_file_is_built() -> None:
    assert {p.stem for p in VECTORS.glob("*.hex")} == set(BUILT)


def pinned(name: str) -> bytes:
    return read_hex_file(VECTORS / f"{name}.hex")


def test_pinned_envelopes_verify_and_open() -> None:
    f = Fixture()
    doc = Envelope.decode(pinned("document-inline"))
    verify_signature(f.g22.signing.public, doc.signed_bytes, doc.signature)
    assert doc.signed_bytes.startswith(b"truc/v1/document\x00")
    assert isinstance(doc.header, MessageHeader)
    events = list(read_document(doc.header, f.h29, doc.inline))
    assert isinstance(events[0], DocumentMeta) and events[0].notation == "VPCP-KSTT"
    assert b"".join(e.data for e in events if isinstance(e, FileBytes)).decode() == "Kính gửi: UBND tỉnh An Giang\n"

    big = Envelope.decode(pinned("document-blocks"))
    assert isinstance(big.header, MessageHeader) and not big.inline
    events = list(read_document(big.header, f.h01, [pinned("document-blocks.block0")]))
    assert sum(len(e.data) for e in events if isinstance(e, FileBytes)) == 50_000

    status = Envelope.decode(pinned("status-01"))
    verify_signature(f.h01.signing.public, status.signed_bytes, status.signature)
    assert isinstance(status.header, MessageHeader)
    assert status.header.code is StatusCode.ARRIVED and status.header.doc == doc.id
    assert read_status_note(status, f.g22).note == ""


def test_pinned_directory_chain_loads_and_revokes() -> None:
    f = Fixture()
    authority = AuthorityPublic(f.authority.public, NET)
    d = load_chain(decode_chain(pinned("directory-chain")), authority)
    assert d.serial == 2 and len(d.agencies) == 3
    trust = Trust(d, authority)
    doc = Envelope.decode(pinned("document-inline"))
    trust.verify(doc, AT)
    assert f.h29.signing.kid in d.revoked
    with pytest.raises(RevokedKeyError):
        trust.signing_key(f.h29.code, f.h29.signing.kid, AT)
    req = JoinRequest.decode(pinned("join-request"))
    assert req.node.peer_id == f.nodes[1].peer_id


def test_pinned_directory_cache_is_the_verified_chain() -> None:
    f = Fixture()
    authority = AuthorityPublic(f.authority.public, NET)
    chain = decode_chain(pinned("directory-chain"))
    cached, key, links = decode_verified(pinned("directory-cache"), mac_key=cache_mac_key(f.nodes[0].key))
    verified = load_chain(chain, authority)
    assert links == 2 and key == chain_keys(chain, authority)[-1]
    assert cached == verified and list(cached.agencies.items()) == list(verified.agencies.items())
    assert cached.agency(f.h01.code).name == "UBND tỉnh An Giang" and f.h29.signing.kid in cached.revoked


def test_pinned_frame_and_store_sample_decode() -> None:
    dec = FrameDecoder(max_bytes=16)
    dec.feed(pinned("frame"))
    assert dec.next_frame() == b"truc"
    raw = pinned("frame-tagged")
    assert raw[:12] == bytes.fromhex("00000008 00000007 74727563")
    assert tagged_header(raw[:8], max_bytes=16) == (7, 4) and raw[8:12] == b"truc"
    assert tagged_header(raw[12:20], max_bytes=16) == (0x01020304, 0) and len(raw) == 20
    pairs = cbor.decode(pinned("store-keys"), max_bytes=1 << 16)
    assert [p[0][:1] for p in pairs] == [b"E", b"I", b"i", b"O", b"R", b"P", b"H", b"L", b"S", b"C", b"D"]


def test_pinned_ipc_frames_decode() -> None:
    from protocol import ipc

    def payload(name: str) -> bytes:
        dec = FrameDecoder(max_bytes=ipc.MAX_FRAME_BYTES)
        dec.feed(pinned(name))
        data = dec.next_frame()
        assert data is not None and dec.next_frame() is None
        return data

    req = ipc.decode_client_frame(payload("ipc-submit-request"))
    assert isinstance(req, ipc.Request) and req.method == "submit" and req.params["files"][0]["data"] == b"Xin chao"
    assert ipc.parse_submit(req.params).recipients[0].short() == "H29"
    assert ipc.decode_message(payload("ipc-submit-response"))["result"]["id"] == str(
        Envelope.decode(pinned("document-inline")).id
    )
    err = ipc.decode_message(payload("ipc-error-response"))
    assert err["ok"] is False and err["error"]["code"] == "unknown_agency"
    assert ipc.decode_message(payload("ipc-chunk"))["data"] == b"Xin chao"
    assert ipc.decode_message(payload("ipc-event"))["event"] == "receipt.received"


def test_pinned_upload_frames_decode() -> None:
    import hashlib

    from protocol import ipc

    dec = FrameDecoder(max_bytes=ipc.MAX_FRAME_BYTES)
    dec.feed(pinned("ipc-upload"))
    frames = [ipc.decode_client_frame(f) for f in iter(dec.next_frame, None)]
    req, *uploads = frames
    assert isinstance(req, ipc.Request) and ipc.declared_uploads(req.method, req.params) == {0: 12}
    assert all(isinstance(u, ipc.Upload) and u.id == 5 and u.file == 0 for u in uploads)
    data = b"".join(u.data for u in uploads if isinstance(u, ipc.Upload))
    assert hashlib.sha256(data).hexdigest() == req.params["files"][0]["sha256"]


def test_pinned_edxml_submit_frames_carry_a_status_package() -> None:
    import hashlib

    from protocol import ipc
    from protocol.edxml import Kind, read_package

    dec = FrameDecoder(max_bytes=ipc.MAX_FRAME_BYTES)
    dec.feed(pinned("ipc-edxml-submit"))
    *client, answer = list(iter(dec.next_frame, None))
    req, *uploads = [ipc.decode_client_frame(f) for f in client]
    assert isinstance(req, ipc.Request) and req.method == "edxml.submit"
    size = ipc.declared_uploads(req.method, req.params)[0]
    data = b"".join(u.data for u in uploads if isinstance(u, ipc.Upload))
    assert len(data) == size and hashlib.sha256(data).hexdigest() == req.params["package"]["sha256"]
    package, _ = read_package(data)
    assert package.kind is Kind.STATUS and package.status is not None and package.status.code == 3
    result = ipc.decode_message(answer)["result"]
    assert result["kind"] == "status" and result["code"] == "03"
    assert result["document_id"] == package.status.response_for.document_id


def test_pinned_sync_heads_exchange_decodes() -> None:
    from protocol import messages as m

    req = m.SyncRequest.decode(pinned("sync-heads-request"))
    assert req.op is m.SyncOp.HEADS and req.shards == ("G22", "H29")
    assert req.mine == m.HeadsResponse(bytes(range(16)), (("G22", 12), ("H01", 3)), 2)
    resp = m.HeadsResponse.decode(pinned("sync-heads-response"))
    assert resp.heads == (("G22", 40), ("H29", 7)) and resp.serial == 2


def test_pinned_edxml_document_carries_its_header_and_its_store_names() -> None:
    from protocol.edxml import read_package, write_bytes
    from protocol.edxml.carry import carried_package, names_of
    from protocol.edxml.writer import ZipMode
    from store.records import EdxmlRef

    f = Fixture()
    doc = Envelope.decode(pinned("document-edxml"))
    assert isinstance(doc.header, MessageHeader)
    events = list(read_document(doc.header, f.h01, doc.inline))
    meta = events[0]
    assert isinstance(meta, DocumentMeta) and meta.to_cbor()["v"] == 2 and meta.edxml
    package = carried_package(meta, "000.00.00.G22", ["000.00.00.H01"])
    data = b"".join(e.data for e in events if isinstance(e, FileBytes))
    out, files = read_package(write_bytes(package, [data], zip=ZipMode.RAW))
    assert files == [b"%PDF-1.7 vector"] and out.edoc is not None
    assert out.edoc.document_id == names_of(meta, "000.00.00.G22", doc.id.hex()).document_id
    assert out.edoc.document_id == "000.00.00.G22,2026/11/22,15/VPCP-KSTT"
    # The same document without its header is byte for byte a version-1 manifest.
    import dataclasses

    assert dataclasses.replace(meta, edxml=b"").to_cbor()["v"] == 1
    pairs = cbor.decode(pinned("store-keys-edxml"), max_bytes=1 << 16)
    assert [p[0][:1] for p in pairs] == [b"G", b"J"]
    assert EdxmlRef.decode(pairs[1][1]).document_id == out.edoc.document_id
