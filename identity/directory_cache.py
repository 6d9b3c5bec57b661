"""The verified form of a directory, so that a node starts without re-verifying it.

Verifying a national directory (111,000 agencies) costs seconds: the
authority's signature is cheap, but every record is decoded strictly and
checked field by field. The result only changes when the chain does, so once a
chain has been verified the node writes what it found to
``cache_dir/directory.bin``: the directory as flat columns, keyed by a digest
of the pinned authority and of every chain link it was built from, and
authenticated with an HMAC under a key derived from this node's own secret
key. At the next start the file is used only when its version is known, its
HMAC verifies and its key matches the chain being loaded, or a prefix of it:
the links after the prefix (deltas the node received since) are then verified
and applied one by one, as before. Anything else (absent, another version,
damaged, stale) is reported, the chain is verified from scratch, and the file
is rewritten. The format is in ``docs/directory.md`` ("The verified form").

The file records the *result* of the checks that :func:`~identity.directory.apply_link`
makes; none of them is skipped, they are made once per chain. When those
checks change, :data:`CACHE_VERSION` changes with them so that older files
are rebuilt.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import hashlib
import hmac
import itertools
import os
import struct
import sys
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol import cbor
from protocol.agency import interned_codes
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, DirectoryHeader, Envelope
from protocol.errors import AgencyCodeError, DecodeError, DirectoryError, TrucError

from .directory import Directory, KeyRecord, NodeRecord, apply_link, read_chain_file, unchecked_keys, unchecked_records
from .keys import AuthorityPublic, NodeKey

CACHE_FILE = "directory.bin"
CACHE_VERSION = 1
MAGIC = b"truc-dvf"  # "directory, verified form"
MAC_BYTES = 32
_HEAD = struct.Struct(">8sII32s")  # magic, version, links covered, chain key
MAX_CACHE_BYTES = 4 * MAX_DIRECTORY_ENVELOPE_BYTES
_KEY_CONTEXT = b"truc/v1/directory-cache-key\x00"
_MAC_KEY_CONTEXT = b"truc/v1/directory-cache-mac\x00"
# fmt: off
_BODY_FIELDS = frozenset({
    "net", "serial", "at", "until", "n",
    "letter", "number", "l2", "l3", "l4", "parent", "name", "name_end", "enc", "node",
    "nkeys", "kid", "pub", "nbf", "naf",
    "nodes", "revoked",
})
# fmt: on


def _typecode(size: int) -> str:
    return next(t for t in "BHILQ" if array(t).itemsize == size)


_U16, _U32, _U64 = _typecode(2), _typecode(4), _typecode(8)


class CacheState(enum.Enum):
    """What the node found in its cache at start (the ``cache`` field of the log line)."""

    HIT = "hit"  # the file covered the whole chain: nothing was re-verified
    EXTENDED = "extended"  # it covered a prefix: the later links were verified and applied, the file rewritten
    ABSENT = "absent"  # no file: verified from scratch, file written
    STALE = "stale"  # a valid file for another chain or authority: verified from scratch, file rewritten
    DAMAGED = "damaged"  # unreadable, truncated, or its HMAC failed: never used, rebuilt
    VERSION = "version"  # another format version: rebuilt


@dataclass(frozen=True)
class CacheReport:
    state: CacheState
    detail: str  # why, for people: "no cache file", "HMAC does not verify (...)", "covers serial 3, chain is now serial 5"
    path: Path
    written: bool  # a new file was written for the whole chain
    write_error: str = ""  # why writing failed, if it did (the node runs on; the next start verifies again)


class _Unusable(Exception):
    """Internal: the cache file cannot be used; never leaves this module."""

    def __init__(self, state: CacheState, detail: str) -> None:
        super().__init__(detail)
        self.state = state
        self.detail = detail


def cache_mac_key(node_key: NodeKey) -> bytes:
    """The HMAC key of a node's cache: derived from its secret node key, so only that node can make a file it accepts."""
    return hmac.new(node_key.seed, _MAC_KEY_CONTEXT, "sha256").digest()


def chain_keys(chain: Sequence[Envelope], authority: AuthorityPublic) -> list[bytes]:
    """``keys[i]``: the digest naming the chain's first ``i + 1`` links as verified against ``authority``.

    Each link counts by its envelope id (the SHA-256 of its header, which
    carries the hash of its body) and its signature.
    """
    net = authority.network.encode("utf-8")
    h = hashlib.sha256(_KEY_CONTEXT + authority.public + struct.pack(">B", len(net)) + net).digest()
    keys = []
    for env in chain:
        h = hashlib.sha256(h + bytes(env.id) + env.signature).digest()
        keys.append(h)
    return keys


# --- encoding ---------------------------------------------------------------------------


def _packed(typecode: str, values: Iterator[int] | list[int]) -> bytes:
    a = array(typecode, values)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


def _unpacked(typecode: str, data: bytes, count: int, what: str) -> array[int]:
    a = array(typecode)
    if len(data) != count * a.itemsize:
        raise _Unusable(CacheState.DAMAGED, f"column {what} has {len(data)} bytes, expected {count * a.itemsize}")
    a.frombytes(data)
    if sys.byteorder == "big":
        a.byteswap()
    return a


def encode_verified(d: Directory, *, key: bytes, links: int, mac_key: bytes) -> bytes:
    """The verified form of ``d``, the directory that the first ``links`` links of a chain named ``key`` verified into."""
    recs = list(d.agencies.values())
    codes = [r.code for r in recs]
    row = {c: i for i, c in enumerate(codes)}
    peers = list(d.nodes)
    peer_row = {p: i for i, p in enumerate(peers)}
    keys = [k for r in recs for k in r.signing_keys]
    names = [r.name for r in recs]
    body = {
        "net": d.net,
        "serial": d.serial,
        "at": d.issued_at,
        "until": d.valid_until,
        "n": len(recs),
        "letter": "".join(c.letter for c in codes).encode("ascii"),
        "number": bytes(c.number for c in codes),
        "l2": bytes(c.l2 for c in codes),
        "l3": bytes(c.l3 for c in codes),
        "l4": _packed(_U16, [c.l4 for c in codes]),
        "parent": _packed(_U32, [0 if r.parent is None else row[r.parent] + 1 for r in recs]),
        "name": "".join(names).encode("utf-8"),
        "name_end": _packed(_U32, itertools.accumulate(len(n) for n in names)),
        "enc": b"".join(r.encryption_key for r in recs),
        "node": _packed(_U32, [peer_row[r.node] for r in recs]),
        "nkeys": bytes(len(r.signing_keys) for r in recs),
        "kid": b"".join(k.kid for k in keys),
        "pub": b"".join(k.public for k in keys),
        "nbf": _packed(_U64, [k.not_before for k in keys]),
        "naf": _packed(_U64, [k.not_after for k in keys]),
        "nodes": [[p, list(d.nodes[p].addrs)] for p in peers],
        "revoked": [[kid, at] for kid, at in d.revoked.items()],
    }
    content = _HEAD.pack(MAGIC, CACHE_VERSION, links, key) + cbor.encode(body)
    return content + hmac.new(mac_key, content, "sha256").digest()


# --- decoding ---------------------------------------------------------------------------


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    # Building 111,000 records allocates ~10^6 objects that hold no reference
    # cycles; left on, the cyclic collector re-walks the growing directory
    # again and again, which costs about as much as building it.
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _opened(data: bytes, mac_key: bytes) -> tuple[int, bytes]:
    """Check magic, size, version and HMAC; return (links covered, chain key). Raises _Unusable."""
    if len(data) < _HEAD.size + MAC_BYTES or data[:8] != MAGIC:
        raise _Unusable(CacheState.DAMAGED, "not a verified-directory file (too short or wrong magic)")
    _, version, links, key = _HEAD.unpack_from(data)
    if version != CACHE_VERSION:
        raise _Unusable(CacheState.VERSION, f"format version {version}, this node reads and writes {CACHE_VERSION}")
    if len(data) > MAX_CACHE_BYTES:
        raise _Unusable(CacheState.DAMAGED, f"{len(data)} bytes, limit {MAX_CACHE_BYTES}")
    view = memoryview(data)
    mac = hmac.new(mac_key, view[:-MAC_BYTES], "sha256").digest()
    if not hmac.compare_digest(mac, view[-MAC_BYTES:]):
        raise _Unusable(CacheState.DAMAGED, "HMAC does not verify (damaged, or written with another node key)")
    return links, key


def _directory_of(data: bytes) -> Directory:
    try:
        with _collector_paused():
            return _decode_body(data[_HEAD.size : -MAC_BYTES])
    except (DecodeError, AgencyCodeError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError) as exc:
        # The HMAC verified, so only a bug in the writer gets here.
        raise _Unusable(CacheState.DAMAGED, f"HMAC verifies but the content does not decode: {exc}") from None


def decode_verified(data: bytes, *, mac_key: bytes) -> tuple[Directory, bytes, int]:
    """The directory in a verified-form file, the chain key it was built from and how many links it covers.

    Raises _Unusable (DAMAGED or VERSION) for a file that must not be used.
    """
    links, key = _opened(data, mac_key)
    return _directory_of(data), key, links


def _decode_body(body: bytes) -> Directory:
    w = "verified form"
    m = cbor.expect_map(cbor.decode(body, max_bytes=MAX_CACHE_BYTES), w, _BODY_FIELDS)
    n = cbor.get_int(m, "n", w)

    def column(name: str, width: int) -> bytes:
        v = cbor.get_bytes(m, name, w)
        if len(v) != n * width:
            raise _Unusable(CacheState.DAMAGED, f"column {name} has {len(v)} bytes, expected {n * width}")
        return v

    # Validated when the file was written, and the HMAC says it is that file: not validated again.
    codes = interned_codes(
        column("letter", 1).decode("ascii"),
        column("number", 1),
        column("l2", 1),
        column("l3", 1),
        _unpacked(_U16, cbor.get_bytes(m, "l4", w), n, "l4"),
    )
    nodes = {}
    for item in cbor.get_list(m, "nodes", w, max_len=1 << 24):
        peer, addrs = item
        nodes[peer] = NodeRecord(peer, tuple(addrs))
    peers = list(nodes)
    text = cbor.get_bytes(m, "name", w).decode("utf-8")
    ends = _unpacked(_U32, cbor.get_bytes(m, "name_end", w), n, "name_end")
    names = [text[a:b] for a, b in zip(itertools.chain((0,), ends), ends, strict=False)]
    if n and ends[-1] != len(text):
        raise _Unusable(CacheState.DAMAGED, "names do not add up")
    counts = column("nkeys", 1)
    k = sum(counts)
    kids = _chunks(cbor.get_bytes(m, "kid", w), 8)
    pubs = _chunks(cbor.get_bytes(m, "pub", w), 32)
    nbf = _unpacked(_U64, cbor.get_bytes(m, "nbf", w), k, "nbf")
    naf = _unpacked(_U64, cbor.get_bytes(m, "naf", w), k, "naf")
    if len(kids) != k or len(pubs) != k:
        raise _Unusable(CacheState.DAMAGED, "key columns do not add up")
    flat = unchecked_keys(kids, pubs, nbf, naf)
    if k == n:  # one key per agency, the common case
        keys: list[tuple[KeyRecord, ...]] = list(zip(flat, strict=True))
    else:
        it = iter(flat)
        keys = [tuple(itertools.islice(it, c)) for c in counts]
    parents = [codes[i - 1] if i else None for i in _unpacked(_U32, cbor.get_bytes(m, "parent", w), n, "parent")]
    hosts = [peers[i] for i in _unpacked(_U32, cbor.get_bytes(m, "node", w), n, "node")]
    recs = unchecked_records(codes, names, keys, _chunks(column("enc", 32), 32), hosts, parents)
    agencies = dict(zip(codes, recs, strict=True))
    revoked = {kid: at for kid, at in cbor.get_list(m, "revoked", w, max_len=1 << 24)}
    if len(agencies) != n:
        raise _Unusable(CacheState.DAMAGED, "an agency is listed twice")
    return Directory(
        cbor.get_text(m, "net", w, max_len=63),
        cbor.get_int(m, "serial", w),
        cbor.get_int(m, "at", w),
        cbor.get_int(m, "until", w),
        agencies,
        nodes,
        revoked,
    )


# --- reading and writing the file -------------------------------------------------------


def write_verified(path: Path, d: Directory, *, key: bytes, links: int, mac_key: bytes) -> None:
    """Write the verified form atomically (a private temporary file, then rename); raises OSError.

    Concurrent writers each rename a complete file: the last one wins. There
    is no fsync: a file damaged by a power cut fails its HMAC and is rebuilt.
    """
    data = encode_verified(d, key=key, links=links, mac_key=mac_key)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_verified(path: Path, keys: Sequence[bytes], *, mac_key: bytes) -> tuple[Directory, int]:
    """The directory in ``path`` and how many links of the chain named by ``keys`` it covers.

    Raises _Unusable for a file that is absent, unreadable, damaged, of
    another version, or built from another chain (``keys`` as from
    :func:`chain_keys`).
    """
    try:
        size = path.stat().st_size
        if size > MAX_CACHE_BYTES:  # checked before reading it all into memory
            raise _Unusable(CacheState.DAMAGED, f"{size} bytes, limit {MAX_CACHE_BYTES}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Unusable(CacheState.ABSENT, "no cache file") from None
    except OSError as exc:
        raise _Unusable(CacheState.DAMAGED, f"cannot read it: {exc.strerror}") from None
    links, key = _opened(data, mac_key)
    if not (1 <= links <= len(keys) and hmac.compare_digest(keys[links - 1], key)):
        raise _Unusable(CacheState.STALE, f"built from another chain or authority ({links} links); this chain has {len(keys)}")
    return _directory_of(data), links


# --- what the node calls at start ---------------------------------------------------------


def _serial(env: Envelope) -> int:
    return env.header.serial if isinstance(env.header, DirectoryHeader) else 0


def load_directory_cached(
    path: Path,
    authority: AuthorityPublic,
    cache_dir: Path,
    *,
    mac_key: bytes,
    later: Sequence[Envelope] = (),
) -> tuple[Directory, list[Envelope], CacheReport]:
    """The directory of the chain in ``path`` then of the ``later`` links newer than it, with the chain used.

    Gives what :func:`~identity.directory.load_directory_file` followed by
    :func:`~identity.directory.apply_link` on each newer later link gives,
    using and refreshing the verified form in ``cache_dir``. ``later`` are the
    links received since (a node keeps them in its store); a link is used when
    its serial is above the serial reached so far, as before.

    Raises DirectoryError naming the file, or naming the later link that
    fails (``stored directory link N``). A cache that cannot be used or
    written never raises: the report says what happened.
    """
    chain = read_chain_file(path)
    in_file = len(chain)
    serial = _serial(chain[-1])
    for env in later:
        if _serial(env) > serial:
            chain.append(env)
            serial = _serial(env)
    keys = chain_keys(chain, authority)
    cache_path = cache_dir / CACHE_FILE
    directory: Directory | None
    try:
        directory, covered = read_verified(cache_path, keys, mac_key=mac_key)
        state = CacheState.HIT if covered == len(chain) else CacheState.EXTENDED
        detail = f"covers serial {directory.serial}" + ("" if state is CacheState.HIT else f", chain is now serial {serial}")
    except _Unusable as why:
        directory, covered, state, detail = None, 0, why.state, why.detail
    with _collector_paused():
        for i in range(covered, len(chain)):
            env = chain[i]
            try:
                directory = apply_link(directory, env, authority)
            except TrucError as exc:
                if i < in_file:
                    raise DirectoryError(f"{path}: {exc.message}") from None
                raise DirectoryError(f"stored directory link {_serial(env)}: {exc.message}") from None
    assert directory is not None  # read_chain_file returns at least one link
    written, write_error = False, ""
    if covered != len(chain):
        try:
            write_verified(cache_path, directory, key=keys[-1], links=len(chain), mac_key=mac_key)
            written = True
        except OSError as exc:
            write_error = f"{cache_path}: {exc.strerror or exc}"
    return directory, chain, CacheReport(state, detail, cache_path, written, write_error)
