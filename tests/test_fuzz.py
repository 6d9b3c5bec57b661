"""Property-based fuzzing of every decoder that takes bytes from outside the node.

Each decoder is fed arbitrary bytes, mutations of a valid sample (the golden
vectors where there are some), and well-formed CBOR of arbitrary shape; it
may only raise the project's typed errors for remote input (``RemoteError``;
``ConfigError`` for the operator's files). Anything else — a ``KeyError``, an
``IndexError``, a hang — is a bug a peer or a client could trigger.

The CI run uses a fixed budget per decoder; run longer on demand:

    TRUC_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py -q
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity.directory import JoinRequest, decode_chain
from protocol import ipc
from protocol import messages as m
from protocol.agency import parse_agency_list
from protocol.config import parse_config
from protocol.document import DocumentMeta, PlaintextReader, StatusNote
from protocol.envelope import Envelope
from protocol.errors import ConfigError, RemoteError, TrucError
from protocol.framing import FrameDecoder
from protocol.ids import Digest
from tests.test_vectors import pinned

EXAMPLES = int(os.environ.get("TRUC_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ipc_request(data: bytes) -> None:
    msg = ipc.decode_client_frame(data)
    if isinstance(msg, ipc.Request):
        ipc.declared_uploads(msg.method, msg.params)
        if msg.method == "submit":
            ipc.parse_submit(msg.params)


def _frames(data: bytes) -> None:
    dec = FrameDecoder(max_bytes=1 << 16)
    for i in range(0, len(data), 7):
        dec.feed(data[i : i + 7])
        while dec.next_frame() is not None:
            pass
    dec.close()


def _plaintext(data: bytes) -> None:
    reader = PlaintextReader()
    for i in range(0, len(data), 5):
        for ev in reader.feed(data[i : i + 5]):
            if hasattr(ev, "manifest"):
                reader.set_file_sizes([f.size for f in DocumentMeta.decode(ev.manifest).files])
    list(reader.close())


def _batch() -> bytes:
    return m.EnvelopeBatch((pinned("document-inline"), pinned("status-01"))).encode()


# name -> (decoder, a valid sample to mutate)
DECODERS: dict[str, tuple[Callable[[bytes], Any], Callable[[], bytes]]] = {
    "ipc client frame": (_ipc_request, lambda: pinned("ipc-submit-request")[4:]),
    "ipc answer": (ipc.decode_message, lambda: pinned("ipc-submit-response")[4:]),
    "frames": (_frames, lambda: pinned("frame")),
    "envelope": (Envelope.decode, lambda: pinned("document-inline")),
    "status envelope": (Envelope.decode, lambda: pinned("status-01")),
    "push / gossip batch": (m.EnvelopeBatch.decode, _batch),
    "push response": (m.PushResponse.decode, lambda: m.PushResponse((m.PushResult(Digest(bytes(32)), "ok"),)).encode()),
    "block request": (m.BlockRequest.decode, lambda: m.BlockRequest((Digest(bytes(32)),)).encode()),
    "block response": (m.BlockResponse.decode, lambda: m.BlockResponse((b"x" * 40, None)).encode()),
    "sync request": (m.SyncRequest.decode, lambda: pinned("sync-heads-request")),
    "heads response": (m.HeadsResponse.decode, lambda: pinned("sync-heads-response")),
    "log response": (m.LogResponse.decode, lambda: m.LogResponse(bytes(16), ((7, Digest(bytes(32))),), 7).encode()),
    "envelopes response": (m.EnvelopesResponse.decode, lambda: m.EnvelopesResponse((pinned("status-01"), None)).encode()),
    "peer error": (lambda d: m.peek_error(d), lambda: m.ErrorResponse("bad_schema", "x").encode()),
    "directory file": (decode_chain, lambda: pinned("directory-chain")),
    "join request": (JoinRequest.decode, lambda: pinned("join-request")),
    "manifest": (DocumentMeta.decode, lambda: DocumentMeta(subject="Về việc").encode()),
    "status note": (StatusNote.decode, lambda: StatusNote("Đã vào sổ").encode()),
    "plaintext": (_plaintext, lambda: (lambda b: len(b).to_bytes(4, "big") + b)(DocumentMeta(subject="x").encode())),
}

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=16,
)


def _expect_typed(decode: Callable[[bytes], Any], data: bytes) -> None:
    try:
        decode(data)
    except RemoteError:
        pass


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes(name: str, data: bytes) -> None:
    _expect_typed(DECODERS[name][0], data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(st.data())
def test_mutated_valid_samples(name: str, data: st.DataObject) -> None:
    decode, sample = DECODERS[name]
    raw = bytearray(sample())
    decode(bytes(raw))  # the sample itself is valid
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif raw:
            del raw[pos : pos + data.draw(st.integers(1, 8))]
    _expect_typed(decode, bytes(raw[: data.draw(st.integers(0, len(raw)))]))


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(value=values)
def test_wellformed_cbor_of_any_shape(name: str, value: Any) -> None:
    _expect_typed(DECODERS[name][0], cbor2.dumps(value))  # not our encoder: it refuses some of these shapes


@FUZZ
@given(st.dictionaries(st.sampled_from(["v", "id", "method", "params", "file", "data", "x"]), values, max_size=5))
def test_ipc_frames_of_almost_the_right_shape(frame: dict[str, Any]) -> None:
    _expect_typed(_ipc_request, cbor2.dumps(frame))


@FUZZ
@given(st.text(max_size=400))
def test_operator_files_raise_only_config_errors(text: str) -> None:
    for parse in (lambda t: parse_config(t, "config.toml"), parse_agency_list):
        try:
            parse(text)
        except (ConfigError, RemoteError):
            pass
        except TrucError as exc:  # pragma: no cover - a wrong type is the failure this test looks for
            raise AssertionError(f"{type(exc).__name__} from an operator file") from exc
