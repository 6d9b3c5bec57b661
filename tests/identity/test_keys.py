from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from identity.keys import (
    AgencyKeys,
    NodeKey,
    SigningKey,
    b58decode,
    b58encode,
    ed25519_public_of_peer_id,
    load_agency_keys,
    load_authority_key,
    load_authority_public,
    load_node_key,
    peer_id_of,
    save_agency_keys,
    save_authority,
    save_node_key,
    verify_signature,
)
from identity.provision import DeterministicRng
from protocol.agency import AgencyCode
from protocol.errors import KeyFileError, SignatureError


def test_secret_key_files_are_private_and_round_trip(tmp_path: Path) -> None:
    keys = AgencyKeys.generate(AgencyCode.parse("G22"), DeterministicRng(1))
    path = tmp_path / "keys" / "000.00.00.G22.key"
    save_agency_keys(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = load_agency_keys(path)
    assert back.code == keys.code and back.signing.public == keys.signing.public
    assert back.encryption.public == keys.encryption.public
    assert "000.00.00.G22" in path.read_text()  # an operator can tell what the file is


def test_readable_secret_keys_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_node_key(path, NodeKey(b"\x01" * 32))
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_node_key(path)


def test_key_files_are_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_node_key(path, NodeKey(b"\x01" * 32))
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        save_node_key(path, NodeKey(b"\x02" * 32))
    assert load_node_key(path).seed == b"\x01" * 32


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('type = "something-else"\n', "expected a key file of type"),
        ("not toml ===", "node.key"),
        ('type = "truc-node-secret-v1"\nseed = "zz"\n', "not hex"),
        ('type = "truc-node-secret-v1"\nseed = "00"\n', "must be 32 bytes"),
    ],
)
def test_bad_key_files_name_the_file_and_the_problem(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "node.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(KeyFileError, match=match):
        load_node_key(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_node_key(tmp_path / "missing.key")


def test_authority_files(tmp_path: Path) -> None:
    key = SigningKey.generate(DeterministicRng(2))
    secret, public = save_authority(tmp_path, key, "truc-test")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pub = load_authority_public(public)
    assert pub.public == key.public and pub.network == "truc-test" and pub.kid == key.kid
    assert load_authority_key(secret)[0].public == key.public


def test_signatures() -> None:
    key = SigningKey.generate(DeterministicRng(3))
    sig = key.sign(b"message")
    verify_signature(key.public, b"message", sig)
    with pytest.raises(SignatureError):
        verify_signature(key.public, b"messagf", sig)
    with pytest.raises(SignatureError):
        verify_signature(key.public, b"message", sig[:10])


def test_peer_ids_match_libp2p() -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    for seed in (b"\x01" * 32, bytes(range(32))):
        expected = ID.from_pubkey(create_new_key_pair(seed).public_key).to_base58()
        assert NodeKey(seed).peer_id == expected
        assert ed25519_public_of_peer_id(expected) == NodeKey(seed).public
    assert peer_id_of(b"\x00" * 32).startswith("12D3KooW")


def test_base58_round_trip() -> None:
    for data in (b"", b"\x00", b"\x00\x00\x01", bytes(range(40))):
        assert b58decode(b58encode(data)) == data
    with pytest.raises(KeyFileError):
        b58decode("0OIl")
