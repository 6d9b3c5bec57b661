"""Overlay sync messages (docs/overlay.md): round trips, and every malformed input a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor
from protocol import messages as m
from protocol.errors import SchemaError, TrucError
from protocol.ids import Digest

EPOCH = bytes(range(16))


def test_sync_requests_round_trip_including_the_askers_own_heads() -> None:
    mine = m.HeadsResponse(EPOCH, (("G22", 7), ("H01", 0)), 3)
    for req in (
        m.SyncRequest(m.SyncOp.HEADS),
        m.SyncRequest(m.SyncOp.HEADS, shards=("G22", "H29")),
        m.SyncRequest(m.SyncOp.HEADS, shards=("G22",), mine=mine),
        m.SyncRequest(m.SyncOp.HEADS, mine=m.HeadsResponse(EPOCH, (), 1)),
        m.SyncRequest(m.SyncOp.LOG, shard="H29", after=5, limit=100),
        m.SyncRequest(m.SyncOp.GET, ids=(Digest(b"\x01" * 32),)),
        m.SyncRequest(m.SyncOp.DIR, after=2),
    ):
        assert m.SyncRequest.decode(req.encode()) == req
    assert m.HeadsResponse.decode(mine.encode()) == mine


@pytest.mark.parametrize("op", ["HEADS", "", "heads ", 1, [1], {"a": 1}, None])
def test_an_op_that_is_not_one_of_the_four_words_is_a_schema_error(op: object) -> None:
    data = cbor.encode({"v": m.VERSION, "op": op, "after": 0})
    with pytest.raises(SchemaError, match="op: expected heads, log, get or dir"):
        m.SyncRequest.decode(data)


def test_a_request_without_mine_is_what_older_nodes_send_and_still_valid() -> None:
    data = cbor.encode({"v": m.VERSION, "op": "heads", "shards": ["G22"]})
    assert m.SyncRequest.decode(data).mine is None


@pytest.mark.parametrize(
    ("mine", "match"),
    [
        ([1, 2], "mine: expected a map"),
        ({"epoch": EPOCH, "heads": []}, "expected exactly epoch, heads, serial"),
        ({"epoch": EPOCH, "heads": [], "serial": 1, "x": 0}, "expected exactly epoch, heads, serial"),
        ({"epoch": b"short", "heads": [], "serial": 1}, "epoch"),
        ({"epoch": EPOCH, "heads": [["G22", -1]], "serial": 1}, r"mine.heads\[0\]"),
        ({"epoch": EPOCH, "heads": [["ZZZ", 1]], "serial": 1}, r"mine.heads\[0\]"),
    ],
)
def test_a_malformed_mine_is_a_schema_error_that_says_where(mine: object, match: str) -> None:
    data = cbor.encode({"v": m.VERSION, "op": "heads", "mine": mine})
    with pytest.raises(SchemaError, match=match):
        m.SyncRequest.decode(data)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_into_the_sync_decoders_raise_only_typed_errors(data: bytes) -> None:
    for decode in (m.SyncRequest.decode, m.HeadsResponse.decode, m.LogResponse.decode, m.EnvelopesResponse.decode):
        try:
            decode(data)
        except TrucError:
            pass


@given(
    st.dictionaries(
        st.sampled_from(["epoch", "heads", "serial", "x"]),
        st.one_of(
            st.integers(-2, 2),
            st.binary(max_size=20),
            st.lists(st.lists(st.one_of(st.text(max_size=4), st.integers(-1, 9)), max_size=3), max_size=3),
        ),
    )
)
def test_arbitrary_mine_maps_raise_only_typed_errors(mine: dict[str, object]) -> None:
    data = cbor.encode({"v": m.VERSION, "op": "heads", "mine": mine})
    try:
        got = m.SyncRequest.decode(data)
    except TrucError:
        return
    assert got.mine is not None and m.SyncRequest.decode(got.encode()) == got
