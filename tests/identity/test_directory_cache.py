"""The directory's verified form: used only when it is intact and names the chain being loaded."""

from __future__ import annotations

import dataclasses
import hmac
import os
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.directory import (
    _AGENCY_FIELDS,
    _KEY_FIELDS,
    FOREVER_MS,
    AgencyRecord,
    Directory,
    DirectoryDelta,
    KeyRecord,
    NodeRecord,
    apply_link,
    load_chain,
    read_chain_file,
    sign_delta,
    sign_snapshot,
    unchecked_keys,
    unchecked_records,
    write_chain_file,
)
from identity.directory_cache import (
    CACHE_FILE,
    CACHE_VERSION,
    MAC_BYTES,
    CacheState,
    _Unusable,
    cache_mac_key,
    chain_keys,
    decode_verified,
    encode_verified,
    load_directory_cached,
    read_verified,
    write_verified,
)
from identity.keys import AuthorityPublic, NodeKey, SigningKey
from identity.provision import DeterministicRng
from protocol.agency import AgencyCode
from protocol.envelope import Envelope
from protocol.errors import DirectoryError
from protocol.ids import key_id
from tests.conftest import DAY, NET, NOW, Net

MAC_KEY = bytes(range(32))


def same(a: Directory, b: Directory) -> None:
    """Equal in every field and in iteration order (key_owner's answer for a shared key id depends on it)."""
    assert (a.net, a.serial, a.issued_at, a.valid_until) == (b.net, b.serial, b.issued_at, b.valid_until)
    assert list(a.agencies.items()) == list(b.agencies.items())
    assert list(a.nodes.items()) == list(b.nodes.items())
    assert list(a.revoked.items()) == list(b.revoked.items())
    for peer in {*a.nodes, *b.nodes}:
        assert a.hosted_by(peer) == b.hosted_by(peer)
    for rec in a.agencies.values():
        for k in rec.signing_keys:
            assert a.key_owner(k.kid) == b.key_owner(k.kid)
    for x, y in zip(a.agencies.values(), b.agencies.values(), strict=True):  # made without __init__ on one side
        assert hash(x) == hash(y) and repr(x) == repr(y)
    assert a.shards() == b.shards() == {c.shard for c in a.agencies}


def chain_of(net: Net, *deltas: DirectoryDelta) -> list[Envelope]:
    links = [sign_snapshot(net.directory, net.authority, at=NOW)]
    for i, delta in enumerate(deltas, start=2):
        links.append(sign_delta(delta, net=NET, base=i - 1, serial=i, until=NOW + i * DAY, key=net.authority, at=NOW + i))
    return links


def renamed(net: Net, code: str, name: str) -> DirectoryDelta:
    rec = net.directory.agencies[AgencyCode.parse(code)]
    return DirectoryDelta(put_agencies=(dataclasses.replace(rec, name=name),))


@pytest.fixture
def home(net: Net, tmp_path: Path) -> Path:
    write_chain_file(tmp_path / "directory.cbor", chain_of(net, renamed(net, "H01", "An Giang")))
    return tmp_path


def scratch(net: Net, home: Path, later: list[Envelope] | None = None) -> Directory:
    return load_chain([*read_chain_file(home / "directory.cbor"), *(later or [])], net.authority_public)


def test_absent_then_hit_gives_what_verifying_gives(net: Net, home: Path) -> None:
    cold, chain, report = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    assert report.state is CacheState.ABSENT and report.written and not report.write_error
    warm, chain2, report2 = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    assert report2.state is CacheState.HIT and not report2.written
    same(cold, scratch(net, home))
    same(warm, scratch(net, home))
    assert warm.agency(AgencyCode.parse("H01")).name == "An Giang" and warm.serial == 2
    # Its codes are the objects parse() gives (as a verified directory's are): lookups by parsed codes short-cut on identity.
    for code, rec in warm.agencies.items():
        assert AgencyCode.parse(str(code)) is code and rec.code is code
        assert rec.parent is None or AgencyCode.parse(str(rec.parent)) is rec.parent
    assert [e.id for e in chain2] == [e.id for e in chain]
    # Private: the directory 0700, the file 0600, nothing else left behind.
    assert stat.S_IMODE((home / "cache").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "cache" / CACHE_FILE).stat().st_mode) == 0o600
    assert os.listdir(home / "cache") == [CACHE_FILE]


def test_a_hit_verifies_nothing_again(net: Net, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    import identity.directory_cache as dc

    def fail(*a: object, **kw: object) -> None:
        raise AssertionError("a link was verified again")

    monkeypatch.setattr(dc, "apply_link", fail)
    _, _, report = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    assert report.state is CacheState.HIT


def test_later_links_extend_the_cache_and_are_verified(net: Net, home: Path) -> None:
    load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    full = chain_of(net, renamed(net, "H01", "An Giang"), renamed(net, "H29", "TP HCM"), DirectoryDelta())
    later = [full[1], full[2], full[3]]  # the first is already in the file: skipped, as the daemon always did
    d, chain, report = load_directory_cached(
        home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY, later=later
    )
    assert report.state is CacheState.EXTENDED and report.written
    assert d.serial == 4 and len(chain) == 4 and d.agency(AgencyCode.parse("H29")).name == "TP HCM"
    same(d, scratch(net, home, later[1:]))
    _, _, again = load_directory_cached(
        home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY, later=later
    )
    assert again.state is CacheState.HIT
    # A later link that does not verify stops the start, naming it, whatever the cache holds.
    forged = sign_delta(DirectoryDelta(), net=NET, base=4, serial=5, until=NOW + DAY, key=SigningKey(b"x" * 32), at=NOW)
    with pytest.raises(DirectoryError, match="stored directory link 5"):
        load_directory_cached(
            home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY, later=[*later, forged]
        )


def test_stale_when_the_file_or_the_authority_changes(net: Net, home: Path) -> None:
    load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    write_chain_file(home / "directory.cbor", chain_of(net, renamed(net, "H01", "Tỉnh An Giang")))
    d, _, report = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    assert report.state is CacheState.STALE and report.written
    assert d.agency(AgencyCode.parse("H01")).name == "Tỉnh An Giang"
    # The same chain checked against a different pin (no network given) is another verification.
    loose = AuthorityPublic(net.authority.public, "")
    _, _, report = load_directory_cached(home / "directory.cbor", loose, home / "cache", mac_key=MAC_KEY)
    assert report.state is CacheState.STALE


def test_a_file_that_no_longer_verifies_is_refused_even_with_a_cache(net: Net, home: Path) -> None:
    load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    other = AuthorityPublic(SigningKey(b"o" * 32).public, NET)
    with pytest.raises(DirectoryError, match=r"directory\.cbor"):
        load_directory_cached(home / "directory.cbor", other, home / "cache", mac_key=MAC_KEY)


@pytest.mark.parametrize("where", ["magic", "version", "links", "key", "body", "mac", "truncated", "empty"])
def test_damage_is_detected_logged_and_rebuilt(net: Net, home: Path, where: str) -> None:
    load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    path = home / "cache" / CACHE_FILE
    good = path.read_bytes()
    data = bytearray(good)
    at = {"magic": 3, "version": 11, "links": 15, "key": 20, "body": len(data) // 2, "mac": len(data) - 1}
    if where == "truncated":
        data = data[: len(data) // 2]
    elif where == "empty":
        data = bytearray()
    else:
        data[at[where]] ^= 0x10
    path.write_bytes(bytes(data))
    d, _, report = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    assert report.state is (CacheState.VERSION if where == "version" else CacheState.DAMAGED), report
    assert report.written and path.read_bytes() == good
    same(d, scratch(net, home))


def test_a_forged_cache_is_never_trusted(net: Net, home: Path) -> None:
    """Someone who can write the cache but does not hold the node key cannot change what the node believes."""
    honest, chain, _ = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    h01 = AgencyCode.parse("H01")
    evil_key = KeyRecord(key_id(b"e" * 32), b"e" * 32)
    evil = dataclasses.replace(
        honest, agencies={**honest.agencies, h01: dataclasses.replace(honest.agencies[h01], signing_keys=(evil_key,))}
    )
    keys = chain_keys(chain, net.authority_public)
    for forger in [b"\x00" * 32, cache_mac_key(NodeKey(b"n" * 32))]:
        (home / "cache" / CACHE_FILE).write_bytes(encode_verified(evil, key=keys[-1], links=2, mac_key=forger))
        d, _, report = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
        assert report.state is CacheState.DAMAGED and "HMAC" in report.detail
        assert d.agency(h01).signing_keys != (evil_key,)
        same(d, honest)


def test_an_oversized_file_is_not_read(net: Net, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import identity.directory_cache as dc

    load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    monkeypatch.setattr(dc, "MAX_CACHE_BYTES", 100)
    _, _, report = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    assert report.state is CacheState.DAMAGED and "limit 100" in report.detail


def test_another_version_is_rebuilt(net: Net, home: Path) -> None:
    load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    path = home / "cache" / CACHE_FILE
    content = bytearray(path.read_bytes()[:-MAC_BYTES])
    content[8:12] = (CACHE_VERSION + 1).to_bytes(4, "big")
    path.write_bytes(bytes(content) + hmac.new(MAC_KEY, bytes(content), "sha256").digest())
    _, _, report = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    assert report.state is CacheState.VERSION and f"version {CACHE_VERSION + 1}" in report.detail and report.written


def test_a_cache_that_cannot_be_written_does_not_stop_the_node(net: Net, home: Path) -> None:
    (home / "cache").write_text("a file where the cache directory should be")
    d, _, report = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    assert report.state is CacheState.DAMAGED  # unreadable as a cache directory
    assert not report.written and report.write_error
    same(d, scratch(net, home))


@pytest.mark.timeout(60)
def test_concurrent_writers_leave_one_complete_file(net: Net, home: Path) -> None:
    base, chain, _ = load_directory_cached(home / "directory.cbor", net.authority_public, home / "cache", mac_key=MAC_KEY)
    keys = chain_keys(chain, net.authority_public)
    path = home / "cache" / CACHE_FILE
    versions = [dataclasses.replace(base, issued_at=base.issued_at + i) for i in range(4)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(d: Directory) -> None:
        try:
            for _ in range(25):
                write_verified(path, d, key=keys[-1], links=2, mac_key=MAC_KEY)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                d, covered = read_verified(path, keys, mac_key=MAC_KEY)  # raises if it ever sees a partial file
                assert covered == 2 and d.issued_at - base.issued_at in range(4)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(d,)) for d in versions]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in [*threads, *readers]:
        t.start()
    for t in threads:
        t.join(timeout=50)
    stop.set()
    for t in readers:
        t.join(timeout=10)
    assert not errors, errors
    assert os.listdir(home / "cache") == [CACHE_FILE]
    d, _ = read_verified(path, keys, mac_key=MAC_KEY)
    assert d in versions


def test_the_mac_key_is_the_node_s_own() -> None:
    a, b = NodeKey(b"a" * 32), NodeKey(b"b" * 32)
    assert cache_mac_key(a) == cache_mac_key(NodeKey(b"a" * 32)) != cache_mac_key(b)
    assert len(cache_mac_key(a)) == 32 and cache_mac_key(a) != a.seed


def test_decode_refuses_what_it_did_not_write() -> None:
    for data in [b"", b"truc-dvf", b"x" * 200]:
        with pytest.raises(_Unusable):
            decode_verified(data, mac_key=MAC_KEY)


# --- equivalence over random directories ---------------------------------------------

U64 = (1 << 64) - 1
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def directories(draw: st.DrawFn) -> Directory:
    peers = [NodeKey(DeterministicRng(draw(st.binary(min_size=1, max_size=4)) + bytes([i]))(32)).peer_id for i in range(3)]
    peers = sorted(set(peers))[: draw(st.integers(1, 3))]
    nodes = {
        p: NodeRecord(p, tuple(draw(st.lists(st.sampled_from(["/ip4/10.0.0.1/tcp/1", "/dns4/a.vn/tcp/4001"]), max_size=2))))
        for p in peers
    }
    roots = draw(st.lists(st.tuples(st.sampled_from("GHAK"), st.integers(1, 99)), min_size=1, max_size=4, unique=True))
    codes: list[AgencyCode] = [AgencyCode(letter, n) for letter, n in roots]
    for _ in range(draw(st.integers(0, 6))):
        p = draw(st.sampled_from(codes))
        if p.level == 4:
            continue
        child = (
            AgencyCode(p.letter, p.number, draw(st.integers(1, 99)))
            if p.level == 1
            else AgencyCode(p.letter, p.number, p.l2, draw(st.integers(1, 99)))
            if p.level == 2
            else AgencyCode(p.letter, p.number, p.l2, p.l3, draw(st.sampled_from([1, 999])))
        )
        if child not in codes:
            codes.append(child)
    agencies = {}
    shared_key = KeyRecord(key_id(b"s" * 32), b"s" * 32)
    for c in draw(st.permutations(codes)):
        keys = []
        for _ in range(draw(st.integers(1, 3))):
            pub = draw(st.binary(min_size=32, max_size=32))
            nbf = draw(st.sampled_from([0, 1, NOW, U64]))
            naf = draw(st.sampled_from([nbf, FOREVER_MS, U64]).filter(lambda x, nbf=nbf: x >= nbf))
            keys.append(KeyRecord(key_id(pub), pub, nbf, naf))
        if draw(st.booleans()) and draw(st.booleans()):
            keys.append(shared_key)  # two agencies may list the same key: key_owner's answer follows dict order
        parent = c.parent if c.parent is not None and draw(st.booleans()) else None
        agencies[c] = AgencyRecord(
            c, draw(names), tuple(keys[:8]), draw(st.binary(min_size=32, max_size=32)), draw(st.sampled_from(peers)), parent
        )
    revoked = dict(draw(st.lists(st.tuples(st.binary(min_size=8, max_size=8), st.sampled_from([0, NOW, U64])), max_size=3)))
    return Directory(NET, 1, NOW, NOW + DAY, agencies, nodes, revoked)


@settings(max_examples=40)
@given(first=directories(), second=directories(), third=directories(), cut=st.integers(0, 3))
def test_cached_equals_verified_over_random_directories(
    shared_net: Net, first: Directory, second: Directory, third: Directory, cut: int
) -> None:
    authority, pub = shared_net.authority, shared_net.authority_public
    links = [sign_snapshot(first, authority, at=NOW)]
    links.append(sign_delta(first.diff(second), net=NET, base=1, serial=2, until=NOW + 2 * DAY, key=authority, at=NOW + 1))
    mid = load_chain(links, pub)
    links.append(sign_delta(mid.diff(third), net=NET, base=2, serial=3, until=NOW + 3 * DAY, key=authority, at=NOW + 2))
    truth = load_chain(links, pub)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        # The file holds the first `cut` links (at least the snapshot); the rest arrive later, as from the store.
        in_file = max(cut, 1)
        write_chain_file(home / "directory.cbor", links[:in_file])
        load_directory_cached(home / "directory.cbor", pub, home / "cache", mac_key=MAC_KEY)  # cache of the file alone
        extended, _, report = load_directory_cached(
            home / "directory.cbor", pub, home / "cache", mac_key=MAC_KEY, later=links[in_file:]
        )
        assert report.state is (CacheState.HIT if in_file == 3 else CacheState.EXTENDED)
        warm, _, report = load_directory_cached(
            home / "directory.cbor", pub, home / "cache", mac_key=MAC_KEY, later=links[in_file:]
        )
        assert report.state is CacheState.HIT
    same(extended, truth)
    same(warm, truth)


@settings(max_examples=40)
@given(first=directories(), second=directories(), third=directories())
def test_the_hosted_index_carried_across_deltas_equals_a_rebuilt_one(
    shared_net: Net, first: Directory, second: Directory, third: Directory
) -> None:
    authority, pub = shared_net.authority, shared_net.authority_public
    d = load_chain([sign_snapshot(first, authority, at=NOW)], pub)
    for serial, target in [(2, second), (3, third)]:
        for p in d.nodes:
            d.hosted_by(p)  # built, so the delta carries it
        link = sign_delta(d.diff(target), net=NET, base=serial - 1, serial=serial, until=NOW + DAY, key=authority, at=NOW)
        d = apply_link(d, link, pub)
        assert d._hosted is not None
        rebuilt = dataclasses.replace(d, _hosted=None, _by_kid=None)
        for p in {*d.nodes, *first.nodes, *second.nodes, *third.nodes}:
            assert d.hosted_by(p) == rebuilt.hosted_by(p)
        assert set(d._hosted) == set(rebuilt._hosted or {})


def test_records_made_from_columns_set_every_field() -> None:
    """The verified form makes its records without __init__: a field added to a record must be added there too."""
    assert tuple(f.name for f in dataclasses.fields(AgencyRecord)) == _AGENCY_FIELDS
    assert tuple(f.name for f in dataclasses.fields(KeyRecord)) == _KEY_FIELDS
    key = KeyRecord(key_id(b"k" * 32), b"k" * 32, 5, 9)
    (made_key,) = unchecked_keys([key.kid], [key.public], [5], [9])
    code = AgencyCode.parse("000.00.01.G22")
    rec = AgencyRecord(code, "Phòng", (key,), b"e" * 32, "peer", code.parent)
    (made,) = unchecked_records([code], ["Phòng"], [(made_key,)], [b"e" * 32], ["peer"], [code.parent])
    assert made_key == key and made == rec and hash(made) == hash(rec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "changed"  # type: ignore[misc]
