from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.keys import verify_signature
from identity.provision import DeterministicRng
from identity.sealing import FileSource, Recipient, describe_files, read_document, read_status_note, seal_document, seal_status
from protocol.body import BLOCK_BYTES, INLINE_MAX_BYTES
from protocol.document import DocumentMeta, FileBytes, FileDone
from protocol.envelope import Envelope, Kind, MessageHeader
from protocol.errors import (
    DecodeError,
    DecryptError,
    HashMismatchError,
    NotAuthorizedError,
    RemoteError,
    SignatureError,
)
from protocol.ids import Digest
from protocol.status import StatusCode
from tests.conftest import NET, NOW, Net


def send(
    net: Net, files: list[bytes], to: tuple[str, ...] = ("000.00.00.H01", "000.00.00.H29")
) -> tuple[Envelope, dict[Digest, bytes]]:
    blocks: dict[Digest, bytes] = {}
    env, _ = seal_document(
        DocumentMeta(subject="Kế hoạch năm 2027"),
        [FileSource(f"f{i}.bin", "application/octet-stream", data=d) for i, d in enumerate(files)],
        net=NET,
        sender=net.k("000.00.00.G22"),
        recipients=[net.trust.recipient(net.k(c).code) for c in to],
        at=NOW,
        rng=DeterministicRng(b"seal"),
        on_block=blocks.__setitem__,
    )
    return env, blocks


def open_all(env: Envelope, keys_code: str, net: Net, blocks: dict[Digest, bytes]) -> tuple[DocumentMeta, list[bytes]]:
    header = env.header
    assert isinstance(header, MessageHeader)
    data = env.inline or [blocks[h] for h in header.body.blocks]
    meta = None
    files: dict[int, bytes] = {}
    for ev in read_document(header, net.k(keys_code), data):
        if isinstance(ev, DocumentMeta):
            meta = ev
        elif isinstance(ev, FileBytes):
            files[ev.index] = files.get(ev.index, b"") + ev.data
        elif isinstance(ev, FileDone):
            files.setdefault(ev.index, b"")
    assert meta is not None
    return meta, [files[i] for i in range(len(meta.files))]


@pytest.mark.parametrize("size", [0, 1000, INLINE_MAX_BYTES - 500, INLINE_MAX_BYTES + 1, BLOCK_BYTES, 2 * BLOCK_BYTES + 7])
def test_each_recipient_opens_the_document(net: Net, size: int) -> None:
    payload = DeterministicRng(size)(size)
    env, blocks = send(net, [payload, b"second file"])
    wire = Envelope.decode(env.encode())
    assert wire == env
    verify_signature(net.k("000.00.00.G22").signing.public, wire.signed_bytes, wire.signature)
    net.trust.verify(wire, NOW)
    header = wire.header
    assert isinstance(header, MessageHeader)
    assert bool(wire.inline) == (header.body.length <= INLINE_MAX_BYTES)
    assert len(header.body.blocks) == max(1, -(-header.body.length // BLOCK_BYTES))
    for code in ("000.00.00.H01", "000.00.00.H29"):
        meta, files = open_all(wire, code, net, blocks)
        assert files == [payload, b"second file"]
        assert [f.sha256 for f in meta.files] == [Digest.of(payload), Digest.of(b"second file")]


def test_a_relay_cannot_read_and_the_header_leaks_no_content(net: Net) -> None:
    env, blocks = send(net, [b"TOP-SECRET-CONTENT" * 10], to=("000.00.00.H01",))
    with pytest.raises(NotAuthorizedError):
        open_all(env, "000.00.00.H29", net, blocks)
    wire = env.encode()
    assert b"TOP-SECRET" not in wire
    assert "Kế hoạch".encode() not in wire  # the subject is encrypted too


def test_another_agencys_key_cannot_open_even_under_the_right_code(net: Net) -> None:
    env, _ = send(net, [b"x"], to=("000.00.00.H01",))
    impostor = dataclasses.replace(net.k("000.00.00.H29"), code=net.k("000.00.00.H01").code)
    assert isinstance(env.header, MessageHeader)
    with pytest.raises(DecryptError):
        list(read_document(env.header, impostor, env.inline))


def test_tampered_reordered_and_truncated_blocks_are_refused(net: Net) -> None:
    env, blocks = send(net, [DeterministicRng(1)(3 * BLOCK_BYTES)], to=("000.00.00.H01",))
    header = env.header
    assert isinstance(header, MessageHeader)
    hashes = list(header.body.blocks)
    good = [blocks[h] for h in hashes]
    bad = bytearray(good[1])
    bad[100] ^= 1
    cases = {
        "tampered": [good[0], bytes(bad), good[2], good[3]],
        "reordered": [good[1], good[0], good[2], good[3]],
    }
    for seq in cases.values():
        with pytest.raises(HashMismatchError):
            list(read_document(header, net.k("000.00.00.H01"), seq))
        # Blocks the caller says were hash-checked on entry (the node's store): damage is still refused, by the AEAD.
        with pytest.raises(DecryptError):
            list(read_document(header, net.k("000.00.00.H01"), seq, checked=True))
    with pytest.raises(DecodeError):
        list(read_document(header, net.k("000.00.00.H01"), good[:-1]))
    with pytest.raises(DecodeError):
        list(read_document(header, net.k("000.00.00.H01"), good[:-1], checked=True))
    assert b"".join(f.data for f in read_document(header, net.k("000.00.00.H01"), good, checked=True) if isinstance(f, FileBytes))


def test_a_block_under_another_header_does_not_open(net: Net) -> None:
    """Blocks are bound to their header: re-signing a header with a different time breaks the AEAD."""
    env, _ = send(net, [b"payload"], to=("000.00.00.H01",))
    header = env.header
    assert isinstance(header, MessageHeader)
    moved = dataclasses.replace(header, at=header.at + 1)
    with pytest.raises(DecryptError):
        list(read_document(moved, net.k("000.00.00.H01"), env.inline))


def test_signature_covers_every_header_field(net: Net) -> None:
    env, _ = send(net, [b"x"], to=("000.00.00.H01",))
    header = env.header
    assert isinstance(header, MessageHeader)
    forged_header = dataclasses.replace(header, at=header.at + 1)
    forged = Envelope(forged_header, Envelope.header_bytes_of(forged_header), env.signature, env.inline)
    with pytest.raises(SignatureError):
        net.trust.verify(forged, NOW)


def test_status_round_trip(net: Net) -> None:
    env, _ = send(net, [b"x"], to=("000.00.00.H01",))
    status = seal_status(
        net=NET,
        sender=net.k("000.00.00.H01"),
        recipient=Recipient(net.k("000.00.00.G22").code, net.k("000.00.00.G22").encryption.public),
        doc=env.id,
        code=StatusCode.ACCEPTED,
        seq=2,
        note="Đã vào sổ",
        at=NOW,
        rng=DeterministicRng(b"st"),
    )
    back = Envelope.decode(status.encode())
    assert back.kind is Kind.STATUS
    net.trust.verify(back, NOW)
    assert read_status_note(back, net.k("000.00.00.G22")).note == "Đã vào sổ"
    header = back.header
    assert isinstance(header, MessageHeader)
    assert (header.doc, header.code, header.seq) == (env.id, StatusCode.ACCEPTED, 2)


@settings(max_examples=150)
@given(st.data())
def test_mutated_envelopes_raise_only_remote_errors(shared_net: Net, data: st.DataObject) -> None:
    net = shared_net
    env, _ = send(net, [b"hello"], to=("000.00.00.H01",))
    wire = bytearray(env.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    try:
        parsed = Envelope.decode(bytes(wire[:cut]))
        net.trust.verify(parsed, NOW)
    except RemoteError:
        return
    assert parsed.encode() == bytes(wire[:cut])
    assert bytes(wire[:cut]) == env.encode()  # only the untouched envelope may pass


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_remote_errors(data: bytes) -> None:
    try:
        Envelope.decode(data)
    except RemoteError:
        pass


@pytest.mark.parametrize("change", [b"Y" * 10, b"X" * 9, b"X" * 11 + b"more"], ids=["same size", "shorter", "longer"])
def test_a_file_that_changes_between_hashing_and_sealing_is_refused(net: Net, tmp_path: Path, change: bytes) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"X" * 10)
    files = [FileSource("a.bin", "application/octet-stream", path=str(path))]
    entries = describe_files(files)
    assert entries[0].size == 10 and entries[0].sha256 == Digest.of(b"X" * 10)
    path.write_bytes(change)
    with pytest.raises(HashMismatchError, match="changed while it was being sent"):
        seal_document(
            DocumentMeta(subject="x"),
            files,
            net=NET,
            sender=net.k("000.00.00.G22"),
            recipients=[net.trust.recipient(net.k("000.00.00.H01").code)],
            at=NOW,
            rng=DeterministicRng(b"seal"),
            entries=entries,
        )


def test_a_large_body_sealed_on_several_threads_is_the_same_bytes_in_the_same_order(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies of PARALLEL_FROM_BLOCKS blocks or more are encrypted and hashed on worker threads: the envelope, every
    block and the order ``on_block`` sees them in are those of sealing one block after another."""
    import identity.sealing as sealing

    payload = DeterministicRng(b"large")(9 * BLOCK_BYTES + 11)  # 10 blocks: more than SEAL_AHEAD in flight

    def sealed() -> tuple[Envelope, list[tuple[Digest, bytes]]]:
        order: list[tuple[Digest, bytes]] = []
        env, _ = seal_document(
            DocumentMeta(subject="large"),
            [FileSource("big.bin", "application/octet-stream", data=payload)],
            net=NET,
            sender=net.k("000.00.00.G22"),
            recipients=[net.trust.recipient(net.k("000.00.00.H29").code)],
            at=NOW,
            rng=DeterministicRng(b"seal"),
            on_block=lambda digest, block: order.append((digest, block)),
        )
        return env, order

    threads: set[str] = set()
    encrypt = sealing.nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt

    def recording(*args: bytes) -> bytes:
        import threading

        threads.add(threading.current_thread().name)
        return encrypt(*args)

    monkeypatch.setattr(sealing.nacl.bindings, "crypto_aead_xchacha20poly1305_ietf_encrypt", recording)
    parallel, parallel_order = sealed()
    assert len(parallel_order) == 10 and all(name.startswith("seal") for name in threads), threads
    monkeypatch.setattr(sealing, "PARALLEL_FROM_BLOCKS", 1 << 30)
    threads.clear()
    serial, serial_order = sealed()
    assert threads == {"MainThread"}
    assert parallel == serial
    assert parallel_order == serial_order
    header = parallel.header
    assert isinstance(header, MessageHeader)
    assert [digest for digest, _ in parallel_order] == list(header.body.blocks)
    _, files = open_all(parallel, "000.00.00.H29", net, dict(parallel_order))
    assert files == [payload]
