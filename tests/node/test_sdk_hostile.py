"""Attacks on the SDK listener of a real `truc run` (node/http.py): each is answered or cut off, counted, and never stalls others.

The node runs with tight limits (1 s for headers and body pieces, 4
connections) so each attack resolves in about a second.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from simnet.processes import free_port
from simnet.sdk_client import SdkClient
from tests.procs import Daemon, invoke, provision, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]
G22 = "000.00.00.G22"
LIMITS = {
    "header_timeout_s = 10": "header_timeout_s = 1",
    "read_timeout_s = 30": "read_timeout_s = 1",
    "max_connections = 64 ": "max_connections = 4 ",
}


class Target:
    def __init__(self, d: Daemon, port: int, secret: str) -> None:
        self.d = d
        self.port = port
        self.client = SdkClient(f"http://127.0.0.1:{port}/XrdAdapter/adapter", "iofice", secret, timeout=10)

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def exchange(self, data: bytes, *, settle: float = 0.0) -> tuple[int, dict[str, Any]]:
        """Send raw bytes and read the whole answer: (HTTP status, its JSON body)."""
        with self.connect() as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            time.sleep(settle)
            return answer(s)

    def honest_call_is_quick(self) -> None:
        start = time.monotonic()
        assert self.client.call("countReceiveEdoc", "GET")["status"] == "OK"
        assert time.monotonic() - start < 0.5

    def metrics(self) -> str:
        line = next(ln for ln in self.d.log(tail=1_000_000).splitlines() if "metrics.listening" in ln)
        address = line.split('"address": "')[1].split('"')[0]
        return urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()


def answer(s: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data[:200]
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    homes = provision(
        tmp_path_factory.mktemp("hostile"), {"g22": [G22]}, tune={'metrics_listen = ""': 'metrics_listen = "127.0.0.1:0"'}
    )
    port = free_port()
    invoke("sdk", "enable", "--home", str(homes["g22"]), "--listen", f"127.0.0.1:{port}")
    cfg = homes["g22"] / "config.toml"
    text = cfg.read_text()
    for old, new in LIMITS.items():
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    out = invoke("sdk", "add-system", "--home", str(homes["g22"]), "--system-id", "iofice", "--agency", G22, "--json")
    with running(homes) as daemons:
        yield Target(daemons["g22"], port, json.loads(out)["secret"])


def test_headers_that_never_finish_are_cut_off_and_do_not_stall_others(target: Target) -> None:
    slow = [target.connect() for _ in range(3)]
    for s in slow:
        s.sendall(b"POST /XrdAdapter/adapter/getEdoc HTTP/1.1\r\nHost: x\r\nXroadVnpt-systemid: iofice\r\n")
    target.honest_call_is_quick()
    start = time.monotonic()
    for s in slow:
        status, body = answer(s)
        assert (status, body["status"], body["ErrorCode"]) == (408, "FAIL", "113")
        s.close()
    assert time.monotonic() - start < 5
    assert 'truc_http_refused{listener="sdk",reason="slow_headers"}' in target.metrics()


def test_a_body_that_stops_coming_is_cut_off(target: Target) -> None:
    headers = target.client.signed(
        {"from": G22, "servicetype": "eDoc", "messagetype": "edoc"}, content_type="multipart/form-data; boundary=B"
    )
    head = "POST /XrdAdapter/adapter/sendEdoc HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with target.connect() as s:
        s.sendall(head.encode() + b'--B\r\nContent-Disposition: form-data; name="file_doc"\r\n\r\n<edXML')
        target.honest_call_is_quick()
        status, body = answer(s)
    assert (status, body["ErrorCode"]) == (408, "113")
    assert target.d.call("documents.list", role="sent") == []


def test_oversized_headers_and_bodies_are_refused_before_they_are_read(target: Target) -> None:
    big = b"GET /XrdAdapter/adapter/countReceiveEdoc HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 40_000 + b"\r\n\r\n"
    status, body = target.exchange(big)
    assert (status, body["ErrorCode"]) == (431, "108")
    headers = target.client.signed({"docId": "00" * 32})
    head = "POST /XrdAdapter/adapter/getEdoc HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    status, body = target.exchange(head.encode() + b"x" * 1000)
    assert (status, body["ErrorCode"]) == (413, "108")
    sends = target.client.signed(
        {"from": G22, "servicetype": "eDoc", "messagetype": "edoc"}, content_type="multipart/form-data; boundary=B"
    )
    head = "POST /XrdAdapter/adapter/sendEdoc HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in sends.items()) + "\r\n"
    status, body = target.exchange(head.encode())
    assert (status, body["ErrorCode"]) == (413, "108")


def test_not_http_is_a_malformed_request(target: Target) -> None:
    status, body = target.exchange(b"HELLO THERE\r\n\r\n")
    assert (status, body["status"], body["ErrorCode"]) == (400, "FAIL", "109")


def test_more_connections_than_allowed_are_answered_busy_at_once(target: Target) -> None:
    held = [target.connect() for _ in range(4)]
    time.sleep(0.2)
    start = time.monotonic()
    with target.connect() as extra:
        status, body = answer(extra)
    assert (status, body["ErrorCode"]) == (503, "114") and time.monotonic() - start < 0.5
    for s in held:
        s.close()
    time.sleep(0.2)
    target.honest_call_is_quick()
    assert 'truc_http_refused{listener="sdk",reason="connections"}' in target.metrics()
