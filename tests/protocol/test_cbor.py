from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor
from protocol.errors import DecodeError, SchemaError, TooLargeError

LIMIT = 1 << 16


def test_key_order_is_length_first_then_bytewise() -> None:
    data = cbor.encode({"bb": 1, "a": 2, "c": 3, "aaa": 4})
    assert data == bytes.fromhex("a4 6161 02 6163 03 626262 01 63616161 04".replace(" ", ""))
    assert cbor.decode(data, max_bytes=LIMIT) == {"a": 2, "c": 3, "bb": 1, "aaa": 4}


@pytest.mark.parametrize(
    ("hexdata", "why"),
    [
        ("a2616101616102", "duplicate key"),
        ("9f0102ff", "indefinite array"),
        ("5f4101ff", "indefinite bytes"),
        ("a2616202616101", "keys out of order"),
        ("1817", "non-minimal integer"),
        ("f93c00", "float"),
        ("c11a514b67b0", "tag (epoch date)"),
        ("d9d9f700", "self-describe tag"),
        ("0101", "trailing bytes"),
        ("5b7fffffffffffffff00", "huge claimed length"),
        ("a1010102", "integer map key"),
        ("62c328", "invalid UTF-8"),
        ("", "empty"),
        ("c249010000000000000000", "bignum"),
    ],
)
def test_strict_decoding_refuses(hexdata: str, why: str) -> None:
    with pytest.raises(DecodeError):
        cbor.decode(bytes.fromhex(hexdata), max_bytes=LIMIT)


def test_depth_and_size_limits() -> None:
    deep = b"\x81" * (cbor.MAX_DEPTH + 2) + b"\x00"
    with pytest.raises(DecodeError):
        cbor.decode(deep, max_bytes=LIMIT)
    with pytest.raises(TooLargeError):
        cbor.decode(cbor.encode(b"x" * 100), max_bytes=50)


def test_encoding_our_own_bad_values_is_a_bug_not_a_decode_error() -> None:
    with pytest.raises(TypeError):
        cbor.encode({"x": 1.5})
    with pytest.raises(TypeError):
        cbor.encode({"a-key-that-is-too-long-for-v1": 1})


def test_schema_helpers_name_the_field() -> None:
    m = cbor.expect_map({"a": 1, "b": "x"}, "thing", {"a"}, {"b"})
    assert cbor.get_int(m, "a", "thing", 0, 5) == 1
    with pytest.raises(SchemaError, match=r"thing\.b: expected an integer"):
        cbor.get_int(m, "b", "thing")
    with pytest.raises(SchemaError, match="missing field"):
        cbor.expect_map({}, "thing", {"a"})
    with pytest.raises(SchemaError, match="unexpected field"):
        cbor.expect_map({"a": 1, "z": 2}, "thing", {"a"})


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=20,
)


@given(plain)
def test_round_trip(value: Any) -> None:
    data = cbor.encode(value)
    assert cbor.decode(data, max_bytes=LIMIT) == value
    assert cbor.encode(cbor.decode(data, max_bytes=LIMIT)) == data


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        value = cbor.decode(data, max_bytes=LIMIT)
    except DecodeError:
        return
    assert cbor.encode(value) == data


@given(plain)
def test_non_canonical_encodings_of_valid_values_are_refused(value: Any) -> None:
    loose = cbor2.dumps(value, canonical=False)
    if loose != cbor.encode(value):
        with pytest.raises(DecodeError):
            cbor.decode(loose, max_bytes=LIMIT)


@given(plain)
def test_encoding_is_cbor2s_canonical_encoding_whatever_the_key_order(value: Any) -> None:
    """encode() takes cbor2's plain encoder when every map is already in order: the bytes must not change."""
    assert cbor.encode(value) == cbor2.dumps(value, canonical=True)


@pytest.mark.parametrize("keys", [["é", "z"], ["b", "a"], ["aa", "b"], ["a", "é", "b"], ["", "a", "ab", "b"]])
def test_key_order_is_utf8_length_first_also_for_non_ascii_keys(keys: list[str]) -> None:
    value = {key: i for i, key in enumerate(keys)}
    canonical = cbor2.dumps(value, canonical=True)
    assert cbor.encode(value) == canonical
    assert cbor.decode(canonical, max_bytes=LIMIT) == value
    loose = cbor2.dumps(value)
    if loose != canonical:
        with pytest.raises(DecodeError, match="canonical order"):
            cbor.decode(loose, max_bytes=LIMIT)
