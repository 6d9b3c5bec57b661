"""The libp2p private network (node/pnet.py, identity/psk.py): the specification's cipher, key file and wire.

Known answers come from libsodium's own tests (github.com/jedisct1/libsodium,
test/default/stream.exp: the XSalsa20 stream ``crypto_stream``, whose key is
core1.exp's HSalsa20 output), and libsodium itself (through PyNaCl's secretbox,
which XORs the XSalsa20 keystream from byte 32 on) checks random keys and nonces.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import multiaddr
import nacl.bindings
import pytest
import trio
import trio.testing
from Crypto.Cipher import Salsa20
from libp2p import new_host
from libp2p.abc import ConnectionType, IRawConnection
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.pnet.psk_conn import PskConn
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from multiaddr import Multiaddr

import node.pnet as pnet
from identity.keys import NodeKey
from identity.psk import configured_psk, load_psk_file, parse_psk_file, render_psk_file, save_psk_file
from protocol.errors import KeyFileError
from simnet.cluster import free_port, wait_until
from tests.node.helpers import p2p_overlay

# libsodium test/default/core1.c (FIRSTKEY), stream.c
FIRSTKEY = bytes.fromhex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
NONCE = bytes.fromhex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
STREAM_4MIB_SHA256 = "662b9d0e3463029156069b12f918691a98f7dfb2ca0393c96bbfc6b1fbd630a2"  # stream.exp line 1
STREAM_FIRST_63 = bytes.fromhex(  # stream.exp line 66: crypto_stream(63 bytes)
    "eea6a7251c1e72916d11c2cb214d3c252539121d8e234e652d651fa4c8cff880"
    "309e645a74e9e0a60d8243acd9177ab51a1beb8d5a2f5d700c093c5e558557"
)


# --- the cipher -----------------------------------------------------------------------------------


def test_xsalsa20_keystream_matches_libsodium_stream_vectors_across_uneven_writes() -> None:
    x = pnet.XSalsa20(FIRSTKEY, NONCE)
    sizes = [0, 1, 2, 61, 64, 65, 1000, 4096]
    parts = [x.xor(bytes(n)) for n in sizes]
    parts.append(x.xor(bytes(4_194_304 - sum(sizes))))
    stream = b"".join(parts)
    assert len(stream) == 4_194_304
    assert hashlib.sha256(stream).hexdigest() == STREAM_4MIB_SHA256
    assert stream[:63] == STREAM_FIRST_63


def test_xsalsa20_matches_libsodium_secretbox_keystream_for_random_keys_and_nonces() -> None:
    for _ in range(50):
        key, nonce, n = os.urandom(32), os.urandom(24), 1 + secrets.randbelow(300)
        boxed = nacl.bindings.crypto_secretbox(bytes(n), nonce, key)  # 16-byte MAC, then zeros XOR keystream[32:]
        assert pnet.XSalsa20(key, nonce).xor(bytes(32 + n))[32:] == boxed[16:]
        x, cut = pnet.XSalsa20(key, nonce), secrets.randbelow(32 + n)  # the same stream in two writes split anywhere
        assert (x.xor(bytes(cut)) + x.xor(bytes(32 + n - cut)))[32:] == boxed[16:]


# --- the key file ---------------------------------------------------------------------------------

KEY_HEX = "dffb7e3135399a8b1612b2aaca1c36a3a8ac2cd0cca51ceeb2ced87d308cac6d"  # js-libp2p's README example


@pytest.mark.parametrize(
    "text",
    [
        f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX}",  # js-libp2p generateKey(): no final newline
        f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX}\n",  # ours, ipfs-swarm-key-gen
        f"/key/swarm/psk/1.0.0/\r\n/base16/\r\n{KEY_HEX}\r\n",  # written on Windows
        f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX.upper()}\n\n\n",  # go accepts upper case; blank lines after
    ],
)
def test_key_file_forms_every_implementation_reads(text: str) -> None:
    assert parse_psk_file(text) == bytes.fromhex(KEY_HEX)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"/key/swarm/psk/2.0.0/\n/base16/\n{KEY_HEX}\n", "line 1 must be /key/swarm/psk/1.0.0/"),
        (f" /key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX}\n", "line 1 must be"),
        (f"/key/swarm/psk/1.0.0/\n/base64/\n{KEY_HEX}\n", "line 2 is /base64/; this network uses /base16/"),
        (f"/key/swarm/psk/1.0.0/\n/hex/\n{KEY_HEX}\n", "line 2 must be /base16/"),
        (f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX[:-2]}\n", "64 hex digits (32 bytes), found 62"),
        (f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX}00\n", "found 66"),
        (f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX[:-1]}g\n", "must be hex digits"),
        (f"/key/swarm/psk/1.0.0/\n/base16/\n {KEY_HEX}\n", "spaces or tabs around the key"),
        (f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX} \n", "spaces or tabs around the key"),
        (f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX}\nextra\n", "has 3 lines"),
        (f"/key/swarm/psk/1.0.0/\n{KEY_HEX}\n", "has 3 lines"),
        (KEY_HEX, "has 3 lines"),  # the old inline config value pasted into a file
    ],
)
def test_bad_key_files_are_refused_saying_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=r"swarm\.key") as err:
        parse_psk_file(text, "swarm.key")
    assert message in str(err.value)


def test_key_file_is_written_0600_refused_when_others_can_read_it_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    key = os.urandom(32)
    save_psk_file(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == f"/key/swarm/psk/1.0.0/\n/base16/\n{key.hex()}\n" == render_psk_file(key)
    assert load_psk_file(path) == key == configured_psk("", path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        save_psk_file(path, os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_psk_file(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_psk_file(tmp_path / "missing.key")
    assert configured_psk("ab" * 32, None) == b"\xab" * 32 and configured_psk("", None) is None


# --- the wire, over an in-memory byte stream -------------------------------------------------------


class MemoryRaw(IRawConnection):
    """A raw connection over one end of trio's in-memory stream pair."""

    def __init__(self, stream: trio.abc.Stream, initiator: bool) -> None:
        self.stream = stream
        self.is_initiator = initiator
        self.closed = False

    async def read(self, n: int | None = None) -> bytes:
        try:
            return bytes(await self.stream.receive_some(n or 65536))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return b""

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self) -> None:
        self.closed = True
        await self.stream.aclose()

    def get_remote_address(self) -> tuple[str, int] | None:
        return ("192.0.2.7", 4001)

    def get_transport_addresses(self) -> list[Multiaddr]:
        return []

    def get_connection_type(self) -> ConnectionType:
        return ConnectionType.DIRECT


class Tap(MemoryRaw):
    """Records the bytes a connection puts on the wire."""

    def __init__(self, stream: trio.abc.Stream, initiator: bool) -> None:
        super().__init__(stream, initiator)
        self.sent = b""

    async def write(self, data: bytes) -> None:
        self.sent += data
        await super().write(data)


def pair() -> tuple[Tap, Tap]:
    left, right = trio.testing.memory_stream_pair()
    return Tap(left, True), Tap(right, False)


async def read_exactly(conn: IRawConnection, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = await conn.read(n - len(out))
        assert chunk, "connection closed early"
        out += chunk
    return out


def test_the_wire_is_a_24_byte_nonce_then_the_xsalsa20_stream_of_the_writers_nonce() -> None:
    async def main() -> None:
        with trio.fail_after(5):
            a_raw, b_raw = pair()
            a = pnet.PnetConn(a_raw, [FIRSTKEY], rng=lambda n: NONCE)
            b = pnet.PnetConn(b_raw, [FIRSTKEY])
            message = pnet.MULTISTREAM_HEADER + bytes(43)
            await a.write(message[:5])
            await a.write(message[5:])
            assert a_raw.sent[:24] == NONCE
            assert bytes(x ^ y for x, y in zip(a_raw.sent[24:], message, strict=True)) == STREAM_FIRST_63
            assert await read_exactly(b, len(message)) == message
            await b.write(pnet.MULTISTREAM_HEADER + b"back")
            b_nonce = b_raw.sent[:24]
            assert len(b_nonce) == 24 and b_nonce != NONCE  # each direction its own nonce
            assert await read_exactly(a, 24) == pnet.MULTISTREAM_HEADER + b"back"

    trio.run(main)


def test_a_listener_that_reads_first_sends_its_nonce_before_waiting() -> None:
    """js-libp2p waits for the other side's nonce before it writes anything: a reader must not wait silently."""

    async def main() -> None:
        with trio.fail_after(5):
            a_raw, b_raw = pair()
            b = pnet.PnetConn(b_raw, [FIRSTKEY])
            async with trio.open_nursery() as n:
                n.start_soon(b.read, 100)
                nonce = await read_exactly(a_raw, 24)  # arrives while b is blocked reading
                assert len(nonce) == 24
                n.cancel_scope.cancel()

    trio.run(main)


def test_a_peer_that_closes_before_its_nonce_is_an_end_of_stream_not_a_refusal() -> None:
    async def main() -> None:
        with trio.fail_after(5):
            a_raw, b_raw = pair()
            refused: list[str] = []
            b = pnet.PnetConn(b_raw, [FIRSTKEY], on_refused=lambda addr, why: refused.append(why))
            await a_raw.write(NONCE[:10])
            await a_raw.stream.send_stream.aclose()  # type: ignore[attr-defined]  # a port probe, a dial cancelled mid-way
            assert await b.read(100) == b"" and not refused

    trio.run(main)


@pytest.mark.parametrize("what", ["another key", "no private network", "py-libp2p's own pnet"])
def test_a_peer_that_does_not_speak_our_private_network_is_cut_off_at_its_first_bytes(what: str) -> None:
    async def main() -> None:
        with trio.fail_after(5):
            a_raw, b_raw = pair()
            refused: list[tuple[str, str]] = []
            b = pnet.PnetConn(b_raw, [FIRSTKEY], on_refused=lambda addr, why: refused.append((addr, why)))
            if what == "another key":
                await pnet.PnetConn(a_raw, [os.urandom(32)]).write(pnet.MULTISTREAM_HEADER)
            elif what == "no private network":
                await a_raw.write(pnet.MULTISTREAM_HEADER + b"\x07/noise\n")
            else:
                await PskConn(a_raw, FIRSTKEY.hex()).write(pnet.MULTISTREAM_HEADER + b"\x07/noise\n")  # type: ignore[arg-type]
            with pytest.raises(pnet.PnetMismatchError, match=r"do not decrypt to libp2p|without a private network"):
                await b.read(1000)
            assert b_raw.closed
            assert refused and refused[0][0] == "192.0.2.7:4001"

    trio.run(main)


@pytest.mark.parametrize(("dialler_key", "index"), [("new", 0), ("old", 1)])
def test_during_a_rotation_a_node_accepts_both_keys_and_answers_under_the_one_the_peer_used(dialler_key: str, index: int) -> None:
    """A listener writes first (py-libp2p's multistream listener does): its bytes wait until the peer's key is known."""
    new, old = os.urandom(32), os.urandom(32)

    async def main() -> None:
        with trio.fail_after(5):
            a_raw, b_raw = pair()
            dialler = pnet.PnetConn(a_raw, [new if dialler_key == "new" else old])  # one key, as go- or js-libp2p
            listener = pnet.PnetConn(b_raw, [new, old])
            await listener.write(pnet.MULTISTREAM_HEADER + b"L")
            assert len(b_raw.sent) == 24  # its nonce only: its bytes wait until it knows the dialler's key
            await dialler.write(pnet.MULTISTREAM_HEADER + b"D")
            assert await read_exactly(listener, 21) == pnet.MULTISTREAM_HEADER + b"D"
            assert listener.key_index == index
            assert await read_exactly(dialler, 21) == pnet.MULTISTREAM_HEADER + b"L"

    trio.run(main)


def test_a_node_dials_with_its_network_key_and_refuses_keys_it_was_not_given() -> None:
    new, old = os.urandom(32), os.urandom(32)

    async def main() -> None:
        with trio.fail_after(5):
            a_raw, b_raw = pair()
            dialler = pnet.PnetConn(a_raw, [new, old])
            await dialler.write(pnet.MULTISTREAM_HEADER)
            assert await read_exactly(pnet.PnetConn(b_raw, [new]), 20) == pnet.MULTISTREAM_HEADER  # the first key
            a_raw, b_raw = pair()
            await pnet.PnetConn(a_raw, [os.urandom(32)]).write(pnet.MULTISTREAM_HEADER)
            with pytest.raises(pnet.PnetMismatchError):
                await pnet.PnetConn(b_raw, [new, old]).read(100)

    trio.run(main)


def test_py_libp2p_0_8_1_pnet_is_not_the_specification() -> None:
    """Why node/pnet.py exists (docs/overlay.md, pitfall 17). If this fails, the library changed: revisit the workaround.

    py-libp2p's PskConn sends an 8-byte nonce (the specification: 24) and
    encrypts with Salsa20(key, nonce) instead of XSalsa20(key, nonce); its
    docstring says it sends 24 bytes.
    """

    async def main() -> None:
        with trio.fail_after(5):
            a_raw, _ = pair()
            library = PskConn(a_raw, FIRSTKEY.hex())  # type: ignore[arg-type]
            assert "24-byte nonce" in (PskConn.write.__doc__ or "")
            await library.write(bytes(64))
            nonce, stream = a_raw.sent[:8], a_raw.sent[8:]
            assert len(a_raw.sent) == 8 + 64  # 8 nonce bytes, not 24
            assert stream == Salsa20.new(key=FIRSTKEY, nonce=nonce).encrypt(bytes(64))
            spec = pnet.XSalsa20(FIRSTKEY, a_raw.sent[:24])  # what a conforming peer decrypts with
            assert spec.xor(a_raw.sent[24:]) != bytes(48)

    trio.run(main)


def test_install_fails_loudly_when_the_library_no_longer_protects_connections_where_expected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import libp2p.network.swarm as swarm_module

    pnet.install()
    assert swarm_module.new_protected_conn is pnet._new_protected_conn
    pnet.install()  # idempotent
    monkeypatch.setattr(swarm_module, "new_protected_conn", lambda conn, psk: conn)
    with pytest.raises(RuntimeError, match="py-libp2p changed"):
        pnet.install()
    monkeypatch.setattr(swarm_module, "new_protected_conn", pnet._library_new_protected_conn)

    async def upgrade_inbound_raw_conn(self: object, raw_conn: object, maddr: object) -> object:
        return raw_conn  # a future version that wraps connections some other way

    monkeypatch.setattr(swarm_module.Swarm, "upgrade_inbound_raw_conn", upgrade_inbound_raw_conn)
    with pytest.raises(RuntimeError, match=r"Swarm\.upgrade_inbound_raw_conn"):
        pnet.install()


# --- real hosts on 127.0.0.1 -------------------------------------------------------------------------


def library_pnet_host(psk_hex: str) -> object:
    """A plain py-libp2p 0.8.1 host with the library's own pnet (``new_host(psk=...)``)."""
    kp = create_new_key_pair(secrets.token_bytes(32))
    return new_host(
        key_pair=kp,
        sec_opt={TProtocol(NOISE_ID): NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)},
        muxer_opt={TProtocol(YAMUX_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        psk=psk_hex,
        enable_metrics=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_same_key_connects_and_every_other_peer_is_refused_within_a_second() -> None:
    keys = [NodeKey(secrets.token_bytes(32)) for _ in range(5)]
    members = {k.peer_id for k in keys}
    pa = free_port()
    a_addr = f"/ip4/127.0.0.1/tcp/{pa}"
    good, other = os.urandom(32), os.urandom(32)
    a = p2p_overlay(keys[0], pa, members=members, targets={}, psk=good)
    b = p2p_overlay(keys[1], free_port(), members=members, targets={keys[0].peer_id: [a_addr]}, psk=good)
    wrong = p2p_overlay(keys[2], free_port(), members=members, targets={}, psk=other)
    plain = p2p_overlay(keys[3], free_port(), members=members, targets={})
    library = library_pnet_host(good.hex())
    a_info = PeerInfo(ID.from_base58(keys[0].peer_id), [multiaddr.Multiaddr(a_addr)])
    first: dict[str, float] = {}  # until the first attempt is refused
    total: dict[str, float] = {}  # until host.connect() gives up (ours: one attempt; py-libp2p's host retries 3 times)

    async def attempt(name: str, host: object) -> None:
        before = a.metrics.get("connections_refused", reason="private_network")
        start = trio.current_time()
        failed: list[BaseException] = []

        async def dial() -> None:
            try:
                with trio.fail_after(10):
                    await host.connect(a_info)  # type: ignore[attr-defined]
            except Exception as exc:  # the library raises several types; what matters is the refusal
                failed.append(exc)
            total[name] = trio.current_time() - start

        async with trio.open_nursery() as n:
            n.start_soon(dial)
            await wait_until(
                lambda: a.metrics.get("connections_refused", reason="private_network") > before, timeout=5, step=0.005
            )
            first[name] = trio.current_time() - start
        assert failed and not isinstance(failed[0], trio.TooSlowError), f"{name}: {failed}"
        assert first[name] < 0.5 and total[name] < 2, (
            f"{name}: refused after {first[name]:.3f} s, given up after {total[name]:.2f} s"
        )

    async def main() -> None:
        with trio.fail_after(55):
            async with trio.open_nursery() as n:
                for ov in (a, b, wrong, plain):
                    await n.start(ov.run)
                await wait_until(lambda: keys[1].peer_id in a.connected_peers(), timeout=20)
                assert a.connected_peers() == {keys[1].peer_id}
                await attempt("another key", wrong.host)
                await attempt("no private network", plain.host)
                async with library.run([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{free_port()}")]):  # type: ignore[attr-defined]
                    await attempt("py-libp2p's own pnet, same key", library)
                await library.close()  # type: ignore[attr-defined]
                assert a.connected_peers() == {keys[1].peer_id}
                print(f"pnet refusal: first attempt refused after {first} s; host.connect() gave up after {total} s")
                n.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_key_rotation_keeps_old_key_and_new_key_nodes_connected_to_a_node_holding_both() -> None:
    keys = [NodeKey(secrets.token_bytes(32)) for _ in range(3)]
    members = {k.peer_id for k in keys}
    ports = [free_port() for _ in keys]
    addrs = {k.peer_id: [f"/ip4/127.0.0.1/tcp/{p}"] for k, p in zip(keys, ports, strict=True)}
    new, old = os.urandom(32), os.urandom(32)
    # mid-rotation: one node already dials with the new key and still accepts the old one
    both = p2p_overlay(keys[0], ports[0], members=members, targets=addrs, psk=new, psk_also_accept=(old,))
    old_only = p2p_overlay(keys[1], ports[1], members=members, targets=addrs, psk=old)
    new_only = p2p_overlay(keys[2], ports[2], members=members, targets=addrs, psk=new)

    async def main() -> None:
        with trio.fail_after(50):
            async with trio.open_nursery() as n:
                for ov in (both, old_only, new_only):
                    await n.start(ov.run)
                await wait_until(lambda: both.connected_peers() == {keys[1].peer_id, keys[2].peer_id}, timeout=30)
                assert keys[2].peer_id not in old_only.connected_peers()  # never given the new key: not on the network
                n.cancel_scope.cancel()

    trio.run(main)
