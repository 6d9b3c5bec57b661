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

The keystream is libsodium's ``crypto_stream_xsalsa20_xor_ic`` (the
libsodium PyNaCl already loads; PyNaCl does not wrap it), called from the
byte offset each direction has reached, so it continues across writes of any
length. PyCryptodome's Salsa20 was used before: measured in a node process it
ran 4x slower than alone (213 against 52 us per 64 KiB), because the Noise
cipher (OpenSSL's ChaCha20-Poly1305) runs just before it on every frame and
leaves the CPU in a state that slows its SSE code; libsodium's is 26 us in
the same state, and a private network no longer costs most of a transfer
(docs/performance.md, "The private network's cipher").
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from typing import NoReturn

import libp2p.network.swarm as swarm_module
import nacl._sodium
import nacl.bindings
import trio
from libp2p.abc import IRawConnection
from libp2p.connection_types import ConnectionType
from libp2p.network.connection.exceptions import RawConnError
from libp2p.security.pnet import protector as library_protector
from multiaddr import Multiaddr

NONCE_BYTES = 24
KEY_BYTES = 32
MULTISTREAM_HEADER = b"\x13/multistream/1.0.0\n"  # varint 19, then the protocol id and a newline
Rng = Callable[[int], bytes]
OnRefused = Callable[[str, str], None]  # (remote address, reason)


def _xsalsa20_xor_ic() -> Callable[..., int]:
    """libsodium's ``crypto_stream_xsalsa20_xor_ic(out, in, len, nonce24, block_counter, key32)``.

    Loaded with ``PyDLL``: the call keeps the GIL, which a 64 KiB XOR (26 us)
    does not need to give up, and a 2-byte one must not (taking the GIL back
    can wait a whole switch interval behind a busy worker thread).
    """
    nacl.bindings.sodium_init()  # selects libsodium's fastest Salsa20 for this CPU (idempotent)
    fn = ctypes.PyDLL(nacl._sodium.__file__).crypto_stream_xsalsa20_xor_ic
    fn.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_char_p)
    fn.restype = ctypes.c_int
    return fn


_XOR_IC = _xsalsa20_xor_ic()


class XSalsa20:
    """The XSalsa20 keystream of (key, 24-byte nonce) as a running XOR: each call continues where the last stopped."""

    __slots__ = ("_key", "_nonce", "_offset")

    def __init__(self, key: bytes, nonce: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("XSalsa20 takes a 32-byte key")
        if len(nonce) != NONCE_BYTES:
            raise ValueError("XSalsa20 takes a 24-byte nonce")
        self._key = bytes(key)
        self._nonce = bytes(nonce)
        self._offset = 0  # keystream bytes used so far

    def xor(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        skip = self._offset & 63  # libsodium starts at a 64-byte block: pad up to where the last call stopped
        if skip:
            data = bytes(skip) + data
        out = ctypes.create_string_buffer(skip + n)
        _XOR_IC(out, bytes(data), skip + n, self._nonce, self._offset >> 6, self._key)
        self._offset += n
        return out.raw if not skip else ctypes.string_at(ctypes.addressof(out) + skip, n)


_MISMATCH = (
    "the peer's bytes do not decrypt to libp2p: it uses another private-network key, "
    "py-libp2p's non-standard pnet, or no private network"
)


class PnetMismatchError(RawConnError):
    """The peer's bytes do not decrypt to libp2p with this network's key."""


class PnetConn(IRawConnection):
    """A raw connection wrapped in the private network (the specification's wire, see the module doc).

    ``keys``: the network key first, then keys also accepted (a key rotation,
    docs/operations.md). A connection we open uses the first; on one the
    peer opened, the key is the one under which the peer's first bytes
    decrypt to multistream-select, and we answer under that key too: our own
    first bytes wait (buffered) until it is known.
    """

    def __init__(
        self, conn: IRawConnection, keys: Sequence[bytes], *, rng: Rng = os.urandom, on_refused: OnRefused | None = None
    ) -> None:
        if not keys or any(len(k) != KEY_BYTES for k in keys):
            raise ValueError(f"private-network keys are {KEY_BYTES} bytes")
        self._conn = conn
        self._rng = rng
        self._on_refused = on_refused
        self.is_initiator = conn.is_initiator
        self._read_keys = tuple(keys) if not conn.is_initiator else (keys[0],)
        self._write_key: bytes | None = keys[0] if conn.is_initiator or len(keys) == 1 else None
        self._nonce_out: bytes | None = None
        self._out: XSalsa20 | None = None
        self._held: list[bytes] = []  # plaintext written before the write key is known
        self._nonce_in = b""
        self._in: XSalsa20 | None = None
        self._read_key: bytes | None = None
        self._head = b""  # ciphertext read before the read key is known
        self._pending = b""  # plaintext decrypted but not yet returned
        self._write_lock = trio.Lock()  # keystream order must be wire order
        self._expect = MULTISTREAM_HEADER  # what the peer's first plaintext bytes must be

    @property
    def key_index(self) -> int | None:
        """Which of the keys the peer uses (0 = the network key), once known."""
        return None if self._read_key is None else self._read_keys.index(self._read_key)

    async def _send_nonce(self) -> None:
        # Sent before our first read too: js-libp2p waits (1 s) for the other
        # side's nonce before it writes anything, and a py-libp2p listener reads first.
        async with self._write_lock:
            if self._nonce_out is None:
                self._nonce_out = self._rng(NONCE_BYTES)
                if self._write_key is not None:
                    self._out = XSalsa20(self._write_key, self._nonce_out)
                await self._conn.write(self._nonce_out)

    async def write(self, data: bytes) -> None:
        if self._nonce_out is None:
            await self._send_nonce()
        async with self._write_lock:
            if self._out is None:
                self._held.append(bytes(data))
                return
            await self._conn.write(self._out.xor(bytes(data)))

    async def read(self, n: int | None = None) -> bytes:
        if self._nonce_out is None:
            await self._send_nonce()
        while len(self._nonce_in) < NONCE_BYTES:
            chunk = await self._conn.read(NONCE_BYTES - len(self._nonce_in))
            if not chunk:  # closed before its nonce (a port probe, a cancelled dial): not a refusal
                return b""
            self._nonce_in += chunk
            if self._nonce_in.startswith(MULTISTREAM_HEADER):  # a random nonce does so with probability 2**-160
                await self._refuse("the peer speaks libp2p without a private network (plaintext multistream-select)")
        while not self._pending:
            data = await self._conn.read(n)
            if not data:
                return b""
            if self._in is not None:
                self._pending = self._in.xor(data)
            else:
                self._head += data
                await self._choose_key()
            if not self._first_bytes_ok():
                await self._refuse(_MISMATCH)
        k = len(self._pending) if n is None else min(n, len(self._pending))
        out, self._pending = self._pending[:k], self._pending[k:]
        return out

    async def _choose_key(self) -> None:
        m = min(len(self._head), len(MULTISTREAM_HEADER))
        fits = [k for k in self._read_keys if XSalsa20(k, self._nonce_in).xor(self._head[:m]) == MULTISTREAM_HEADER[:m]]
        if not fits:
            await self._refuse(_MISMATCH)
        if len(fits) > 1:  # two keys agree so far (probability 2**-8 per byte): wait for more bytes
            return
        self._read_key = fits[0]
        self._in = XSalsa20(self._read_key, self._nonce_in)
        self._pending, self._head = self._in.xor(self._head), b""
        if self._write_key is None:  # answer under the key the peer chose
            async with self._write_lock:
                self._write_key = self._read_key
                if self._nonce_out is not None:
                    self._out = XSalsa20(self._write_key, self._nonce_out)
                    held, self._held = b"".join(self._held), []
                    if held:
                        await self._conn.write(self._out.xor(held))

    def _first_bytes_ok(self) -> bool:
        if self._expect and self._pending:
            k = min(len(self._pending), len(self._expect))
            if self._pending[:k] != self._expect[:k]:
                return False
            self._expect = self._expect[k:]
        return True

    async def _refuse(self, reason: str) -> NoReturn:
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
    """What a swarm's ``psk`` holds when our pnet is on: the keys and who hears about refused connections.

    ``key`` is the network's key (dialled with, accepted); ``also_accept``
    are keys accepted from peers that dial with them (a rotation window).
    """

    def __init__(
        self,
        key: bytes,
        *,
        also_accept: Sequence[bytes] = (),
        on_refused: OnRefused | None = None,
        rng: Rng = os.urandom,
    ) -> None:
        keys = (bytes(key), *(bytes(k) for k in also_accept if bytes(k) != bytes(key)))
        if any(len(k) != KEY_BYTES for k in keys):
            raise ValueError(f"a private-network key is {KEY_BYTES} bytes")
        self.keys = keys
        self.on_refused = on_refused
        self.rng = rng

    def protect(self, conn: IRawConnection) -> PnetConn:
        return PnetConn(conn, self.keys, rng=self.rng, on_refused=self.on_refused)

    def __repr__(self) -> str:
        return f"PrivateNetwork({len(self.keys)} key(s))"  # never print a key


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
    swarm_module.new_protected_conn = _new_protected_conn  # type: ignore[attr-defined,assignment]  # the point of pitfall 17
