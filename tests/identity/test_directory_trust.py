from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.directory import (
    Directory,
    DirectoryDelta,
    JoinRequest,
    NodeRecord,
    apply_link,
    decode_chain,
    load_chain,
    load_directory_file,
    sign_delta,
    sign_snapshot,
    write_chain_file,
)
from identity.keys import AgencyKeys, AuthorityPublic, NodeKey, SigningKey
from identity.provision import DeterministicRng, agency_record
from identity.sealing import FileSource, seal_document, seal_status
from identity.trust import Trust
from protocol.agency import AgencyCode
from protocol.document import DocumentMeta
from protocol.envelope import Envelope, MessageHeader
from protocol.errors import (
    DirectoryError,
    DirectoryExpiredError,
    KeyNotValidError,
    NotAuthorizedError,
    RemoteError,
    RevokedKeyError,
    SchemaError,
    SignatureError,
    StaleEnvelopeError,
    UnknownAgencyError,
    UnknownKeyError,
    WrongNetworkError,
)
from protocol.status import Role, StatusCode
from tests.conftest import DAY, NET, NOW, Net

G22, H01, H29, SUB = "000.00.00.G22", "000.00.00.H01", "000.00.00.H29", "000.00.01.G22"


def doc_from(net: Net, sender: str, to: list[str], at: int = NOW, trust: Trust | None = None) -> Envelope:
    trust = trust or net.trust
    env, _ = seal_document(
        DocumentMeta(subject="s"),
        [FileSource("a.txt", "text/plain", data=b"a")],
        net=NET,
        sender=net.k(sender),
        recipients=[trust.recipient(AgencyCode.parse(c)) for c in to],
        at=at,
        rng=DeterministicRng(at),
    )
    return env


def test_snapshot_and_deltas_chain(net: Net, tmp_path: Path) -> None:
    snap = sign_snapshot(net.directory, net.authority, at=NOW)
    new_keys = AgencyKeys.generate(AgencyCode.parse("H79"), DeterministicRng(b"h79"))
    new_node = NodeKey(DeterministicRng(b"n79")(32))
    delta = DirectoryDelta(
        put_agencies=(agency_record(new_keys, "UBND tỉnh Hậu Giang", new_node.peer_id),),
        put_nodes=(NodeRecord(new_node.peer_id, ("/ip4/127.0.0.1/tcp/4079",)),),
    )
    link2 = sign_delta(delta, net=NET, base=1, serial=2, until=NOW + 60 * DAY, key=net.authority, at=NOW)
    path = tmp_path / "directory.cbor"
    write_chain_file(path, [snap, link2])
    d, chain = load_directory_file(path, net.authority_public)
    assert d.serial == 2 and d.valid_until == NOW + 60 * DAY
    assert d.agency(AgencyCode.parse("H79")).name == "UBND tỉnh Hậu Giang"
    assert d.hosted_by(new_node.peer_id) == [AgencyCode.parse("H79")]
    assert d.hosted_by(net.nodes[0].peer_id) == [AgencyCode.parse(G22), AgencyCode.parse(SUB)]
    assert [e.id for e in chain] == [snap.id, link2.id]
    # The snapshot's content survives the round trip exactly.
    again = load_chain(decode_chain(path.read_bytes())[:1], net.authority_public)
    assert again.snapshot_cbor() == net.directory.snapshot_cbor()


def test_a_delta_must_apply_to_the_current_serial(net: Net) -> None:
    snap = sign_snapshot(net.directory, net.authority, at=NOW)
    d = apply_link(None, snap, net.authority_public)
    skip = sign_delta(DirectoryDelta(), net=NET, base=2, serial=3, until=NOW + DAY, key=net.authority, at=NOW)
    with pytest.raises(DirectoryError, match="applies to serial 2"):
        apply_link(d, skip, net.authority_public)
    with pytest.raises(DirectoryError, match="must start with a snapshot"):
        apply_link(None, skip, net.authority_public)
    with pytest.raises(DirectoryError, match="not newer"):
        apply_link(d, snap, net.authority_public)


def test_directory_signed_by_someone_else_is_refused(net: Net) -> None:
    rogue = SigningKey.generate(DeterministicRng(b"rogue"))
    forged = sign_snapshot(net.directory, rogue, at=NOW)
    with pytest.raises(DirectoryError, match="not the pinned network authority"):
        apply_link(None, forged, net.authority_public)
    # Same key id claimed, wrong signature.
    snap = sign_snapshot(net.directory, net.authority, at=NOW)
    bad = Envelope(snap.header, snap.header_bytes, rogue.sign(snap.signed_bytes), snap.inline)
    with pytest.raises(SignatureError):
        apply_link(None, bad, net.authority_public)
    with pytest.raises(DirectoryError, match="network"):
        apply_link(None, snap, AuthorityPublic(net.authority.public, "another-net"))


def test_inconsistent_deltas_are_refused(net: Net) -> None:
    d = net.directory
    cases = [
        (DirectoryDelta(del_agencies=(AgencyCode.parse("H05"),)), "not listed"),
        (DirectoryDelta(del_nodes=(net.nodes[1].peer_id,)), "still hosts"),
        (DirectoryDelta(del_agencies=(AgencyCode.parse(G22),)), "parent"),
        (
            DirectoryDelta(
                put_agencies=(
                    agency_record(
                        AgencyKeys.generate(AgencyCode.parse("H05"), DeterministicRng(1)), "x", NodeKey(b"\x05" * 32).peer_id
                    ),
                )
            ),
            "not listed",
        ),
    ]
    for delta, match in cases:
        link = sign_delta(delta, net=NET, base=1, serial=2, until=NOW + DAY, key=net.authority, at=NOW)
        with pytest.raises(DirectoryError, match=match):
            apply_link(d, link, net.authority_public)


def test_diff_then_apply_reaches_the_target(net: Net) -> None:
    d = net.directory
    moved = dict(d.agencies)
    h29 = AgencyCode.parse(H29)
    moved[h29] = dataclasses.replace(moved[h29], name="TP. Hồ Chí Minh")
    revoked = {net.k(H01).signing.kid: NOW}
    target = Directory(NET, 2, NOW, NOW + DAY, moved, d.nodes, revoked)
    delta = d.diff(target)
    assert [a.code for a in delta.put_agencies] == [h29] and delta.revoke == ((net.k(H01).signing.kid, NOW),)
    link = sign_delta(delta, net=NET, base=1, serial=2, until=NOW + DAY, key=net.authority, at=NOW)
    after = apply_link(d, link, net.authority_public)
    assert after.snapshot_cbor() == target.snapshot_cbor()


def test_the_hosted_index_is_carried_across_a_delta_not_rebuilt(net: Net) -> None:
    d = apply_link(None, sign_snapshot(net.directory, net.authority, at=NOW), net.authority_public)
    g22_node, h01_node, h29_node = (n.peer_id for n in net.nodes)
    assert d.hosted_by(g22_node) == [AgencyCode.parse(G22), AgencyCode.parse(SUB)]  # built here
    sub = d.agencies[AgencyCode.parse(SUB)]
    extra = agency_record(AgencyKeys.generate(AgencyCode.parse("H05"), DeterministicRng(5)), "Tỉnh Bến Tre", h01_node)
    delta = DirectoryDelta(
        put_agencies=(dataclasses.replace(sub, node=h01_node), extra),  # SUB moves to H01's node
        del_agencies=(AgencyCode.parse(H29),),
        del_nodes=(h29_node,),
    )
    after = apply_link(
        d, sign_delta(delta, net=NET, base=1, serial=2, until=NOW + DAY, key=net.authority, at=NOW), net.authority_public
    )
    assert after._hosted is not None, "the index was dropped: the next peer connection rebuilds it"
    assert after.hosted_by(g22_node) == [AgencyCode.parse(G22)]
    assert after.hosted_by(h01_node) == [AgencyCode.parse(SUB), AgencyCode.parse(H01), AgencyCode.parse("H05")]  # code order
    assert after.hosted_by(h29_node) == [] and h29_node not in after._hosted
    assert d.hosted_by(g22_node) == [AgencyCode.parse(G22), AgencyCode.parse(SUB)]  # the old serial is untouched
    rebuilt = dataclasses.replace(after, _hosted=None)
    assert {p: rebuilt.hosted_by(p) for p in after.nodes} == {p: after.hosted_by(p) for p in after.nodes}


def test_trust_refuses_unknown_revoked_and_out_of_window_keys(net: Net) -> None:
    env = doc_from(net, H01, [G22])
    net.trust.verify(env, NOW)
    # Revoked: refused whatever time the envelope claims.
    d = net.directory
    revoked = Trust(
        Directory(NET, 2, NOW, NOW + DAY, d.agencies, d.nodes, {net.k(H01).signing.kid: NOW + DAY}), net.authority_public
    )
    with pytest.raises(RevokedKeyError):
        revoked.verify(env, NOW)
    # Unknown key: a fresh key claiming to be H01.
    stranger = dataclasses.replace(net.k(H01), signing=SigningKey.generate(DeterministicRng(b"x")))
    net.keys["stranger"] = stranger
    forged = doc_from(net, "stranger", [G22])
    with pytest.raises(UnknownKeyError):
        net.trust.verify(forged, NOW)
    # Another agency's key used under H01's code.
    borrowed = dataclasses.replace(net.k(H29), code=AgencyCode.parse(H01))
    net.keys["borrowed"] = borrowed
    with pytest.raises(NotAuthorizedError, match=r"belongs to 000\.00\.00\.H29"):
        net.trust.verify(doc_from(net, "borrowed", [G22]), NOW)
    # Validity window.
    agencies = dict(d.agencies)
    h01 = AgencyCode.parse(H01)
    agencies[h01] = dataclasses.replace(
        agencies[h01], signing_keys=(dataclasses.replace(agencies[h01].signing_keys[0], not_after=NOW - 1),)
    )
    windowed = Trust(Directory(NET, 2, NOW, NOW + DAY, agencies, d.nodes, {}), net.authority_public)
    with pytest.raises(KeyNotValidError):
        windowed.verify(env, NOW)


def test_trust_refuses_unknown_agencies_expired_directories_and_stale_envelopes(net: Net) -> None:
    with pytest.raises(UnknownAgencyError):
        net.trust.recipient(AgencyCode.parse("H05"))
    env = doc_from(net, H01, [G22])
    with pytest.raises(DirectoryExpiredError, match="ask the network authority"):
        net.trust.verify(env, NOW + 31 * DAY)
    with pytest.raises(StaleEnvelopeError, match="future"):
        net.trust.verify(doc_from(net, H01, [G22], at=NOW + 3_600_000), NOW)
    with pytest.raises(StaleEnvelopeError, match="ago"):
        net.trust.verify(doc_from(net, H01, [G22], at=NOW - 40 * DAY), NOW)
    net.trust.verify(doc_from(net, H01, [G22], at=NOW - 40 * DAY), NOW, check_age=False)
    other = Trust(Directory("other-net", 1, NOW, NOW + DAY, net.directory.agencies, net.directory.nodes), net.authority_public)
    with pytest.raises(WrongNetworkError):
        other.verify(env, NOW)


def test_status_parties(net: Net) -> None:
    doc = doc_from(net, G22, [H01, H29])
    assert isinstance(doc.header, MessageHeader)

    def status(sender: str, to: str, code: StatusCode) -> MessageHeader:
        env = seal_status(
            net=NET,
            sender=net.k(sender),
            recipient=net.trust.recipient(AgencyCode.parse(to)),
            doc=doc.id,
            code=code,
            seq=1,
            note="",
            at=NOW,
            rng=DeterministicRng(b"s"),
        )
        assert isinstance(env.header, MessageHeader)
        return env.header

    assert net.trust.status_role(status(H01, G22, StatusCode.ARRIVED), doc.header) == (Role.RECIPIENT, AgencyCode.parse(H01))
    assert net.trust.status_role(status(G22, H29, StatusCode.TAKEBACK_REQUESTED), doc.header) == (
        Role.SENDER,
        AgencyCode.parse(H29),
    )
    with pytest.raises(NotAuthorizedError, match="not a party"):
        net.trust.status_role(status(H01, H29, StatusCode.ACCEPTED), doc.header)
    with pytest.raises(NotAuthorizedError, match="only the recipient"):
        net.trust.status_role(status(G22, H01, StatusCode.ACCEPTED), doc.header)
    with pytest.raises(NotAuthorizedError, match="original sender"):
        net.trust.status_role(status(H01, G22, StatusCode.TAKEBACK_REQUESTED), doc.header)


def test_membership(net: Net) -> None:
    assert net.trust.is_member(net.nodes[0].peer_id)
    assert not net.trust.is_member(NodeKey(b"\x09" * 32).peer_id)


def test_join_request_is_signed_by_the_node(net: Net) -> None:
    node = net.nodes[1]
    req = JoinRequest(
        NET, NodeRecord(node.peer_id, node.addrs), (agency_record(net.k(H01), "UBND tỉnh An Giang", node.peer_id),)
    ).signed(node.key)
    back = JoinRequest.decode(req.encode())
    assert back.agencies[0].code == AgencyCode.parse(H01)
    forged = JoinRequest(
        req.net,
        NodeRecord(net.nodes[2].peer_id, ()),
        tuple(dataclasses.replace(a, node=net.nodes[2].peer_id) for a in req.agencies),
        req.signature,
    )
    with pytest.raises(SignatureError):
        JoinRequest.decode(forged.encode())
    with pytest.raises(SchemaError, match="another node"):
        JoinRequest.decode(
            JoinRequest(NET, req.node, (agency_record(net.k(H29), "x", net.nodes[2].peer_id),)).signed(node.key).encode()
        )


@settings(max_examples=100)
@given(st.data())
def test_mutated_directory_files_raise_only_remote_errors(shared_net: Net, data: st.DataObject) -> None:
    snap = sign_snapshot(shared_net.directory, shared_net.authority, at=NOW)
    raw = bytearray(snap.encode())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        env = Envelope.decode(bytes(raw), max_bytes=1 << 20)
        apply_link(None, env, shared_net.authority_public)
    except RemoteError:
        return
    assert bytes(raw) == snap.encode()
