"""A libp2p private network (pnet, PSK v1) as the specification defines it, for py-libp2p 0.8.1.

The wire (``libp2p/specs`` ``pnet/Private-Networks-PSK-V1.md``; go-libp2p
``p2p/net/pnet``, js-libp2p ``@libp2p/pnet``): right after TCP, each side sends
a random 24-byte nonce, then everything it writes is XORed with the XSalsa20
keystream of (PSK, its own nonce); it decrypts what it reads with the
keystream of (PSK, the other side's nonce). No handshake, no MAC: with a
different key the next layer (multistream-select) reads noise.

py-libp2p 0.8.1's own pnet (``libp2p/security/pnet/psk_conn.py``) uses Salsa20
with an 8-byte nonce, so it talks only to itself (docs/overlay.md, pitfall 17).
:func:`install` replaces the one function through which the swarm wraps every
raw connection (``libp2p.network.swarm.new_protected_conn``), after checking
that the library still calls it where we expect; a swarm whose ``psk`` is a
:class:`PrivateNetwork` gets :class:`PnetConn`, anything else keeps the
library's behaviour.

Failing fast on a wrong key: every libp2p connection starts with
multistream-select, whose first bytes in each direction are
``\\x13/multistream/1.0.0\\n``. :class:`PnetConn` checks the first decrypted
bytes against that header and closes the connection at the first byte that
differs, so a peer with another key or with py-libp2p's own pnet is refused
in milliseconds instead of after the ~30 s upgrade timeout; a peer without a
private network is recognised by that header in plaintext where the nonce
should be (a random nonce starts so with probability 2^-160). This reads nothing the specification does not already send; a peer
following the specification never notices.

XSalsa20 = HSalsa20(key, nonce[0:16]) as a subkey, then Salsa20 with
nonce[16:24] (Bernstein, "Extending the Salsa20 nonce", 2008). HSalsa20 runs
once per connection direction in Python; the keystream is PyCryptodome's
Salsa20 (C), stateful, so it continues across writes of any length.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import libp2p.network.swarm as swarm_module
import trio
from Crypto.Cipher import Salsa20
from libp2p.abc import ConnectionType, IRawConnection
from libp2p.network.connection.exceptions import RawConnError
from libp2p.security.pnet import protector as library_protector
from multiaddr import Multiaddr

NONCE_BYTES = 24
KEY_BYTES = 32
MULTISTREAM_HEADER = b"\x13/multistream/1.0.0\n"  # varint 19, then the protocol id and a newline
_MASK = 0xFFFFFFFF
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")

Rng = Callable[[int], bytes]
OnRefused = Callable[[str, str], None]  # (remote address, reason)


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & _MASK


def hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    """HSalsa20: 20 Salsa20 rounds over (constants, key, 16-byte input), words 0,5,10,15,6,7,8,9 out."""
    if len(key) != KEY_BYTES or len(nonce16) != 16:
        raise ValueError("hsalsa20 takes a 32-byte key and a 16-byte input")
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", nonce16)
    x = [_SIGMA[0], k[0], k[1], k[2], k[3], _SIGMA[1], n[0], n[1], n[2], n[3], _SIGMA[2], k[4], k[5], k[6], k[7], _SIGMA[3]]

    def qr(a: int, b: int, c: int, d: int) -> None:
        x[b] ^= _rotl((x[a] + x[d]) & _MASK, 7)
        x[c] ^= _rotl((x[b] + x[a]) & _MASK, 9)
        x[d] ^= _rotl((x[c] + x[b]) & _MASK, 13)
        x[a] ^= _rotl((x[d] + x[c]) & _MASK, 18)

    for _ in range(10):
        qr(0, 4, 8, 12)  # columns
        qr(5, 9, 13, 1)
        qr(10, 14, 2, 6)
        qr(15, 3, 7, 11)
        qr(0, 1, 2, 3)  # rows
        qr(5, 6, 7, 4)
        qr(10, 11, 8, 9)
        qr(15, 12, 13, 14)
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


class XSalsa20:
    """The XSalsa20 keystream of (key, 24-byte nonce) as a running XOR: each call continues where the last stopped."""

    def __init__(self, key: bytes, nonce: bytes) -> None:
        if len(nonce) != NONCE_BYTES:
            raise ValueError("XSalsa20 takes a 24-byte nonce")
        self._cipher = Salsa20.new(key=hsalsa20(key, nonce[:16]), nonce=nonce[16:])

    def xor(self, data: bytes) -> bytes:
        return bytes(self._cipher.encrypt(data)) if data else b""


class PnetMismatchError(RawConnError):
    """The peer's bytes do not decrypt to libp2p with this network's key."""


class PnetConn(IRawConnection):
    """A raw connection wrapped in the private network (the specification's wire, see the module doc)."""

    def __init__(self, conn: IRawConnection, key: bytes, *, rng: Rng = os.urandom, on_refused: OnRefused | None = None) -> None:
        self._conn = conn
        self._key = key
        self._rng = rng
        self._on_refused = on_refused
        self.is_initiator = conn.is_initiator
        self._out: XSalsa20 | None = None
        self._in: XSalsa20 | None = None
        self._write_lock = trio.Lock()  # keystream order must be wire order
        self._expect = MULTISTREAM_HEADER  # what the peer's first plaintext bytes must be

    async def _send_nonce(self) -> None:
        # Sent before our first read too: js-libp2p waits (1 s) for the other
        # side's nonce before it writes anything, and a py-libp2p listener reads first.
        async with self._write_lock:
            if self._out is None:
                nonce = self._rng(NONCE_BYTES)
                self._out = XSalsa20(self._key, nonce)
                await self._conn.write(nonce)

    async def write(self, data: bytes) -> None:
        if self._out is None:
            await self._send_nonce()
        async with self._write_lock:
            assert self._out is not None
            await self._conn.write(self._out.xor(bytes(data)))

    async def read(self, n: int | None = None) -> bytes:
        if self._out is None:
            await self._send_nonce()
        if self._in is None:
            nonce = b""
            while len(nonce) < NONCE_BYTES:
                chunk = await self._conn.read(NONCE_BYTES - len(nonce))
                if not chunk:
                    await self._refuse(f"connection closed after {len(nonce)} of the {NONCE_BYTES} nonce bytes")
                nonce += chunk
                if nonce.startswith(MULTISTREAM_HEADER):  # a random nonce does so with probability 2**-160
                    await self._refuse("the peer speaks libp2p without a private network (plaintext multistream-select)")
            self._in = XSalsa20(self._key, nonce)
        data = await self._conn.read(n)
        if not data:
            return b""
        plain = self._in.xor(data)
        if self._expect:
            k = min(len(plain), len(self._expect))
            if plain[:k] != self._expect[:k]:
                await self._refuse(
                    "the peer's bytes do not decrypt to libp2p: it uses another private-network key, "
                    "py-libp2p's non-standard pnet, or no private network"
                )
            self._expect = self._expect[k:]
        return plain

    async def _refuse(self, reason: str) -> None:
        remote = self.get_remote_address()
        if self._on_refused is not None:
            self._on_refused(f"{remote[0]}:{remote[1]}" if remote else "?", reason)
        try:
            await self._conn.close()
        finally:
            raise PnetMismatchError(reason)

    async def close(self) -> None:
        await self._conn.close()

    def get_remote_address(self) -> tuple[str, int] | None:
        return self._conn.get_remote_address()

    def get_transport_addresses(self) -> list[Multiaddr]:
        return self._conn.get_transport_addresses()

    def get_connection_type(self) -> ConnectionType:
        return self._conn.get_connection_type()


class PrivateNetwork:
    """What a swarm's ``psk`` holds when our pnet is on: the key and who hears about refused connections."""

    def __init__(self, key: bytes, *, on_refused: OnRefused | None = None, rng: Rng = os.urandom) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a private-network key is {KEY_BYTES} bytes")
        self.key = bytes(key)
        self.on_refused = on_refused
        self.rng = rng

    def protect(self, conn: IRawConnection) -> PnetConn:
        return PnetConn(conn, self.key, rng=self.rng, on_refused=self.on_refused)

    def __repr__(self) -> str:
        return "PrivateNetwork(...)"  # never print the key


# The swarm methods that wrap raw connections, each through the module-level
# name ``new_protected_conn`` when ``self.psk`` is set (py-libp2p 0.8.1).
PATCHED_METHODS = ("_dial_addr_single_attempt", "dial_addr_as_responder", "upgrade_inbound_raw_conn")
_library_new_protected_conn = library_protector.new_protected_conn


def _new_protected_conn(conn: IRawConnection, psk: object) -> IRawConnection:
    if isinstance(psk, PrivateNetwork):
        return psk.protect(conn)
    return _library_new_protected_conn(conn, psk)  # type: ignore[arg-type]


def install() -> None:
    """Route the swarm's connection protector through :func:`_new_protected_conn` (idempotent).

    Raises RuntimeError when py-libp2p no longer wraps connections the way
    0.8.1 does: starting with a private network that is silently not applied,
    or applied by the library's incompatible cipher, must not happen.
    """
    current = getattr(swarm_module, "new_protected_conn", None)
    if current is _new_protected_conn:
        return
    if current is not _library_new_protected_conn:
        raise RuntimeError(
            "py-libp2p changed: libp2p.network.swarm.new_protected_conn is not the library's protector; "
            "the private-network workaround in node/pnet.py (docs/overlay.md, pitfall 17) needs review"
        )
    for name in PATCHED_METHODS:
        method = getattr(swarm_module.Swarm, name, None)
        code = getattr(method, "__code__", None)
        if code is None or "new_protected_conn" not in code.co_names or "psk" not in code.co_names:
            raise RuntimeError(
                f"py-libp2p changed: Swarm.{name} no longer protects connections through new_protected_conn(conn, self.psk); "
                "the private-network workaround in node/pnet.py (docs/overlay.md, pitfall 17) needs review"
            )
    swarm_module.new_protected_conn = _new_protected_conn
