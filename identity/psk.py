"""The network's pre-shared key (libp2p private network, PSK v1) and its key file.

The file is the one every libp2p implementation reads (go-libp2p's
``swarm.key``, js-libp2p's ``@libp2p/pnet``), so one file serves nodes written
in any language::

    /key/swarm/psk/1.0.0/
    /base16/
    <64 hex digits: the 32-byte key>

Line handling follows go-libp2p's reader (``core/pnet/codec.go``): each line
ends in ``\\n`` (a ``\\r`` before it is dropped), the key line may end the file
without a newline, and blank lines may follow. The specification also names
``/base64/`` and ``/bin/`` encodings, but js-libp2p reads only base16, so this
network writes and accepts base16 alone: a file that js-libp2p would refuse is
refused here too, with a message saying why. Hex digits may be upper or lower
case (go accepts both); spaces around the key are refused rather than guessed
away, because not every implementation trims them.

The file is a secret of the whole network: written 0600, refused when group or
others can read it (like the node's own key files).
"""

from __future__ import annotations

import os
from pathlib import Path

from protocol.errors import KeyFileError

from .keys import Rng, check_private

PSK_BYTES = 32
HEADER = "/key/swarm/psk/1.0.0/"
ENCODING = "/base16/"
_HEX = frozenset("0123456789abcdefABCDEF")


def parse_psk_file(text: str, source: str = "the key file") -> bytes:
    """The 32-byte key of a PSK v1 key file's text; raises KeyFileError naming ``source`` and the fault."""
    lines = text.split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if len(lines) != 3:
        raise KeyFileError(
            f"{source}: a private-network key file has 3 lines ({HEADER}, {ENCODING}, 64 hex digits), found {len(lines)}"
        )
    header, encoding, key = lines
    if header != HEADER:
        raise KeyFileError(f"{source}: line 1 must be {HEADER} (a libp2p PSK v1 key file), found {header[:40]!r}")
    if encoding != ENCODING:
        if encoding in ("/base64/", "/bin/"):
            raise KeyFileError(
                f"{source}: line 2 is {encoding}; this network uses {ENCODING} (js-libp2p reads only base16): "
                "re-encode the same key as 64 hex digits"
            )
        raise KeyFileError(f"{source}: line 2 must be {ENCODING}, found {encoding[:40]!r}")
    if key != key.strip():
        raise KeyFileError(f"{source}: line 3 has spaces or tabs around the key; it must be exactly 64 hex digits")
    if len(key) != 2 * PSK_BYTES:
        raise KeyFileError(f"{source}: line 3 must be 64 hex digits (32 bytes), found {len(key)} characters")
    if not set(key) <= _HEX:
        raise KeyFileError(f"{source}: line 3 must be hex digits (0-9, a-f), found {sorted(set(key) - _HEX)[0]!r}")
    return bytes.fromhex(key)


def render_psk_file(key: bytes) -> str:
    """The standard key file for ``key`` (lower-case hex, a final newline)."""
    if len(key) != PSK_BYTES:
        raise KeyFileError(f"a private-network key is {PSK_BYTES} bytes, got {len(key)}")
    return f"{HEADER}\n{ENCODING}\n{key.hex()}\n"


def generate_psk(rng: Rng) -> bytes:
    return rng(PSK_BYTES)


def save_psk_file(path: Path, key: bytes, *, overwrite: bool = False) -> None:
    """Write the key file mode 0600 (atomically); raises KeyFileError if it exists and ``overwrite`` is false."""
    text = render_psk_file(key)
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a private-network key")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_psk_file(path: Path) -> bytes:
    """Read and check a key file; raises KeyFileError: missing, readable by others, or not a PSK v1 file."""
    check_private(path, "the network's private key")
    try:
        text = path.read_bytes().decode("ascii")
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a text file; a private-network key file is 3 lines of ASCII") from None
    return parse_psk_file(text, str(path))


def configured_psk(psk_hex: str, psk_file: Path | None) -> bytes | None:
    """The key a node's config names: its ``psk_file``, else the older inline ``psk`` hex, else None (no private network).

    Raises KeyFileError for a key file that cannot be used.
    """
    if psk_file is not None:
        return load_psk_file(psk_file)
    return bytes.fromhex(psk_hex) if psk_hex else None
