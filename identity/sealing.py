"""Seal and open document and status envelopes.

Sealing: a random content key per envelope; the plaintext body is cut into
blocks sealed with XChaCha20-Poly1305 (nonce and AAD from ``protocol.body``);
the content key is wrapped for each recipient agency with a sealed box; the
header carries the block hashes and is signed by the sender agency's key.
Memory stays at one block whatever the document size: blocks are handed to
``on_block`` as they are made (inline bodies are kept in the envelope).

Opening: unwrap the content key with the recipient agency's encryption key,
check each block against the signed hash, decrypt in order, and split the
plaintext into manifest and files, checking each file's size and SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import nacl.bindings
import nacl.exceptions
import nacl.public

from protocol.agency import AgencyCode
from protocol.body import (
    BLOCK_BYTES,
    INLINE_MAX_BYTES,
    NONCE_BYTES,
    BodyRef,
    block_count,
    chunk_aad,
    chunk_nonce,
    manifest_prefix,
)
from protocol.document import (
    DocumentMeta,
    FileBytes,
    FileDone,
    FileEntry,
    ManifestRead,
    PlaintextReader,
    StatusNote,
)
from protocol.envelope import Envelope, Kind, MessageHeader
from protocol.errors import DecodeError, DecryptError, HashMismatchError, NotAuthorizedError, SchemaError, TooLargeError
from protocol.ids import Digest
from protocol.status import StatusCode

from .filehash import HashingReader, hash_file
from .keys import AgencyKeys, Rng

CONTENT_KEY_BYTES = 32
PARALLEL_FROM_BLOCKS = 4  # bodies of this many blocks or more are sealed on SEAL_THREADS threads
SEAL_THREADS = 2
SEAL_AHEAD = 4  # blocks in flight between the reading thread and the sealing threads (memory: 4 MiB)
READ_CHUNK_BYTES = BLOCK_BYTES
BlockSink = Callable[[Digest, bytes], None]


@dataclass(frozen=True)
class Recipient:
    code: AgencyCode
    encryption_key: bytes  # X25519 public key from the directory


@dataclass(frozen=True)
class FileSource:
    """An attachment to seal: bytes in memory, a file the node itself owns (its spool), or a descriptor it opened.

    ``fd`` is a client's file the node opened under its read rules
    (node/upload.py); it is read from its start, and stays the caller's to
    close. ``size`` and ``sha256``, when the caller already knows them (the
    spool computes them while receiving, the read rules while hashing), spare
    a first pass over the file; the sealing pass still checks them, so a file
    that changed in between is refused.
    """

    name: str
    media_type: str
    data: bytes | None = None
    path: str | None = None
    size: int | None = None
    sha256: bytes | None = None
    fd: int | None = None

    def open(self) -> BinaryIO:
        import io
        import os

        if self.data is not None:
            return io.BytesIO(self.data)
        if self.fd is not None:
            f = os.fdopen(os.dup(self.fd), "rb")
            f.seek(0)
            return f
        assert self.path is not None
        return open(self.path, "rb")


def _hash_file(src: FileSource) -> tuple[int, Digest]:
    if src.size is not None and src.sha256 is not None:
        return src.size, Digest(src.sha256)
    with src.open() as f:
        return hash_file(f, READ_CHUNK_BYTES)


def describe_files(files: Sequence[FileSource]) -> tuple[FileEntry, ...]:
    """First pass over the attachments: sizes and SHA-256 for the manifest (skipped where already known)."""
    entries = []
    for src in files:
        size, digest = _hash_file(src)
        entries.append(FileEntry(src.name, src.media_type, size, digest))
    return tuple(entries)


def _stream_files(files: Sequence[FileSource], entries: Sequence[FileEntry]) -> Iterator[bytes]:
    """Second pass: the file bytes, checked against the first pass."""
    for src, entry in zip(files, entries, strict=True):
        with src.open() as f:
            reader = HashingReader(f, READ_CHUNK_BYTES)
            for chunk in reader:
                if reader.size > entry.size:
                    break
                yield chunk
        if reader.size != entry.size or reader.digest != entry.sha256:
            raise HashMismatchError(f"{entry.name} changed while it was being sent; send it again")


def _rechunk(stream: Iterable[bytes], size: int) -> Iterator[bytes]:
    buf = bytearray()
    for piece in stream:
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    yield bytes(buf)


def seal(
    kind: Kind,
    *,
    net: str,
    sender: AgencyKeys,
    recipients: Sequence[Recipient],
    at: int,
    length: int,
    plaintext: Iterable[bytes],
    rng: Rng,
    on_block: BlockSink | None = None,
    doc: Digest | None = None,
    code: StatusCode | None = None,
    seq: int = 0,
) -> Envelope:
    """Encrypt ``plaintext`` (exactly ``length`` bytes, in any pieces) and sign the header.

    Blocks of non-inline bodies go to ``on_block`` in order; the returned
    envelope carries only the header (and the body when inline).
    """
    recipients = sorted(recipients, key=lambda r: str(r.code))
    content_key = rng(CONTENT_KEY_BYTES)
    nonce = rng(NONCE_BYTES)
    wrapped = tuple(wrap_key(r.encryption_key, content_key, rng) for r in recipients)
    n_blocks = block_count(length)
    placeholder = BodyRef(length, BLOCK_BYTES, tuple(Digest(bytes(32)) for _ in range(n_blocks)))
    header = MessageHeader(
        kind=kind,
        net=net,
        sender=sender.code,
        kid=sender.signing.kid,
        at=at,
        to=tuple(r.code for r in recipients),
        keys=wrapped,
        nonce=nonce,
        body=placeholder,
        doc=doc,
        code=code,
        seq=seq,
    )
    binding = header.binding()
    hashes: list[Digest] = []
    inline: list[bytes] = []
    seen = 0

    def seal_block(chunk: bytes, index: int) -> tuple[bytes, Digest]:
        block = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            chunk, chunk_aad(binding, index, index == n_blocks - 1), chunk_nonce(nonce, index), content_key
        )
        return block, Digest.of(block)

    def done(block: bytes, digest: Digest) -> None:
        hashes.append(digest)
        if length <= INLINE_MAX_BYTES:
            inline.append(block)
        elif on_block is not None:
            on_block(digest, block)

    # A large body's blocks are encrypted and hashed on SEAL_THREADS threads at once (libsodium and hashlib release
    # the GIL), SEAL_AHEAD at most in flight, while this thread reads and hashes the next; results in block order.
    pool = ThreadPoolExecutor(SEAL_THREADS, thread_name_prefix="seal") if n_blocks >= PARALLEL_FROM_BLOCKS else None
    in_flight: deque[Future[tuple[bytes, Digest]]] = deque()
    try:
        for index, chunk in enumerate(_rechunk(plaintext, BLOCK_BYTES)):
            if index >= n_blocks:
                if chunk:
                    raise ValueError("plaintext longer than the announced length")  # caller bug
                break
            seen += len(chunk)
            if pool is None:
                done(*seal_block(chunk, index))
                continue
            in_flight.append(pool.submit(seal_block, chunk, index))
            while len(in_flight) >= SEAL_AHEAD:
                done(*in_flight.popleft().result())
        while in_flight:
            done(*in_flight.popleft().result())
    finally:
        if pool is not None:
            for future in in_flight:
                future.cancel()
            pool.shutdown(wait=True)
    if seen != length or len(hashes) != n_blocks:
        raise ValueError(f"plaintext has {seen} bytes, announced {length}")  # caller bug
    final_header = dataclasses.replace(header, body=BodyRef(length, BLOCK_BYTES, tuple(hashes)))
    header_bytes = Envelope.header_bytes_of(final_header)
    env = Envelope(final_header, header_bytes, b"\x00" * 64, tuple(inline))
    signature = sender.signing.sign(env.signed_bytes)
    return Envelope(final_header, header_bytes, signature, tuple(inline))


def wrap_key(recipient_public: bytes, content_key: bytes, rng: Rng) -> bytes:
    """libsodium's sealed box (``crypto_box_seal``), with the ephemeral key drawn from ``rng``.

    Byte-compatible with ``SealedBox.decrypt``: ``epk ‖ crypto_box(m, n, pk, esk)``
    with ``n = BLAKE2b-192(epk ‖ pk)``. Taking the ephemeral seed from ``rng``
    keeps sealing deterministic under test, so golden vectors can pin it.
    """
    epk, esk = nacl.bindings.crypto_box_seed_keypair(rng(32))
    nonce = nacl.bindings.crypto_generichash_blake2b_salt_personal(epk + recipient_public, digest_size=24)
    return bytes(epk + nacl.bindings.crypto_box(content_key, nonce, recipient_public, esk))


def body_length(manifest: bytes, meta: DocumentMeta) -> int:
    """A document body's length: the manifest's length prefix, the manifest, then every file."""
    return 4 + len(manifest) + meta.files_size


def seal_document(
    meta: DocumentMeta,
    files: Sequence[FileSource],
    *,
    net: str,
    sender: AgencyKeys,
    recipients: Sequence[Recipient],
    at: int,
    rng: Rng,
    on_block: BlockSink | None = None,
    entries: tuple[FileEntry, ...] | None = None,
    max_length: int | None = None,
) -> tuple[Envelope, DocumentMeta]:
    """Seal a document; returns the envelope and the manifest as sent (with file hashes).

    Reads each file twice (hash, then encrypt) so memory stays flat; pass
    ``entries`` when the caller already hashed them. ``max_length``: the
    largest body recipients accept; a longer one (attachments plus manifest,
    as they count it) raises TooLargeError before any block is sealed.
    """
    if not recipients:
        raise SchemaError("a document needs at least one recipient")
    entries = describe_files(files) if entries is None else entries
    full = dataclasses.replace(meta, files=entries)
    manifest = full.encode()
    length = body_length(manifest, full)
    if max_length is not None and length > max_length:
        raise TooLargeError(
            f"the document is {length} bytes ({full.files_size} of attachments, {length - full.files_size} of manifest), "
            f"this node accepts documents up to {max_length} bytes"
        )
    plaintext = _chain([manifest_prefix(manifest), manifest], _stream_files(files, entries))
    env = seal(
        Kind.DOCUMENT,
        net=net,
        sender=sender,
        recipients=recipients,
        at=at,
        length=length,
        plaintext=plaintext,
        rng=rng,
        on_block=on_block,
    )
    return env, full


def seal_status(
    *,
    net: str,
    sender: AgencyKeys,
    recipient: Recipient,
    doc: Digest,
    code: StatusCode,
    seq: int,
    note: str,
    at: int,
    rng: Rng,
) -> Envelope:
    body = StatusNote(note).encode()
    return seal(
        Kind.STATUS,
        net=net,
        sender=sender,
        recipients=[recipient],
        at=at,
        length=len(body) + 4,
        plaintext=[manifest_prefix(body), body],
        rng=rng,
        doc=doc,
        code=code,
        seq=seq,
    )


def _chain(first: Iterable[bytes], rest: Iterable[bytes]) -> Iterator[bytes]:
    yield from first
    yield from rest


# --- opening ------------------------------------------------------------------------


def unwrap_key(header: MessageHeader, keys: AgencyKeys) -> bytes:
    """The content key, unwrapped with ``keys``; raises NotAuthorizedError or DecryptError."""
    try:
        index = header.to.index(keys.code)
    except ValueError:
        raise NotAuthorizedError(f"{keys.code} is not a recipient of this envelope") from None
    try:
        key = nacl.public.SealedBox(keys.encryption.private_key).decrypt(header.keys[index])
    except nacl.exceptions.CryptoError:
        raise DecryptError(f"the content key for {keys.code} does not open with its encryption key") from None
    if len(key) != CONTENT_KEY_BYTES:
        raise DecryptError("the content key has the wrong length")
    return key


def open_blocks(header: MessageHeader, content_key: bytes, blocks: Iterable[bytes], *, checked: bool = False) -> Iterator[bytes]:
    """Check each sealed block against its signed hash and decrypt, in order.

    ``checked``: the caller vouches that every block was compared with the
    header's hash when it entered the node (``Envelope.decode`` for inline
    blocks, the fetcher for stored ones), so it is not hashed again (0.5 ms
    per MiB). Sizes are still checked, and decryption still authenticates
    each block (a damaged one is a DecryptError).
    """
    binding = header.binding()
    n = len(header.body.blocks)
    count = 0
    for index, block in enumerate(blocks):
        if index >= n:
            raise DecodeError("more blocks than the header lists")
        if len(block) != header.body.sealed_size(index) or (not checked and Digest.of(block) != header.body.blocks[index]):
            raise HashMismatchError(f"block {index}")
        try:
            yield nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                block, chunk_aad(binding, index, index == n - 1), chunk_nonce(header.nonce, index), content_key
            )
        except nacl.exceptions.CryptoError:
            raise DecryptError(f"block {index} does not decrypt") from None
        count += 1
    if count != n:
        raise DecodeError(f"the body has {n} blocks, got {count}")


def read_document(
    header: MessageHeader, keys: AgencyKeys, blocks: Iterable[bytes], *, checked: bool = False
) -> Iterator[DocumentMeta | FileBytes | FileDone]:
    """Open a document: yields its ``DocumentMeta`` first, then each file's bytes.

    ``FileDone`` is yielded only after the file's size and SHA-256 matched the
    manifest; otherwise HashMismatchError is raised. ``checked``: see
    :func:`open_blocks`.
    """
    key = unwrap_key(header, keys)
    reader = PlaintextReader()
    meta: DocumentMeta | None = None
    hashers: list[hashlib._Hash] = []

    def handle(events: Iterable[ManifestRead | FileBytes | FileDone]) -> Iterator[DocumentMeta | FileBytes | FileDone]:
        nonlocal meta
        for ev in events:
            if isinstance(ev, ManifestRead):
                meta = DocumentMeta.decode(ev.manifest)
                if body_length(ev.manifest, meta) != header.body.length:
                    raise DecodeError("the manifest's file sizes do not add up to the body length")
                reader.set_file_sizes([f.size for f in meta.files])
                hashers.extend(hashlib.sha256() for _ in meta.files)
                yield meta
            elif isinstance(ev, FileBytes):
                hashers[ev.index].update(ev.data)
                yield ev
            else:
                assert meta is not None
                if hashers[ev.index].digest() != meta.files[ev.index].sha256:
                    raise HashMismatchError(f"file {meta.files[ev.index].name}")
                yield ev

    for plain in open_blocks(header, key, blocks, checked=checked):
        yield from handle(reader.feed(plain))
    yield from handle(reader.close())


def read_status_note(env: Envelope, keys: AgencyKeys) -> StatusNote:
    header = env.header
    assert isinstance(header, MessageHeader) and header.kind is Kind.STATUS
    key = unwrap_key(header, keys)
    plain = b"".join(open_blocks(header, key, env.inline))
    if len(plain) < 4 or int.from_bytes(plain[:4], "big") != len(plain) - 4:
        raise DecodeError("status body layout")
    return StatusNote.decode(plain[4:])
