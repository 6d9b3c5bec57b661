"""Canonical CBOR: one byte string per value, and strict decoding.

The data model is deliberately small: unsigned and negative integers that fit
in 64 bits, byte strings, text strings, arrays, maps whose keys are text
strings shorter than 24 bytes, booleans and null. No floats, no tags, no
indefinite lengths.

Encoding is cbor2's ``canonical=True``: definite lengths, shortest integer and
length forms, map keys sorted length-first then bytewise (RFC 7049 §3.9).
Because every key is a text string shorter than 24 bytes, its first encoded
byte is ``0x60 + len``, so this order is also the bytewise order of the
encoded keys that RFC 8949 §4.2.1 asks for: any deterministic CBOR encoder
produces the same bytes. ``docs/protocol.md`` says the same.

Decoding refuses duplicate keys, indefinite lengths, tags, floats, nesting
deeper than ``MAX_DEPTH``, input longer than the caller's limit, trailing
bytes, and anything that does not re-encode to exactly the input.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from typing import Any, NoReturn

import cbor2

from .errors import DecodeError, SchemaError, TooLargeError

MAX_DEPTH = 16
MAX_KEY_BYTES = 23
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


def encode(value: Any) -> bytes:
    """Canonical bytes of ``value``; raises TypeError for values outside the data model (a bug).

    cbor2's canonical mode encodes and sorts every map's keys; when every map
    already holds its keys in canonical order (records build theirs so), the
    plain encoder writes the same bytes, 3× faster.
    """
    if _check_plain(value, 0, strict=False) >= 0:
        return cbor2.dumps(value)
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes, *, max_bytes: int) -> Any:
    """Decode canonical CBOR strictly.

    Raises TooLargeError when ``data`` exceeds ``max_bytes`` and DecodeError
    for anything that is not the canonical encoding of a value in the data
    model.
    """
    data = _input(data, max_bytes)
    value = _read(lambda: cbor2.loads(data, **_DECODER_OPTIONS))
    size = _check_plain(value, 0, strict=True)
    if size < 0:
        raise DecodeError("map keys not in canonical order")
    # Without re-encoding (a copy of every byte string): with keys in order,
    # definite lengths and no tags or floats, the only other encodings of this
    # value use longer heads (an integer or a length not in its shortest form),
    # or trailing bytes follow it; either makes the input longer than the
    # canonical encoding, whose size the walk added up.
    if size != len(data):
        raise DecodeError("not in canonical form (or trailing bytes)")
    return value


def decode_lenient(data: bytes, *, max_bytes: int) -> Any:
    """Decode CBOR from integrators (the IPC socket): same data model, any key order.

    Everything :func:`decode` refuses is refused (trailing bytes included)
    except non-canonical ordering and non-minimal lengths, so a client library in any language
    works without a deterministic mode. Raises TooLargeError or DecodeError.
    """
    data = _input(data, max_bytes)
    reader = _ByteReader(data)
    # Not cbor2.loads: the reader's position tells where the value ended, so trailing bytes are
    # refused without the re-encoding check that would also refuse other key orders.
    value = _read(lambda: cbor2.CBORDecoder(reader, **_DECODER_OPTIONS).decode())  # type: ignore[arg-type]  # read() will do
    if reader.pos != len(data):
        raise DecodeError(f"{len(data) - reader.pos} bytes after the end of the CBOR value")
    _check_plain(value, 0, strict=True)
    return value


# What both decoders refuse while reading (the rest of the data model is _check_plain's).
_DECODER_OPTIONS: dict[str, Any] = {
    "allow_duplicate_keys": False,
    "allow_indefinite": False,
    "max_depth": MAX_DEPTH,
    "strict_hashable_types": True,
}


def _input(data: bytes, max_bytes: int) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise TooLargeError(f"{len(data)} bytes, limit {max_bytes}")
    if not data:
        raise DecodeError("empty input")
    return bytes(data)


def _read(decode: Callable[[], Any]) -> Any:
    """Run cbor2; its errors become DecodeError."""
    try:
        return decode()
    except cbor2.CBORDecodeError as exc:
        raise DecodeError(str(exc)) from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # cbor2 raises these for some hostile inputs (huge lengths, bad UTF-8).
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None


class _ByteReader:
    """The file-like object cbor2's decoder reads from; its position tells where the value ended.

    Not seekable, so the decoder reads exactly what each item needs.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _head(n: int) -> int:
    """Bytes of the shortest head for argument ``n`` (a length or an integer's magnitude)."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x1_0000_0000 else 9


def _check_plain(value: Any, depth: int, *, strict: bool) -> int:
    """Raise for anything outside the data model; return the size of its canonical encoding, or -1 if some map's
    keys are not in canonical order (the rest is still checked).

    ``strict`` selects the error: DecodeError for remote input, TypeError for
    our own values (a bug). Canonical order is by encoded length, then
    bytewise; keys are short text, so that is by UTF-8 length, then by code
    point (UTF-8 keeps code point order).
    """
    if depth > MAX_DEPTH:
        _fail(strict, "nesting too deep")
    t = type(value)
    if t is bytes or (not strict and isinstance(value, bytes)):  # our own Digest values encode as plain bytes
        return _head(len(value)) + len(value)
    if t is str:
        n = len(value) if value.isascii() else len(value.encode("utf-8"))
        return _head(n) + n
    if t is bool or value is None:
        return 1
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            _fail(strict, "integer out of 64-bit range")
        return _head(value if value >= 0 else -1 - value)
    ordered = True
    size = 0
    if t is list:
        for item in value:
            n = _check_plain(item, depth + 1, strict=strict)
            if n < 0:
                ordered = False
            size += n
        return _head(len(value)) + size if ordered else -1
    if t is dict:
        last_len, last = -1, ""
        for key, item in value.items():
            if type(key) is not str:
                _fail(strict, f"map key must be text under 24 bytes, got {key!r:.40}")
            n = len(key) if key.isascii() else len(key.encode("utf-8"))
            if n > MAX_KEY_BYTES:
                _fail(strict, f"map key must be text under 24 bytes, got {key!r:.40}")
            if n < last_len or (n == last_len and key < last):
                ordered = False
            last_len, last = n, key
            item_size = _check_plain(item, depth + 1, strict=strict)
            if item_size < 0:
                ordered = False
            size += 1 + n + item_size
        return _head(len(value)) + size if ordered else -1
    _fail(strict, f"{t.__name__} is not allowed")


def _fail(strict: bool, why: str) -> NoReturn:
    if strict:
        raise DecodeError(why)
    raise TypeError(why)


# --- schema helpers -------------------------------------------------------------
# Decoded maps are checked field by field; every failure names the field path.


def expect_map(value: Any, where: str, required: Set[str], optional: Set[str] = frozenset()) -> dict[str, Any]:
    """Check that ``value`` is a map with exactly the required keys plus any optional ones."""
    if type(value) is not dict:
        raise SchemaError(f"{where}: expected a map, got {_kind(value)}")
    keys = set(value)
    missing = required - keys
    if missing:
        raise SchemaError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    extra = keys - required - optional
    if extra:
        raise SchemaError(f"{where}: unexpected field(s) {', '.join(sorted(extra))}")
    return value


def get_int(m: dict[str, Any], key: str, where: str, lo: int = 0, hi: int = _INT_MAX) -> int:
    v = m[key]
    if type(v) is not int:
        raise SchemaError(f"{where}.{key}: expected an integer, got {_kind(v)}")
    if not lo <= v <= hi:
        raise SchemaError(f"{where}.{key}: {v} is outside {lo}..{hi}")
    return v


def get_bytes(m: dict[str, Any], key: str, where: str, *, size: int | None = None, max_len: int | None = None) -> bytes:
    v = m[key]
    if type(v) is not bytes:
        raise SchemaError(f"{where}.{key}: expected bytes, got {_kind(v)}")
    if size is not None and len(v) != size:
        raise SchemaError(f"{where}.{key}: expected {size} bytes, got {len(v)}")
    if max_len is not None and len(v) > max_len:
        raise SchemaError(f"{where}.{key}: {len(v)} bytes, limit {max_len}")
    return v


def get_text(m: dict[str, Any], key: str, where: str, *, max_len: int, min_len: int = 0) -> str:
    v = m[key]
    if type(v) is not str:
        raise SchemaError(f"{where}.{key}: expected text, got {_kind(v)}")
    if not min_len <= len(v) <= max_len:
        raise SchemaError(f"{where}.{key}: length {len(v)} is outside {min_len}..{max_len}")
    return v


def get_list(m: dict[str, Any], key: str, where: str, *, max_len: int, min_len: int = 0) -> list[Any]:
    v = m[key]
    if type(v) is not list:
        raise SchemaError(f"{where}.{key}: expected an array, got {_kind(v)}")
    if not min_len <= len(v) <= max_len:
        raise SchemaError(f"{where}.{key}: {len(v)} items, expected {min_len}..{max_len}")
    return v


def _kind(v: Any) -> str:
    return {dict: "a map", list: "an array", bytes: "bytes", str: "text", int: "an integer", bool: "a boolean"}.get(
        type(v), "null" if v is None else type(v).__name__
    )
