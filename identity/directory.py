"""The signed directory (danh bạ): agencies, their keys, the nodes hosting them.

The network authority signs a *snapshot* (serial N, ``base`` 0) and then
*deltas* (serial M, ``base`` = the serial they apply to), so that a directory
of 111,000 agencies is updated by shipping only what changed. Every node pins
the authority's public key; it accepts a snapshot or a delta only when the
authority's signature verifies, the network id matches, and (for a delta)
its base is exactly the node's current serial.

A directory *file* is the chain: one snapshot followed by deltas in serial
order (``docs/directory.md``). ``truc directory add`` appends a delta;
nodes keep newer links they receive in their store.

Hosted codes are not listed on node records: they are derived from the
agencies' ``node`` field, so the two can never disagree.

Why one module: records, deltas, signing and the chain are one format, verified together;
docs/directory.md follows it section by section.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import cbor
from protocol.agency import AgencyCode
from protocol.envelope import (
    MAX_DIRECTORY_ENVELOPE_BYTES,
    DirectoryHeader,
    Envelope,
    Kind,
    check_network,
)
from protocol.errors import (
    AgencyCodeError,
    DecodeError,
    DirectoryError,
    KeyFileError,
    SchemaError,
    TrucError,
    UnknownAgencyError,
)
from protocol.ids import KEY_ID_BYTES, Digest, key_id

from .keys import AuthorityPublic, NodeKey, SigningKey, ed25519_public_of_peer_id, verify_signature

MAX_NAME_CHARS = 256
MAX_ADDRS = 16
MAX_SIGNING_KEYS = 8
FOREVER_MS = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class KeyRecord:
    kid: bytes
    public: bytes
    not_before: int = 0
    not_after: int = FOREVER_MS

    def to_cbor(self) -> dict[str, Any]:
        return {"kid": self.kid, "pub": self.public, "nbf": self.not_before, "naf": self.not_after}

    @classmethod
    def from_cbor(cls, v: Any, where: str) -> KeyRecord:
        m = cbor.expect_map(v, where, {"kid", "pub", "nbf", "naf"})
        rec = cls(
            kid=cbor.get_bytes(m, "kid", where, size=KEY_ID_BYTES),
            public=cbor.get_bytes(m, "pub", where, size=32),
            not_before=cbor.get_int(m, "nbf", where),
            not_after=cbor.get_int(m, "naf", where),
        )
        if key_id(rec.public) != rec.kid:
            raise SchemaError(f"{where}.kid: does not match the public key")
        if rec.not_after < rec.not_before:
            raise SchemaError(f"{where}: validity window ends before it starts")
        return rec


@dataclass(frozen=True, slots=True)
class AgencyRecord:
    code: AgencyCode
    name: str
    signing_keys: tuple[KeyRecord, ...]
    encryption_key: bytes
    node: str  # peer id of the hosting node
    parent: AgencyCode | None = None

    def to_cbor(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "name": self.name,
            "parent": None if self.parent is None else str(self.parent),
            "sign": [k.to_cbor() for k in self.signing_keys],
            "enc": self.encryption_key,
            "node": self.node,
        }

    @classmethod
    def from_cbor(cls, v: Any, where: str) -> AgencyRecord:
        m = cbor.expect_map(v, where, {"code", "name", "parent", "sign", "enc", "node"})
        code = _code(cbor.get_text(m, "code", where, max_len=13), f"{where}.code")
        parent = None if m["parent"] is None else _code(cbor.get_text(m, "parent", where, max_len=13), f"{where}.parent")
        if parent is not None and parent != code.parent:
            raise SchemaError(f"{where}.parent: {parent} is not the parent of {code}")
        keys = tuple(
            KeyRecord.from_cbor(k, f"{where}.sign[{i}]")
            for i, k in enumerate(cbor.get_list(m, "sign", where, min_len=1, max_len=MAX_SIGNING_KEYS))
        )
        return cls(
            code=code,
            name=cbor.get_text(m, "name", where, min_len=1, max_len=MAX_NAME_CHARS),
            signing_keys=keys,
            encryption_key=cbor.get_bytes(m, "enc", where, size=32),
            node=_peer(cbor.get_text(m, "node", where, max_len=128), f"{where}.node"),
            parent=parent,
        )


def unchecked_records(
    codes: Sequence[AgencyCode],
    names: Iterable[str],
    keys: Iterable[tuple[KeyRecord, ...]],
    encryption_keys: Iterable[bytes],
    nodes: Iterable[str],
    parents: Iterable[AgencyCode | None],
) -> list[AgencyRecord]:
    """AgencyRecords from columns, made without their ``__init__`` (the slots set directly).

    Only for values checked before and come back authenticated (the verified
    form, identity/directory_cache.py): equal to the records ``__init__``
    makes, in half the time (111,000 records per start).
    """
    new = object.__new__
    code_, name_, keys_, enc_, node_, parent_ = (getattr(AgencyRecord, f).__set__ for f in _AGENCY_FIELDS)
    out = []
    for code, name, signing_keys, enc, node, parent in zip(codes, names, keys, encryption_keys, nodes, parents, strict=True):
        rec = new(AgencyRecord)
        code_(rec, code)
        name_(rec, name)
        keys_(rec, signing_keys)
        enc_(rec, enc)
        node_(rec, node)
        parent_(rec, parent)
        out.append(rec)
    return out


def unchecked_keys(kids: Iterable[bytes], publics: Iterable[bytes], nbf: Iterable[int], naf: Iterable[int]) -> list[KeyRecord]:
    """KeyRecords from columns, as :func:`unchecked_records` (same conditions)."""
    new = object.__new__
    kid_, pub_, nbf_, naf_ = (getattr(KeyRecord, f).__set__ for f in _KEY_FIELDS)
    out = []
    for kid, public, not_before, not_after in zip(kids, publics, nbf, naf, strict=True):
        rec = new(KeyRecord)
        kid_(rec, kid)
        pub_(rec, public)
        nbf_(rec, not_before)
        naf_(rec, not_after)
        out.append(rec)
    return out


_AGENCY_FIELDS = ("code", "name", "signing_keys", "encryption_key", "node", "parent")  # every field, in order
_KEY_FIELDS = ("kid", "public", "not_before", "not_after")


@dataclass(frozen=True, slots=True)
class NodeRecord:
    peer_id: str
    addrs: tuple[str, ...]

    def to_cbor(self) -> dict[str, Any]:
        return {"peer": self.peer_id, "addrs": list(self.addrs)}

    @classmethod
    def from_cbor(cls, v: Any, where: str) -> NodeRecord:
        m = cbor.expect_map(v, where, {"peer", "addrs"})
        addrs = cbor.get_list(m, "addrs", where, max_len=MAX_ADDRS)
        for i, a in enumerate(addrs):
            if type(a) is not str or not a.startswith("/") or len(a) > 256:
                raise SchemaError(f"{where}.addrs[{i}]: expected a multiaddr like /ip4/10.0.0.1/tcp/4001")
        return cls(_peer(cbor.get_text(m, "peer", where, max_len=128), f"{where}.peer"), tuple(addrs))


def _code(text: str, where: str) -> AgencyCode:
    try:
        code = AgencyCode.parse(text)
    except AgencyCodeError as exc:
        raise SchemaError(f"{where}: {exc.detail}") from None
    if str(code) != text:
        raise SchemaError(f"{where}: write {text!r} in the canonical form {code}")
    return code


def _peer(text: str, where: str) -> str:
    if not _is_peer_id(text):
        raise SchemaError(f"{where}: {text!r:.60} is not an Ed25519 libp2p peer id")
    return text


@functools.lru_cache(maxsize=4096)
def _is_peer_id(text: str) -> bool:
    # Cached: a directory names ~100 nodes thousands of times each, and base58
    # decoding dominated loading a national-size snapshot.
    try:
        ed25519_public_of_peer_id(text)
    except KeyFileError:
        return False
    return True


def _sorted_unique(items: list[Any], key: Any, where: str) -> None:
    keys = [key(i) for i in items]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise SchemaError(f"{where}: must be sorted and without duplicates")


@dataclass(frozen=True)
class DirectoryDelta:
    """What changes between two serials."""

    put_agencies: tuple[AgencyRecord, ...] = ()
    del_agencies: tuple[AgencyCode, ...] = ()
    put_nodes: tuple[NodeRecord, ...] = ()
    del_nodes: tuple[str, ...] = ()
    revoke: tuple[tuple[bytes, int], ...] = ()  # (key id, revocation time ms)

    def to_cbor(self) -> dict[str, Any]:
        return {
            "v": 1,
            "put_agencies": [a.to_cbor() for a in sorted(self.put_agencies, key=lambda a: str(a.code))],
            "del_agencies": sorted(str(c) for c in self.del_agencies),
            "put_nodes": [n.to_cbor() for n in sorted(self.put_nodes, key=lambda n: n.peer_id)],
            "del_nodes": sorted(self.del_nodes),
            "revoke": [[kid, at] for kid, at in sorted(self.revoke)],
        }

    @classmethod
    def from_cbor(cls, v: Any) -> DirectoryDelta:
        where = "delta"
        m = cbor.expect_map(v, where, {"v", "put_agencies", "del_agencies", "put_nodes", "del_nodes", "revoke"})
        if cbor.get_int(m, "v", where) != 1:
            raise SchemaError("delta.v: only version 1 is known")
        big = 1 << 24
        pa = cbor.get_list(m, "put_agencies", where, max_len=big)
        _sorted_unique(pa, lambda a: a.get("code", "") if type(a) is dict else "", "delta.put_agencies")
        da = cbor.get_list(m, "del_agencies", where, max_len=big)
        _sorted_unique(da, str, "delta.del_agencies")
        pn = cbor.get_list(m, "put_nodes", where, max_len=big)
        _sorted_unique(pn, lambda n: n.get("peer", "") if type(n) is dict else "", "delta.put_nodes")
        dn = cbor.get_list(m, "del_nodes", where, max_len=big)
        _sorted_unique(dn, str, "delta.del_nodes")
        rv = cbor.get_list(m, "revoke", where, max_len=big)
        return cls(
            put_agencies=tuple(AgencyRecord.from_cbor(a, f"delta.put_agencies[{i}]") for i, a in enumerate(pa)),
            del_agencies=tuple(_code(c if type(c) is str else "", f"delta.del_agencies[{i}]") for i, c in enumerate(da)),
            put_nodes=tuple(NodeRecord.from_cbor(n, f"delta.put_nodes[{i}]") for i, n in enumerate(pn)),
            del_nodes=tuple(_peer(p if type(p) is str else "", f"delta.del_nodes[{i}]") for i, p in enumerate(dn)),
            revoke=tuple(_revocation(r, f"delta.revoke[{i}]") for i, r in enumerate(rv)),
        )

    @property
    def empty(self) -> bool:
        return not (self.put_agencies or self.del_agencies or self.put_nodes or self.del_nodes or self.revoke)


def _revocation(v: Any, where: str) -> tuple[bytes, int]:
    if (
        type(v) is not list
        or len(v) != 2
        or type(v[0]) is not bytes
        or len(v[0]) != KEY_ID_BYTES
        or type(v[1]) is not int
        or v[1] < 0
    ):
        raise SchemaError(f"{where}: expected [key id (8 bytes), time ms]")
    return v[0], v[1]


@dataclass
class Directory:
    """One verified serial of the directory. Treat as immutable: ``apply`` returns a new one."""

    net: str
    serial: int
    issued_at: int
    valid_until: int
    agencies: dict[AgencyCode, AgencyRecord]
    nodes: dict[str, NodeRecord]
    revoked: dict[bytes, int] = field(default_factory=dict)
    _by_kid: dict[bytes, AgencyRecord] | None = field(default=None, repr=False)
    _hosted: dict[str, list[AgencyCode]] | None = field(default=None, repr=False)
    _shards: frozenset[str] | None = field(default=None, repr=False)

    # --- queries ----------------------------------------------------------------

    def agency(self, code: AgencyCode) -> AgencyRecord:
        try:
            return self.agencies[code]
        except KeyError:
            raise UnknownAgencyError(str(code)) from None

    def node_of(self, code: AgencyCode) -> NodeRecord:
        """The node hosting ``code``; raises UnknownAgencyError."""
        rec = self.agency(code)
        return self.nodes[rec.node]

    def hosted_by(self, peer_id: str) -> list[AgencyCode]:
        """The codes ``peer_id`` hosts, in code order (do not modify the list: directories share them)."""
        if self._hosted is None:
            hosted: dict[str, list[AgencyCode]] = {}
            for rec in self.agencies.values():
                hosted.setdefault(rec.node, []).append(rec.code)
            for codes in hosted.values():
                codes.sort(key=_code_order)  # a key per code, not a tuple pair per comparison: 3x faster at 111,000
            self._hosted = hosted
        return self._hosted.get(peer_id, [])

    def shards(self) -> frozenset[str]:
        """The level-1 codes (``G22``) of every listed agency: the shards a node relaying all of them follows.

        Made once per directory: the set comprehension over 111,000 codes was
        30 ms of a node's start, and every sync round asked again.
        """
        if self._shards is None:
            self._shards = frozenset(f"{letter}{number:02d}" for letter, number in {(c.letter, c.number) for c in self.agencies})
        return self._shards

    def key_owner(self, kid: bytes) -> AgencyRecord | None:
        if self._by_kid is None:
            self._by_kid = {k.kid: rec for rec in self.agencies.values() for k in rec.signing_keys}
        return self._by_kid.get(kid)

    # --- content ----------------------------------------------------------------

    def snapshot_cbor(self) -> dict[str, Any]:
        return {
            "v": 1,
            "agencies": [self.agencies[c].to_cbor() for c in sorted(self.agencies, key=str)],
            "nodes": [self.nodes[p].to_cbor() for p in sorted(self.nodes)],
            "revoked": [[kid, at] for kid, at in sorted(self.revoked.items())],
        }

    @classmethod
    def from_snapshot(cls, header: DirectoryHeader, body: bytes) -> Directory:
        m = cbor.expect_map(
            cbor.decode(body, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES), "snapshot", {"v", "agencies", "nodes", "revoked"}
        )
        if cbor.get_int(m, "v", "snapshot") != 1:
            raise SchemaError("snapshot.v: only version 1 is known")
        big = 1 << 24
        raw_a = cbor.get_list(m, "agencies", "snapshot", max_len=big)
        raw_n = cbor.get_list(m, "nodes", "snapshot", max_len=big)
        agencies = {}
        for i, a in enumerate(raw_a):
            rec = AgencyRecord.from_cbor(a, f"snapshot.agencies[{i}]")
            agencies[rec.code] = rec
        if len(agencies) != len(raw_a):
            raise SchemaError("snapshot.agencies: an agency is listed twice")
        _sorted_unique([str(c) for c in agencies], str, "snapshot.agencies")
        nodes = {}
        for i, n in enumerate(raw_n):
            nrec = NodeRecord.from_cbor(n, f"snapshot.nodes[{i}]")
            nodes[nrec.peer_id] = nrec
        if len(nodes) != len(raw_n):
            raise SchemaError("snapshot.nodes: a node is listed twice")
        _sorted_unique(list(nodes), str, "snapshot.nodes")
        revoked = dict(
            _revocation(r, f"snapshot.revoked[{i}]") for i, r in enumerate(cbor.get_list(m, "revoked", "snapshot", max_len=big))
        )
        d = cls(header.net, header.serial, header.at, header.until, agencies, nodes, revoked)
        d._check_integrity(agencies.values())
        return d

    def _check_integrity(self, touched: Iterable[AgencyRecord]) -> None:
        for rec in touched:
            if rec.node not in self.nodes:
                raise DirectoryError(f"agency {rec.code} is hosted by node {rec.node}, which is not listed")
            if rec.parent is not None and rec.parent not in self.agencies:
                raise DirectoryError(f"agency {rec.code} has parent {rec.parent}, which is not listed")

    def apply(self, delta: DirectoryDelta, header: DirectoryHeader) -> Directory:
        """The directory after ``delta``; raises DirectoryError if the result is inconsistent."""
        if header.base != self.serial:
            raise DirectoryError(f"delta applies to serial {header.base}, this directory is serial {self.serial}")
        if header.net != self.net:
            raise DirectoryError(f"delta is for network {header.net!r}, this directory is {self.net!r}")
        agencies = dict(self.agencies)
        nodes = dict(self.nodes)
        revoked = dict(self.revoked)
        hosted = _HostedIndex(self._hosted)
        for code in delta.del_agencies:
            removed = agencies.pop(code, None)
            if removed is None:
                raise DirectoryError(f"delta removes agency {code}, which is not listed")
            hosted.remove(removed)
        for rec in delta.put_agencies:
            replaced = agencies.get(rec.code)
            if replaced is not None:
                hosted.remove(replaced)
            agencies[rec.code] = rec
            hosted.add(rec)
        for peer in delta.del_nodes:
            if nodes.pop(peer, None) is None:
                raise DirectoryError(f"delta removes node {peer}, which is not listed")
        for nrec in delta.put_nodes:
            nodes[nrec.peer_id] = nrec
        for kid, at in delta.revoke:
            revoked.setdefault(kid, at)
        new = Directory(self.net, header.serial, header.at, header.until, agencies, nodes, revoked)
        new._hosted = hosted.result()
        new._check_integrity(delta.put_agencies)
        if delta.del_nodes:
            gone = set(delta.del_nodes)
            still = [c for c, r in agencies.items() if r.node in gone]
            if still:
                raise DirectoryError(f"delta removes a node that still hosts {still[0]}")
        if delta.del_agencies:
            gone_codes = set(delta.del_agencies)
            orphans = [c for c, r in agencies.items() if r.parent in gone_codes]
            if orphans:
                raise DirectoryError(f"delta removes the parent of {orphans[0]}")
        return new

    def diff(self, other: Directory) -> DirectoryDelta:
        """The delta that turns ``self`` into ``other`` (for the authority's tools)."""
        return DirectoryDelta(
            put_agencies=tuple(r for c, r in other.agencies.items() if self.agencies.get(c) != r),
            del_agencies=tuple(c for c in self.agencies if c not in other.agencies),
            put_nodes=tuple(n for p, n in other.nodes.items() if self.nodes.get(p) != n),
            del_nodes=tuple(p for p in self.nodes if p not in other.nodes),
            revoke=tuple((k, at) for k, at in other.revoked.items() if k not in self.revoked),
        )


def _code_order(code: AgencyCode) -> tuple[str, int, int, int, int]:
    return (code.letter, code.number, code.l2, code.l3, code.l4)  # AgencyCode's own order


class _HostedIndex:
    """Carries a directory's codes-per-node index across a delta, copying only the lists the delta changes.

    Rebuilding it costs tens of milliseconds at 111,000 agencies, paid again
    after every delta on the first peer connection.
    """

    def __init__(self, before: dict[str, list[AgencyCode]] | None) -> None:
        self.hosted = None if before is None else dict(before)
        self.copied: set[str] = set()

    def _codes(self, peer: str) -> list[AgencyCode]:
        assert self.hosted is not None
        if peer not in self.copied:
            self.hosted[peer] = list(self.hosted.get(peer, ()))
            self.copied.add(peer)
        return self.hosted[peer]

    def remove(self, rec: AgencyRecord) -> None:
        if self.hosted is not None:
            self._codes(rec.node).remove(rec.code)

    def add(self, rec: AgencyRecord) -> None:
        if self.hosted is not None:
            bisect.insort(self._codes(rec.node), rec.code, key=_code_order)

    def result(self) -> dict[str, list[AgencyCode]] | None:
        if self.hosted is not None:
            for peer in self.copied:
                if not self.hosted[peer]:
                    del self.hosted[peer]
        return self.hosted


# --- signing and verifying ----------------------------------------------------------


def _sign(header: DirectoryHeader, body: bytes, key: SigningKey) -> Envelope:
    header_bytes = Envelope.header_bytes_of(header)
    unsigned = Envelope(header, header_bytes, b"\x00" * 64, (body,))
    return Envelope(header, header_bytes, key.sign(unsigned.signed_bytes), (body,))


def sign_snapshot(d: Directory, key: SigningKey, *, at: int) -> Envelope:
    body = cbor.encode(d.snapshot_cbor())
    header = DirectoryHeader(d.net, key.kid, at, d.serial, 0, d.valid_until, len(body), Digest.of(body))
    return _sign(header, body, key)


def sign_delta(delta: DirectoryDelta, *, net: str, base: int, serial: int, until: int, key: SigningKey, at: int) -> Envelope:
    body = cbor.encode(delta.to_cbor())
    header = DirectoryHeader(net, key.kid, at, serial, base, until, len(body), Digest.of(body))
    return _sign(header, body, key)


def verify_link(env: Envelope, authority: AuthorityPublic) -> DirectoryHeader:
    """Check a directory envelope's authority signature and network; return its header.

    Raises DirectoryError (wrong kind, wrong network, wrong authority key) or
    SignatureError.
    """
    header = env.header
    if not isinstance(header, DirectoryHeader):
        raise DirectoryError(f"expected a directory envelope, got a {env.kind.value} envelope")
    if authority.network and header.net != authority.network:
        raise DirectoryError(f"this directory is for network {header.net!r}, the pinned authority is for {authority.network!r}")
    if header.kid != authority.kid:
        raise DirectoryError("signed by a key that is not the pinned network authority")
    verify_signature(authority.public, env.signed_bytes, env.signature)
    return header


def apply_link(current: Directory | None, env: Envelope, authority: AuthorityPublic | None) -> Directory:
    """Verify one chain link and return the directory after it.

    A snapshot replaces ``current`` when its serial is higher; a delta must
    apply exactly to ``current``. ``authority=None`` skips the signature check
    (only for showing a file whose authority key is not at hand). Raises
    DirectoryError, SignatureError or a DecodeError subclass.
    """
    if authority is not None:
        header = verify_link(env, authority)
    elif isinstance(env.header, DirectoryHeader):
        header = env.header
    else:
        raise DirectoryError(f"expected a directory envelope, got a {env.kind.value} envelope")
    body = env.inline[0]
    if header.is_snapshot:
        if current is not None and header.serial <= current.serial:
            raise DirectoryError(f"snapshot serial {header.serial} is not newer than {current.serial}")
        return Directory.from_snapshot(header, body)
    if current is None:
        raise DirectoryError("a directory chain must start with a snapshot")
    delta = DirectoryDelta.from_cbor(cbor.decode(body, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES))
    return current.apply(delta, header)


def load_chain(envelopes: Iterable[Envelope], authority: AuthorityPublic | None) -> Directory:
    current: Directory | None = None
    for env in envelopes:
        current = apply_link(current, env, authority)
    if current is None:
        raise DirectoryError("the directory file is empty")
    return current


# --- the directory file ----------------------------------------------------------------

FILE_VERSION = 1


def encode_chain(envelopes: Iterable[Envelope]) -> bytes:
    return cbor.encode({"v": FILE_VERSION, "chain": [e.encode() for e in envelopes]})


def decode_chain(data: bytes) -> list[Envelope]:
    m = cbor.expect_map(cbor.decode(data, max_bytes=4 * MAX_DIRECTORY_ENVELOPE_BYTES), "directory file", {"v", "chain"})
    if cbor.get_int(m, "v", "directory file") != FILE_VERSION:
        raise SchemaError(f"directory file: only version {FILE_VERSION} is known")
    items = cbor.get_list(m, "chain", "directory file", min_len=1, max_len=1 << 20)
    envs = []
    for i, raw in enumerate(items):
        if type(raw) is not bytes:
            raise SchemaError(f"directory file.chain[{i}]: expected bytes")
        env = Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES)
        if env.kind is not Kind.DIRECTORY:
            raise SchemaError(f"directory file.chain[{i}]: not a directory envelope")
        envs.append(env)
    return envs


def read_chain_file(path: Path) -> list[Envelope]:
    """Read a directory file; raises DirectoryError naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DirectoryError(f"{path} does not exist") from None
    except OSError as exc:
        raise DirectoryError(f"{path}: {exc.strerror}") from None
    try:
        return decode_chain(data)
    except DecodeError as exc:
        raise DirectoryError(f"{path}: {exc.message}") from None


def write_chain_file(path: Path, envelopes: Iterable[Envelope]) -> None:
    """Write atomically (temp file, fsync, rename)."""
    data = encode_chain(envelopes)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_directory_file(path: Path, authority: AuthorityPublic) -> tuple[Directory, list[Envelope]]:
    chain = read_chain_file(path)
    try:
        return load_chain(chain, authority), chain
    except TrucError as exc:
        raise DirectoryError(f"{path}: {exc.message}") from None


# --- join requests: what a new node asks the authority to list -----------------------

JOIN_CONTEXT = b"truc/v1/join-request\x00"


@dataclass(frozen=True)
class JoinRequest:
    net: str
    node: NodeRecord
    agencies: tuple[AgencyRecord, ...]
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {
            "v": 1,
            "net": self.net,
            "node": self.node.to_cbor(),
            "agencies": [a.to_cbor() for a in sorted(self.agencies, key=lambda a: str(a.code))],
        }

    def signed(self, node_key: NodeKey) -> JoinRequest:
        sig = SigningKey(node_key.seed).sign(JOIN_CONTEXT + cbor.encode(self.body()))
        return JoinRequest(self.net, self.node, self.agencies, sig)

    def encode(self) -> bytes:
        return cbor.encode({"req": self.body(), "sig": self.signature})

    @classmethod
    def decode(cls, data: bytes) -> JoinRequest:
        """Decode and check the node's signature (proof it holds the peer id's key)."""
        outer = cbor.expect_map(cbor.decode(data, max_bytes=1 << 20), "join request", {"req", "sig"})
        m = cbor.expect_map(outer["req"], "join request", {"v", "net", "node", "agencies"})
        if cbor.get_int(m, "v", "join request") != 1:
            raise SchemaError("join request.v: only version 1 is known")
        node = NodeRecord.from_cbor(m["node"], "join request.node")
        agencies = tuple(
            AgencyRecord.from_cbor(a, f"join request.agencies[{i}]")
            for i, a in enumerate(cbor.get_list(m, "agencies", "join request", min_len=1, max_len=4096))
        )
        for a in agencies:
            if a.node != node.peer_id:
                raise SchemaError(f"join request: agency {a.code} names another node")
        sig = cbor.get_bytes(outer, "sig", "join request", size=64)
        req = cls(check_network(cbor.get_text(m, "net", "join request", max_len=63)), node, agencies, sig)
        verify_signature(ed25519_public_of_peer_id(node.peer_id), JOIN_CONTEXT + cbor.encode(req.body()), sig)
        return req
