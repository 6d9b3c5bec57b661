"""Keys: Ed25519 signing keys with key ids, X25519 encryption keys, key files.

Key files are small TOML documents so an operator can read what a file is
without tools. Secret key files are written mode 0600 and refused when group
or others can read them.
"""

from __future__ import annotations

import functools
import os
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing

from protocol.agency import AgencyCode
from protocol.errors import AgencyCodeError, KeyFileError, SignatureError
from protocol.ids import key_id

Rng = Callable[[int], bytes]
SEED_BYTES = 32


class SigningKey:
    """An Ed25519 key pair; ``kid`` names its public half in the directory."""

    __slots__ = ("_sk", "kid", "public", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise KeyFileError(f"a signing key seed is {SEED_BYTES} bytes, got {len(seed)}")
        self.seed = bytes(seed)
        self._sk = nacl.signing.SigningKey(self.seed)
        self.public = bytes(self._sk.verify_key)
        self.kid = key_id(self.public)

    @classmethod
    def generate(cls, rng: Rng) -> SigningKey:
        return cls(rng(SEED_BYTES))

    def sign(self, message: bytes) -> bytes:
        return self._sk.sign(message).signature

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid.hex()})"


def verify_signature(public: bytes, message: bytes, signature: bytes) -> None:
    """Raise SignatureError unless ``signature`` is ``public``'s signature of ``message``."""
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        raise SignatureError() from None


class EncryptionKey:
    """An X25519 key pair for receiving sealed content keys."""

    __slots__ = ("private_key", "public", "secret")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SEED_BYTES:
            raise KeyFileError(f"an encryption key is {SEED_BYTES} bytes, got {len(secret)}")
        self.secret = bytes(secret)
        self.private_key = nacl.public.PrivateKey(self.secret)
        self.public = bytes(self.private_key.public_key)

    @classmethod
    def generate(cls, rng: Rng) -> EncryptionKey:
        return cls(rng(SEED_BYTES))

    def __repr__(self) -> str:
        return "EncryptionKey(...)"


@dataclass(frozen=True)
class AgencyKeys:
    """The secret keys a node holds for one agency it hosts."""

    code: AgencyCode
    signing: SigningKey
    encryption: EncryptionKey

    @classmethod
    def generate(cls, code: AgencyCode, rng: Rng) -> AgencyKeys:
        return cls(code, SigningKey.generate(rng), EncryptionKey.generate(rng))


# --- libp2p peer ids, computed without libp2p ----------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# protobuf PublicKey{Type: Ed25519, Data: 32 bytes}, wrapped in an identity multihash.
_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def peer_id_of(public: bytes) -> str:
    """The libp2p peer id (``12D3KooW...``) of an Ed25519 public key."""
    return b58encode(_PEER_ID_PREFIX + public)


def ed25519_public_of_peer_id(peer_id: str) -> bytes:
    """Inverse of :func:`peer_id_of`; raises KeyFileError for other peer ids."""
    raw = b58decode(peer_id)
    if len(raw) != len(_PEER_ID_PREFIX) + 32 or not raw.startswith(_PEER_ID_PREFIX):
        raise KeyFileError(f"{peer_id!r} is not an Ed25519 libp2p peer id")
    return raw[len(_PEER_ID_PREFIX) :]


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        i = _B58.find(ch)
        if i < 0:
            raise KeyFileError(f"{text!r:.60} is not base58")
        n = n * 58 + i
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * pad + body


@dataclass(frozen=True)
class NodeKey:
    """The node's libp2p identity (Ed25519)."""

    seed: bytes

    @functools.cached_property
    def public(self) -> bytes:
        return bytes(nacl.signing.SigningKey(self.seed).verify_key)

    @functools.cached_property
    def peer_id(self) -> str:
        # Cached: base58 is pure-Python big-integer division, and the dialer
        # compares against our own peer id once per directory node per second.
        return peer_id_of(self.public)


# --- key files ---------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    raise TypeError(type(v))


def write_toml_file(path: Path, fields: dict[str, Any], *, comment: str, secret: bool, overwrite: bool = False) -> None:
    """Write flat ``key = value`` TOML; secret files are created 0600 and never widened.

    Raises KeyFileError when the file exists and ``overwrite`` is false.
    """
    text = "".join(f"# {line}\n" for line in comment.splitlines())
    text += "".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items())
    path.parent.mkdir(mode=0o700 if secret else 0o755, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    fd = os.open(tmp, flags, 0o600 if secret else 0o644)
    try:
        os.fchmod(fd, 0o600 if secret else 0o644)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_toml_file(path: Path, *, secret: bool, expect_type: str) -> dict[str, Any]:
    """Read a key file, checking its permissions and its ``type`` field.

    Raises KeyFileError naming the file: missing, unreadable, wrong type, or
    (for secret keys) readable by group or others.
    """
    if secret:
        check_private(path, "a secret key")
    elif not path.exists():
        raise KeyFileError(f"{path} does not exist")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    if data.get("type") != expect_type:
        raise KeyFileError(f"{path}: expected a key file of type {expect_type!r}, found {data.get('type')!r}")
    return data


def check_private_dir(path: Path) -> None:
    """Raise KeyFileError unless ``path`` (a folder of secret keys) is closed to group and others.

    The key files in it are 0600 already; a folder others can list still
    tells them which agencies' keys live here, and one they can write lets
    them swap a key file.
    """
    check_private(path, "a folder of secret keys", folder=True)


def check_private(path: Path, what: str, *, folder: bool = False) -> None:
    """Raise KeyFileError unless ``path`` exists and group and others have no access (the message has the chmod)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is {'open to' if folder else 'readable by'} other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"{what} must be private: chmod {'700' if folder else '600'} {path}"
        )


def _hex_field(data: dict[str, Any], name: str, path: Path, size: int) -> bytes:
    try:
        raw = bytes.fromhex(str(data[name]))
    except (KeyError, ValueError):
        raise KeyFileError(f"{path}: field {name!r} is missing or not hex") from None
    if len(raw) != size:
        raise KeyFileError(f"{path}: field {name!r} must be {size} bytes")
    return raw


AGENCY_KEY_TYPE = "truc-agency-secret-v1"
NODE_KEY_TYPE = "truc-node-secret-v1"
AUTHORITY_KEY_TYPE = "truc-authority-secret-v1"
AUTHORITY_PUB_TYPE = "truc-authority-public-v1"


def save_agency_keys(path: Path, keys: AgencyKeys) -> None:
    write_toml_file(
        path,
        {
            "type": AGENCY_KEY_TYPE,
            "code": str(keys.code),
            "signing_kid": keys.signing.kid.hex(),
            "signing_seed": keys.signing.seed.hex(),
            "encryption_secret": keys.encryption.secret.hex(),
        },
        comment=f"Trục secret keys of agency {keys.code}. Keep private: whoever has this file can sign as this agency.",
        secret=True,
    )


def load_agency_keys(path: Path) -> AgencyKeys:
    data = read_toml_file(path, secret=True, expect_type=AGENCY_KEY_TYPE)
    try:
        code = AgencyCode.parse(str(data.get("code")))
    except AgencyCodeError as exc:
        raise KeyFileError(f"{path}: {exc.message}") from None
    return AgencyKeys(
        code,
        SigningKey(_hex_field(data, "signing_seed", path, SEED_BYTES)),
        EncryptionKey(_hex_field(data, "encryption_secret", path, SEED_BYTES)),
    )


def save_node_key(path: Path, key: NodeKey) -> None:
    write_toml_file(
        path,
        {"type": NODE_KEY_TYPE, "peer_id": key.peer_id, "seed": key.seed.hex()},
        comment="Trục node identity (libp2p Ed25519). Keep private.",
        secret=True,
    )


def load_node_key(path: Path) -> NodeKey:
    data = read_toml_file(path, secret=True, expect_type=NODE_KEY_TYPE)
    return NodeKey(_hex_field(data, "seed", path, SEED_BYTES))


def save_authority(directory: Path, key: SigningKey, network: str) -> tuple[Path, Path]:
    secret = directory / "authority.key"
    public = directory / "authority.pub"
    write_toml_file(
        secret,
        {"type": AUTHORITY_KEY_TYPE, "network": network, "kid": key.kid.hex(), "seed": key.seed.hex()},
        comment="Trục network authority secret key: signs the directory. Keep offline and private.",
        secret=True,
    )
    write_toml_file(
        public,
        {"type": AUTHORITY_PUB_TYPE, "network": network, "kid": key.kid.hex(), "public": key.public.hex()},
        comment="Trục network authority public key: every node pins it in its config.",
        secret=False,
    )
    return secret, public


def load_authority_key(path: Path) -> tuple[SigningKey, str]:
    data = read_toml_file(path, secret=True, expect_type=AUTHORITY_KEY_TYPE)
    return SigningKey(_hex_field(data, "seed", path, SEED_BYTES)), str(data.get("network", ""))


@dataclass(frozen=True)
class AuthorityPublic:
    public: bytes
    network: str

    @property
    def kid(self) -> bytes:
        return key_id(self.public)


def load_authority_public(path: Path) -> AuthorityPublic:
    data = read_toml_file(path, secret=False, expect_type=AUTHORITY_PUB_TYPE)
    return AuthorityPublic(_hex_field(data, "public", path, 32), str(data.get("network", "")))
