"""The national SDK's HTTP calls (VNPT SDKVXP 2.0.x): signed headers, the JSON envelope, error codes.

Pure: no sockets, clocks or randomness (``now`` and secrets are arguments).
node/sdk.py serves the calls. The reference client the tests, the demo and
bench/sdk.py use (simnet/sdk_client.py) signs on its own, from the SDK's
description, not through this module. docs/sdk.md is the operator's and
integrator's description, format version ``FORMAT``.

How the SDK signs a call: it builds a map of entries (``systemid``,
``timestamp`` in the Java pattern ``ddMMyyyy'T'HHmmss+SSSS``, the call's own
keys), sends each as header ``XroadVnpt-<name>``, the map as a JSON object
string in ``XroadVnpt-sign-header``, the names joined by ``;`` in
``XroadVnpt-sign-header-key`` and ``XroadVnpt-hash-header`` = lower-case hex
HMAC-SHA256(secret, the JSON string). The server checks the MAC over the
string it received, then that every signed entry is the header sent beside
it: the values it acts on are the signed ones.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import SdkErrorCode as ErrorCode
from .errors import SdkRequestError

FORMAT = 1  # docs/sdk.md: the calls, fields, status strings and ErrorCodes as this version answers them
PREFIX = "xroadvnpt-"
SIGN_HEADER = "xroadvnpt-sign-header"
SIGN_KEYS = "xroadvnpt-sign-header-key"
HASH_HEADER = "xroadvnpt-hash-header"
USER_AGENT = "JAVASDKAgent/1.0.0 XRoad/VPCP"
VERSION = "3.0.201608"
MAX_SIGN_HEADER_CHARS = 4096
MAX_SYSTEM_ID_CHARS = 64
SYSTEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_JAVA_TS = re.compile(r"^(\d{2})(\d{2})(\d{4})T(\d{2})(\d{2})(\d{2})\+(\d{4})$")


@dataclass(frozen=True)
class SignedCall:
    """A request's signed entries (names lower-cased) and what was signed with."""

    system_id: str
    at_ms: int  # the signed timestamp, ms since the Unix epoch (UTC)
    entries: Mapping[str, str]
    sign_header: str
    mac: str

    def get(self, name: str, default: str = "") -> str:
        return self.entries.get(name.lower(), default)


# --- timestamps -------------------------------------------------------------------------


def format_timestamp(ms: int, utc_offset_min: int) -> str:
    """The SDK's ``ddMMyyyy'T'HHmmss+SSSS`` (local wall time at ``utc_offset_min``; ``SSSS`` = ms, zero-padded)."""
    t = datetime.fromtimestamp(ms / 1000, tz=timezone(timedelta(minutes=utc_offset_min)))
    return t.strftime("%d%m%YT%H%M%S") + f"+{ms % 1000:04d}"


def parse_timestamp(text: str, utc_offset_min: int) -> int:
    """ms since the epoch of a Java-pattern timestamp read as wall time at ``utc_offset_min``; raises SdkRequestError."""
    m = _JAVA_TS.match(text)
    if not m:
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, f"timestamp {text!r:.40} is not ddMMyyyy'T'HHmmss+SSSS")
    day, month, year, hour, minute, second, millis = (int(g) for g in m.groups())
    try:
        t = datetime(year, month, day, hour, minute, second, tzinfo=timezone(timedelta(minutes=utc_offset_min)))
    except ValueError:
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, f"timestamp {text!r:.40} is not a date") from None
    return int(t.timestamp()) * 1000 + min(millis, 999)


def wall_time(ms: int, utc_offset_min: int) -> str:
    """``yyyy-MM-dd HH:mm:ss`` at ``utc_offset_min``: the times in list answers (created_time, sentTime...)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone(timedelta(minutes=utc_offset_min))).strftime("%Y-%m-%d %H:%M:%S")


# --- signing ----------------------------------------------------------------------------


def mac(secret: bytes, sign_header: str) -> str:
    return hmac.new(secret, sign_header.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, entries: Mapping[str, str]) -> dict[str, str]:
    """The headers the SDK sends for ``entries`` (which include systemid and timestamp)."""
    sign_header = json.dumps(dict(entries), separators=(",", ":"), ensure_ascii=True)
    out = {f"XroadVnpt-{k}": v for k, v in entries.items()}
    out["XroadVnpt-sign-header"] = sign_header
    out["XroadVnpt-sign-header-key"] = ";".join(entries)
    out["XroadVnpt-hash-header"] = mac(secret, sign_header)
    out["XroadVnpt-version"] = VERSION
    out["User-Agent"] = USER_AGENT
    return out


def read_signed(headers: Mapping[str, str], utc_offset_min: int) -> SignedCall:
    """The signed entries of a request (header names lower-cased); raises SdkRequestError(MALFORMED_AUTH).

    The MAC is not checked here (the secret is the node's): see :func:`verify`.
    """
    sign_header = headers.get(SIGN_HEADER, "")
    given = headers.get(HASH_HEADER, "")
    if not sign_header or not given:
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, "XroadVnpt-sign-header and XroadVnpt-hash-header are required")
    if len(sign_header) > MAX_SIGN_HEADER_CHARS:
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, f"XroadVnpt-sign-header is over {MAX_SIGN_HEADER_CHARS} characters")
    try:
        raw: Any = json.loads(sign_header)
    except ValueError:
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, "XroadVnpt-sign-header is not a JSON object") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, "XroadVnpt-sign-header is not a JSON object of texts")
    entries = {k.lower(): v for k, v in raw.items()}
    if len(entries) != len(raw):
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, "XroadVnpt-sign-header names an entry twice")
    keys = headers.get(SIGN_KEYS)
    if keys is not None and sorted(k.lower() for k in keys.split(";") if k) != sorted(entries):
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, "XroadVnpt-sign-header-key does not name the signed entries")
    for name, value in entries.items():
        sent = headers.get(PREFIX + name)
        if sent is not None and sent != value:
            raise SdkRequestError(ErrorCode.BAD_SIGNATURE, f"header XroadVnpt-{name} is not the value that was signed")
    system_id = entries.get("systemid", "")
    if not SYSTEM_ID.match(system_id):
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, "the signed systemid is missing or not a system id")
    if "timestamp" not in entries:
        raise SdkRequestError(ErrorCode.MALFORMED_AUTH, "the signed entries have no timestamp")
    at = parse_timestamp(entries["timestamp"], utc_offset_min)
    return SignedCall(system_id, at, entries, sign_header, given.lower())


def verify(call: SignedCall, secret: bytes) -> bool:
    """Whether ``call`` was signed with ``secret`` (constant-time compare)."""
    return hmac.compare_digest(mac(secret, call.sign_header), call.mac)


# --- hash-file ----------------------------------------------------------------------------


def unpadded_hex(digest: bytes) -> str:
    """The SDK's hex: each byte without its leading zero (``0a`` -> ``a``)."""
    return "".join(format(b, "x") for b in digest)


def hash_matches(given: str, digest: bytes) -> bool:
    """Whether ``hash-file`` names ``digest`` (SHA-256), in canonical hex or the SDK's unpadded form."""
    g = given.strip().lower().encode()
    return hmac.compare_digest(g, digest.hex().encode()) or hmac.compare_digest(g, unpadded_hex(digest).encode())


# --- answers ----------------------------------------------------------------------------


def ok(**fields: Any) -> bytes:
    return _envelope({"status": "OK", "ErrorCode": ErrorCode.OK.value, "ErrorDesc": "", **fields})


def fail(error: ErrorCode, desc: str, **fields: Any) -> bytes:
    return _envelope({"status": "FAIL", "ErrorCode": error.value, "ErrorDesc": desc, **fields})


def _envelope(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_list(text: str, what: str) -> list[str]:
    """A header holding a JSON array of texts (``to``), or one bare text; raises SdkRequestError(MALFORMED)."""
    text = text.strip()
    if not text:
        return []
    if not text.startswith("["):
        return [text]
    try:
        v: Any = json.loads(text)
    except ValueError:
        raise SdkRequestError(ErrorCode.MALFORMED, f"{what} is not a JSON array") from None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SdkRequestError(ErrorCode.MALFORMED, f"{what} is not a JSON array of texts")
    return v
