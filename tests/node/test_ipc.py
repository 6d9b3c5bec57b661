"""The IPC socket of a real daemon: typed errors, bad frames, fuzzing; the daemon never falls over."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.client import AsyncClient, Client
from protocol import cbor, ipc
from protocol.errors import (
    FileError,
    IllegalTransitionError,
    NodeNotRunningError,
    NotFoundError,
    NotHostedError,
    SchemaError,
    TrucError,
    UnknownAgencyError,
)
from protocol.framing import frame
from tests.procs import Daemon, ipc_exchange, provision, running, wait_for

pytestmark = pytest.mark.slow
G22, H01 = "000.00.00.G22", "000.00.00.H01"
KNOWN_CODES = {
    "bad_schema", "malformed", "too_large", "bad_agency_code", "not_found", "not_hosted", "unknown_agency",
    "illegal_transition", "not_authorized", "file", "directory_expired", "bad_frame", "hash_mismatch",
    "bad_directory", "bad_signature", "cannot_decrypt", "wrong_network", "access_denied", "busy", "timeout",
    "unsupported_version",
}  # fmt: skip


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    homes = provision(tmp_path_factory.mktemp("ipc"), {"g22": [G22], "h01": [H01]})
    with running(homes) as daemons:
        yield daemons


def test_typed_errors_reach_the_client(nodes: dict[str, Daemon], tmp_path: Path) -> None:
    g = nodes["g22"]
    with g.client() as c:
        with pytest.raises(UnknownAgencyError):
            c.call("submit", **{"from": G22, "to": ["000.00.00.H05"], "subject": "x"})
        with pytest.raises(NotHostedError, match=r"this node hosts 000\.00\.00\.G22"):
            c.call("submit", **{"from": H01, "to": [G22], "subject": "x"})
        with pytest.raises(SchemaError, match="submit: subject: is required"):
            c.call("submit", **{"from": G22, "to": [H01]})
        with pytest.raises(SchemaError, match="unknown method"):
            c.call("no.such.method")
        with pytest.raises(FileError, match="does not read files by path"):
            c.call(
                "submit",
                **{"from": G22, "to": [H01], "subject": "x", "files": [{"name": "a", "path": str(tmp_path / "missing")}]},
            )
        with pytest.raises(NotFoundError):
            c.call("document.track", id="00" * 32)
        doc = c.call("submit", **{"from": G22, "to": [H01], "subject": "Thử", "idempotency_key": "k-1"})["id"]
        assert c.call("submit", **{"from": G22, "to": [H01], "subject": "other", "idempotency_key": "k-1"})["id"] == doc
    wait_for(lambda: nodes["h01"].call("inbox.list")["items"], 30, "delivery")  # type: ignore[index]
    with nodes["h01"].client() as c:
        with pytest.raises(IllegalTransitionError, match="allowed now"):
            c.call("status.send", id=doc, code="06")
        assert c.call("status.send", id=doc, code="03", note="Đã vào sổ")["code"] == "03"
        assert c.call("inbox.ack", id=doc) == {"acked": True}
        assert c.call("inbox.ack", id=doc) == {"acked": False}
        assert c.call("inbox.list", unacked=True)["items"] == []


def test_a_bad_frame_closes_only_that_connection(nodes: dict[str, Daemon]) -> None:
    sock = nodes["g22"].home / "truc.sock"
    with Client(sock) as other:
        answers = ipc_exchange(sock, frame(b"\xff\x00 not cbor", max_bytes=100))
        assert answers and answers[0]["ok"] is False and answers[0]["error"]["code"] == "malformed"
        answers = ipc_exchange(sock, struct.pack(">I", ipc.MAX_FRAME_BYTES + 1) + b"x")
        assert answers[0]["error"]["code"] == "too_large"
        assert other.call("node.info")["codes"] == [G22]  # the other connection is unaffected


def test_pipelined_requests_and_events_over_the_trio_client(nodes: dict[str, Daemon]) -> None:
    async def main() -> None:
        with trio.fail_after(30):
            async with AsyncClient(nodes["h01"].home / "truc.sock") as h01, AsyncClient(nodes["g22"].home / "truc.sock") as g22:
                seen: list[dict[str, Any]] = []

                async def listen(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                    agen = h01.events()
                    task_status.started()
                    async for ev in agen:
                        seen.append(ev)
                        if ev["event"] == "document.received":
                            return

                async with trio.open_nursery() as n:
                    await n.start(listen)
                    await trio.sleep(0.2)
                    infos: list[Any] = []

                    async def info() -> None:
                        infos.append(await g22.call("node.info"))

                    async with trio.open_nursery() as burst:  # ten requests in flight on one connection
                        for _ in range(10):
                            burst.start_soon(info)
                    assert len(infos) == 10 and all(i["codes"] == [G22] for i in infos)
                    await g22.call("submit", **{"from": G22, "to": [H01], "subject": "Sự kiện"})
                assert any(e["event"] == "document.received" and e["data"]["subject"] == "Sự kiện" for e in seen)

    trio.run(main)


def test_clients_that_vanish_mid_conversation_do_not_stop_the_node(nodes: dict[str, Daemon]) -> None:
    sock_path = nodes["g22"].home / "truc.sock"
    for request in (ipc.Request(7, "events.subscribe", {}), ipc.Request(8, "node.info", {})):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sock_path))
        s.sendall(frame(request.encode(), max_bytes=1 << 20))
        time.sleep(0.2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        s.close()
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(str(sock_path))
    half.sendall(frame(ipc.Request(9, "node.info", {}).encode(), max_bytes=1 << 20)[:7])  # cut mid-frame
    half.close()
    time.sleep(0.3)
    assert nodes["g22"].proc is not None and nodes["g22"].proc.poll() is None, nodes["g22"].log()
    assert nodes["g22"].call("node.info")["codes"] == [G22]  # type: ignore[index]
    assert "ipc.connection_failed" not in nodes["g22"].log()


def test_a_stopped_node_is_a_typed_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunningError, match="nothing answers at"):
        Client(tmp_path / "truc.sock").call("node.info")


methods = st.sampled_from([*ipc.METHODS, "x", ""])
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=30) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
params = st.dictionaries(
    st.sampled_from(
        ["from", "to", "subject", "id", "code", "files", "limit", "after", "as", "note", "file", "since", "role", "x"]
    ),
    values,
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=methods, p=params)
def test_fuzzed_requests_get_an_answer_or_a_typed_error(nodes: dict[str, Daemon], method: str, p: dict[str, Any]) -> None:
    if method == "events.subscribe" and not p:
        return  # a valid subscription never ends: covered above
    with nodes["g22"].client() as c:
        try:
            c.call(method, **p)
        except TrucError as exc:
            assert exc.code in KNOWN_CODES, (method, p, exc.code, exc.message)
        assert c.call("node.info")["codes"] == [G22]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=200) | st.builds(cbor.encode, values))
def test_fuzzed_frames_never_take_the_node_down(nodes: dict[str, Daemon], payload: bytes) -> None:
    sock = nodes["g22"].home / "truc.sock"
    answers = ipc_exchange(sock, frame(payload, max_bytes=1 << 20), timeout=5)
    for a in answers:
        if a.get("ok") is False:
            assert a["error"]["code"] in KNOWN_CODES
    assert nodes["g22"].call("node.info")["codes"] == [G22]  # type: ignore[index]
