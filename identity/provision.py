"""Provisioning: node homes, directories and key sets, for the authority's tools, simnet, demos and tests.

``create_node_home`` is what ``truc init`` does and ``add_join_requests``
what ``truc directory add`` does; simnet, the demo and the benchmarks call
the same functions, so a simulated network is provisioned exactly like a
real one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from protocol.agency import AgencyCode
from protocol.config import NodeConfig, parse_config, render_config
from protocol.errors import ConfigError, DirectoryError, TrucError

from .directory import (
    AgencyRecord,
    Directory,
    DirectoryDelta,
    JoinRequest,
    KeyRecord,
    NodeRecord,
    load_chain,
    read_chain_file,
    sign_delta,
    sign_snapshot,
    write_chain_file,
)
from .home import PSK_FILE_NAME, Home
from .keys import (
    AgencyKeys,
    AuthorityPublic,
    NodeKey,
    SigningKey,
    load_authority_key,
    load_authority_public,
    save_agency_keys,
    save_node_key,
    write_toml_file,
)
from .psk import load_psk_file, save_psk_file

DAY_MS = 86_400_000
DEFAULT_NETWORK = "truc"


def now_ms() -> int:
    return int(time.time() * 1000)


class DeterministicRng:
    """A reproducible byte stream (SHA-256 in counter mode) for simulations, tests and vectors.

    Never use it for real keys: the whole stream follows from ``seed``.
    """

    def __init__(self, seed: bytes | str | int) -> None:
        self._seed = seed if isinstance(seed, bytes) else str(seed).encode()
        self._counter = 0
        self._buf = b""

    def __call__(self, n: int) -> bytes:
        parts = [self._buf]
        have = len(self._buf)
        while have < n:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            parts.append(block)
            have += len(block)
        data = b"".join(parts)
        self._buf = data[n:]
        return data[:n]


def agency_record(
    keys: AgencyKeys, name: str, node_peer: str, *, not_before: int = 0, not_after: int | None = None
) -> AgencyRecord:
    key = (
        KeyRecord(keys.signing.kid, keys.signing.public, not_before)
        if not_after is None
        else KeyRecord(keys.signing.kid, keys.signing.public, not_before, not_after)
    )
    return AgencyRecord(
        code=keys.code,
        name=name,
        signing_keys=(key,),
        encryption_key=keys.encryption.public,
        node=node_peer,
        parent=keys.code.parent,
    )


@dataclass
class ProvisionedNode:
    key: NodeKey
    agencies: list[AgencyKeys]
    addrs: tuple[str, ...] = ()

    @property
    def peer_id(self) -> str:
        return self.key.peer_id

    @property
    def codes(self) -> list[AgencyCode]:
        return [a.code for a in self.agencies]


def build_directory(
    *,
    net: str,
    nodes: Iterable[ProvisionedNode],
    names: dict[AgencyCode, str],
    serial: int,
    at: int,
    until: int,
) -> Directory:
    agencies: dict[AgencyCode, AgencyRecord] = {}
    node_records: dict[str, NodeRecord] = {}
    for n in nodes:
        node_records[n.peer_id] = NodeRecord(n.peer_id, tuple(n.addrs))
        for a in n.agencies:
            agencies[a.code] = agency_record(a, names.get(a.code, str(a.code)), n.peer_id)
    return Directory(net, serial, at, until, agencies, node_records, {})


def create_node_home(
    home: Path,
    codes: list[AgencyCode],
    names: dict[AgencyCode, str],
    authority_pub: Path,
    listen: tuple[str, ...],
    announce: tuple[str, ...] = (),
    bootstrap: tuple[str, ...] = (),
    *,
    ipc_socket: str = NodeConfig.ipc_socket,
    psk_file: Path | None = None,
) -> tuple[str, tuple[str, ...]]:
    """Create a node home (what ``truc init`` does); returns the peer id and the addresses it announces.

    ``psk_file``: the network's private-network key file, copied to
    ``home/swarm.key`` (0600) and named in the config.
    Raises ConfigError if ``home`` already holds a node, KeyFileError for a bad authority or key file.
    """
    pub = load_authority_public(authority_pub)
    network = pub.network or DEFAULT_NETWORK
    if Home(home).config_file.exists():
        raise ConfigError(f"{Home(home).config_file} exists: this is already a node home")
    psk = load_psk_file(psk_file) if psk_file is not None else None
    cfg = NodeConfig(
        network=network,
        codes=tuple(codes),
        listen=tuple(listen),
        bootstrap=tuple(bootstrap),
        ipc_socket=ipc_socket,
        psk_file=PSK_FILE_NAME if psk is not None else "",
    )
    parse_config(render_config(cfg), "the new config")  # validates listen/bootstrap with config-file messages
    paths = Home(home, cfg)
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o750)
    node_key = NodeKey(os.urandom(32))
    save_node_key(paths.node_key, node_key)
    if psk is not None:
        assert paths.psk_file is not None
        save_psk_file(paths.psk_file, psk)
    agencies = []
    for code in cfg.codes:
        keys = AgencyKeys.generate(code, os.urandom)
        save_agency_keys(paths.agency_key(code), keys)
        agencies.append(agency_record(keys, names.get(code, str(code)), node_key.peer_id))
    write_toml_file(
        paths.authority_pub,
        {"type": "truc-authority-public-v1", "network": network, "kid": pub.kid.hex(), "public": pub.public.hex()},
        comment="Pinned network authority public key.",
        secret=False,
    )
    paths.config_file.write_text(render_config(cfg), "utf-8")
    addrs = tuple(announce) or tuple(a for a in listen if "/0.0.0.0/" not in a and "/::/" not in a)
    request = JoinRequest(network, NodeRecord(node_key.peer_id, addrs), tuple(agencies)).signed(node_key)
    paths.join_request.write_bytes(request.encode())
    return node_key.peer_id, addrs


@dataclass(frozen=True)
class AgencyMove:
    """An agency already listed that a join request puts on another node or under other keys."""

    code: AgencyCode
    old_node: str
    new_node: str
    new_signing_key: bool
    new_encryption_key: bool

    def describe(self) -> str:
        keys = [k for k, changed in (("signing", self.new_signing_key), ("encryption", self.new_encryption_key)) if changed]
        moved = self.old_node != self.new_node
        where = f"from node {self.old_node} to node {self.new_node}" if moved else f"on node {self.new_node}"
        return f"moved {self.code} {where}" + (f" (new {' and new '.join(k + ' key' for k in keys)})" if keys else "")


@dataclass(frozen=True)
class JoinResult:
    serial: int
    agencies: int
    nodes: int
    moves: tuple[AgencyMove, ...] = ()


def add_join_requests(
    auth_dir: Path,
    dir_file: Path,
    requests: list[Path],
    *,
    valid_days: int,
    names: dict[AgencyCode, str],
    allow_move: bool = False,
) -> JoinResult:
    """List the nodes and agencies of join requests under a new serial.

    An agency the directory already lists on another node, or with other
    keys, is a *move*: its documents would from then on go to the new node,
    encrypted to the new keys, and what the old keys sign would be refused.
    That is refused (DirectoryError naming both nodes) unless ``allow_move``;
    two requests claiming one agency are always refused. Nothing is written
    when anything is refused.
    """
    key, network = load_authority(auth_dir)
    agencies: list[AgencyRecord] = []
    nodes: list[NodeRecord] = []
    claimed: dict[AgencyCode, Path] = {}
    for path in requests:
        try:
            req = JoinRequest.decode(path.read_bytes())
        except TrucError as exc:
            raise DirectoryError(f"{path}: not a valid join request: {exc.message}") from None
        if req.net != network:
            raise DirectoryError(f"{path} is for network {req.net!r}, the authority is for {network!r}")
        for a in req.agencies:
            if a.code in claimed:
                raise DirectoryError(f"{a.code} is claimed by both {claimed[a.code]} and {path}: list it on one node only")
            claimed[a.code] = path
        nodes.append(req.node)
        agencies.extend(dataclasses.replace(a, name=names.get(a.code, a.name)) for a in req.agencies)
    current = load_chain(read_chain_file(dir_file), AuthorityPublic(key.public, network)) if dir_file.exists() else None
    moves = tuple(m for m in (_move(current, a) for a in agencies) if m is not None)
    if moves and not allow_move:
        first = moves[0]
        raise DirectoryError(
            f"{first.code} is hosted by node {first.old_node}; {claimed[first.code]} asks to list it on node "
            f"{first.new_node} with {'its own' if first.new_signing_key else 'the same'} keys. With --move, documents to "
            f"{first.code} go to the new node, encrypted to the new keys, and what the old keys sign is refused"
            + (f" ({len(moves)} agencies would move)" if len(moves) > 1 else "")
        )
    delta = DirectoryDelta(put_agencies=tuple(agencies), put_nodes=tuple(nodes))
    serial = extend_directory_file(dir_file, key, network, delta, valid_days)
    return JoinResult(serial, len(agencies), len(nodes), moves)


def _move(current: Directory | None, new: AgencyRecord) -> AgencyMove | None:
    old = current.agencies.get(new.code) if current is not None else None
    if old is None:
        return None
    signing = {k.kid for k in old.signing_keys} != {k.kid for k in new.signing_keys}
    encryption = old.encryption_key != new.encryption_key
    if old.node == new.node and not signing and not encryption:
        return None
    return AgencyMove(new.code, old.node, new.node, signing, encryption)


def load_authority(auth_dir: Path) -> tuple[SigningKey, str]:
    """The authority's signing key and network from ``auth_dir/authority.key``."""
    key, network = load_authority_key(auth_dir / "authority.key")
    return key, network or DEFAULT_NETWORK


def extend_directory_file(dir_file: Path, key: SigningKey, network: str, delta: DirectoryDelta, valid_days: int) -> int:
    """Create the file (snapshot serial 1) or append a delta as the next serial; returns the serial."""
    now = now_ms()
    until = now + valid_days * DAY_MS
    pub = AuthorityPublic(key.public, network)
    if not dir_file.exists():
        d = Directory(
            network,
            1,
            now,
            until,
            {a.code: a for a in delta.put_agencies},
            {n.peer_id: n for n in delta.put_nodes},
            dict(delta.revoke),
        )
        snapshot = sign_snapshot(d, key, at=now)
        load_chain([snapshot], pub)  # the same checks every node will make
        write_chain_file(dir_file, [snapshot])
        return 1
    chain = read_chain_file(dir_file)
    current = load_chain(chain, pub)
    link = sign_delta(delta, net=network, base=current.serial, serial=current.serial + 1, until=until, key=key, at=now)
    load_chain([*chain, link], pub)
    write_chain_file(dir_file, [*chain, link])
    return current.serial + 1
