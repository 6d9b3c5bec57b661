"""protocol/sdk.py and protocol/multipart.py: the SDK's signature, timestamps, hash forms and multipart, without I/O."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import sdk
from protocol.errors import SdkErrorCode, SdkRequestError
from protocol.multipart import MultipartReader, PartData, PartEnded, PartStarted, boundary_of

SECRET = b"0123456789abcdef0123456789abcdef"
AT = 1_764_571_353_042  # 2025-12-01 06:42:33.042 UTC


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_the_java_timestamp_is_local_wall_time_with_four_digit_millis() -> None:
    text = sdk.format_timestamp(AT, 420)
    assert text == "01122025T134233+0042"
    assert sdk.parse_timestamp(text, 420) == AT
    for bad in ("2025-12-01T13:42:33", "32122025T134233+0042", "01122025T134233"):
        with pytest.raises(SdkRequestError) as e:
            sdk.parse_timestamp(bad, 420)
        assert e.value.error is SdkErrorCode.MALFORMED_AUTH


def test_a_call_signed_as_the_sdk_signs_reads_back_and_verifies() -> None:
    entries = {"systemid": "iofice", "timestamp": sdk.format_timestamp(AT, 420), "docId": "abc"}
    headers = lower(sdk.signed_headers(SECRET, entries))
    text = headers["xroadvnpt-sign-header"]
    assert headers["xroadvnpt-hash-header"] == hmac.new(SECRET, text.encode(), hashlib.sha256).hexdigest()
    assert headers["xroadvnpt-sign-header-key"] == "systemid;timestamp;docId"
    call = sdk.read_signed(headers, 420)
    assert (call.system_id, call.at_ms, call.get("docid")) == ("iofice", AT, "abc")
    assert sdk.verify(call, SECRET) and not sdk.verify(call, b"another secret")


def test_a_header_that_differs_from_what_was_signed_is_a_bad_signature() -> None:
    entries = {"systemid": "iofice", "timestamp": sdk.format_timestamp(AT, 420), "from": "000.00.00.G22"}
    headers = lower(sdk.signed_headers(SECRET, entries))
    headers["xroadvnpt-from"] = "000.00.00.H29"
    with pytest.raises(SdkRequestError) as e:
        sdk.read_signed(headers, 420)
    assert e.value.error is SdkErrorCode.BAD_SIGNATURE


@pytest.mark.parametrize(
    "change",
    [
        {"xroadvnpt-sign-header": ""},
        {"xroadvnpt-sign-header": "[1, 2]"},
        {"xroadvnpt-sign-header": json.dumps({"systemid": "a b", "timestamp": "x"})},
        {"xroadvnpt-sign-header": json.dumps({"systemid": "iofice"})},
        {"xroadvnpt-sign-header-key": "systemid"},
        {"xroadvnpt-sign-header": "x" * 5000},
    ],
)
def test_signature_headers_not_in_the_sdk_form_are_malformed(change: dict[str, str]) -> None:
    headers = lower(sdk.signed_headers(SECRET, {"systemid": "iofice", "timestamp": sdk.format_timestamp(AT, 420)}))
    del headers["xroadvnpt-systemid"], headers["xroadvnpt-timestamp"]  # the server acts on the signed values
    headers.update(change)
    with pytest.raises(SdkRequestError) as e:
        sdk.read_signed(headers, 420)
    assert e.value.error is SdkErrorCode.MALFORMED_AUTH


def test_hash_file_is_accepted_in_canonical_and_unpadded_hex() -> None:
    digest = bytes([0x0A, 0x00, 0xFF] + [1] * 29)
    assert sdk.unpadded_hex(digest).startswith("a0ff1")
    assert sdk.hash_matches(digest.hex(), digest) and sdk.hash_matches(sdk.unpadded_hex(digest).upper(), digest)
    assert not sdk.hash_matches("00" * 32, digest)


def test_the_envelope_has_the_sdks_field_names() -> None:
    assert json.loads(sdk.ok(DocId="x")) == {"status": "OK", "ErrorCode": "0", "ErrorDesc": "", "DocId": "x"}
    assert json.loads(sdk.fail(SdkErrorCode.REPLAY, "again")) == {"status": "FAIL", "ErrorCode": "105", "ErrorDesc": "again"}


# --- multipart --------------------------------------------------------------------------------

BODY = (
    b"preamble\r\n--XyZ\r\n"
    b'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n--XyZ\r\n'
    b'Content-Disposition: form-data; name="file_doc"; filename="a.edxml"\r\nContent-Type: application/xml\r\n\r\n'
    b"<edXML>\r\n-XyZ is not a boundary, nor without CRLF before it: \n--XyZ</edXML>\r\n--XyZ--\r\nepilogue"
)


def parts(events: list[object]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    name = ""
    for ev in events:
        if isinstance(ev, PartStarted):
            name = ev.name
            out[name] = b""
        elif isinstance(ev, PartData):
            out[name] += ev.data
        else:
            assert isinstance(ev, PartEnded)
    return out


def test_multipart_read_whole_and_one_byte_at_a_time_gives_the_same_parts() -> None:
    assert boundary_of('multipart/form-data; boundary="XyZ"') == boundary_of("multipart/form-data; boundary=XyZ") == b"XyZ"
    whole = MultipartReader(b"XyZ")
    events: list[object] = list(whole.feed(BODY))
    whole.close()
    slow = MultipartReader(b"XyZ")
    trickled: list[object] = [ev for i in range(len(BODY)) for ev in slow.feed(BODY[i : i + 1])]
    slow.close()
    expected = {"note": b"hello", "file_doc": b"<edXML>\r\n-XyZ is not a boundary, nor without CRLF before it: \n--XyZ</edXML>"}
    assert parts(events) == parts(trickled) == expected


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=97))
def test_any_content_survives_any_split(content: bytes, step: int) -> None:
    boundary = b"----b0undary7Tq"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file_doc"\r\n\r\n' + content + b"\r\n--" + boundary + b"--"
    )
    if b"\r\n--" + boundary in content:
        return
    r = MultipartReader(boundary)
    events = [ev for i in range(0, len(body), step) for ev in r.feed(body[i : i + step])]
    r.close()
    assert parts(events) == {"file_doc": content}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nunfinished', SdkErrorCode.MALFORMED),
        (b"--XyZ\r\nNo colon here\r\n\r\nx\r\n--XyZ--", SdkErrorCode.MALFORMED),
        (b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--", SdkErrorCode.MALFORMED),
        (b"--XyZ\r\nX-Pad: " + b"a" * 9000, SdkErrorCode.TOO_LARGE),
        (b"x" * 5000, SdkErrorCode.MALFORMED),
        (b"--XyZ\r\n" + b'Content-Disposition: form-data; name="a"\r\n\r\n\r\n--XyZ\r\n' * 20, SdkErrorCode.MALFORMED),
    ],
)
def test_a_broken_or_oversized_multipart_body_is_refused(body: bytes, error: SdkErrorCode) -> None:
    r = MultipartReader(b"XyZ")
    with pytest.raises(SdkRequestError) as e:
        r.feed(body)
        r.close()
    assert e.value.error is error
