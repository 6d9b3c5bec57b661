"""Building directories and key sets: for the authority's tools, simnet, demos and tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.agency import AgencyCode

from .directory import AgencyRecord, Directory, KeyRecord, NodeRecord
from .keys import AgencyKeys, NodeKey


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
