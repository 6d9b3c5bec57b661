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


def _loose(value: Any, widen: Any) -> bytes:
    """An encoding of ``value`` (keys in canonical order) whose heads ``widen()`` may stretch past their shortest form."""

    def head(major: int, n: int) -> bytes:
        sizes = [s for s in (0, 1, 2, 4, 8) if (n < 24 if s == 0 else n < 1 << (8 * s))]
        size = sizes[0] if not widen() else sizes[min(len(sizes) - 1, 1)]
        if size == 0:
            return bytes([major << 5 | n])
        return bytes([major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[size]]) + n.to_bytes(size, "big")

    if value is None or type(value) is bool:
        return cbor2.dumps(value)
    if type(value) is int:
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if type(value) is bytes:
        return head(2, len(value)) + value
    if type(value) is str:
        raw = value.encode("utf-8")
        return head(3, len(raw)) + raw
    if type(value) is list:
        return head(4, len(value)) + b"".join(_loose(v, widen) for v in value)
    keys = sorted(value, key=lambda k: (len(k.encode("utf-8")), k.encode("utf-8")))
    return head(5, len(value)) + b"".join(_loose(k, widen) + _loose(value[k], widen) for k in keys)


@given(plain, st.data())
def test_a_head_longer_than_its_shortest_form_anywhere_is_refused(value: Any, data: st.DataObject) -> None:
    """decode() adds up the canonical size instead of re-encoding: any non-minimal head must still be caught."""
    widened: list[bool] = []

    def widen() -> bool:
        w = data.draw(st.booleans())
        widened.append(w)
        return w

    raw = _loose(value, widen)
    if any(widened) and raw != cbor.encode(value):
        with pytest.raises(DecodeError, match="canonical form"):
            cbor.decode(raw, max_bytes=LIMIT)
    else:
        assert raw == cbor.encode(value) and cbor.decode(raw, max_bytes=LIMIT) == value
    with pytest.raises(DecodeError):
        cbor.decode(cbor.encode(value) + b"\x00", max_bytes=LIMIT)  # trailing bytes


@given(plain, st.binary(min_size=1, max_size=20))
def test_lenient_decoding_takes_any_key_order_and_refuses_bytes_after_the_value(value: Any, extra: bytes) -> None:
    """decode_lenient (integrators' frames) accepts what cbor2 writes without canonical mode, and refuses any bytes
    after the value, naming how many."""
    loose = cbor2.dumps(value)  # insertion order, not canonical
    assert cbor.decode_lenient(loose, max_bytes=LIMIT) == value
    with pytest.raises(DecodeError, match=f": {len(extra)} bytes after the end of the CBOR value"):
        cbor.decode_lenient(loose + extra, max_bytes=LIMIT)
