"""The integrator socket as an attacker or a careless integrator uses it (issue 10, items 1, 2, 4, 9).

Real `truc run` processes, real Unix sockets. Each test names the attack it
replays; on the code before the fix, each of them either leaked a secret key,
froze the node, grew its memory without bound or let any account act for any
agency.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.client import Client
from protocol import cbor, ipc
from protocol.errors import AccessDeniedError, BusyError, FileError, HashMismatchError, IpcTimeoutError, SchemaError
from protocol.framing import FrameDecoder, frame
from tests.procs import Daemon, ipc_exchange, provision, running, wait_for

pytestmark = pytest.mark.slow
G22, SUB, H01 = "000.00.00.G22", "000.00.01.G22", "000.00.00.H01"
LIMITS = {
    "read_paths = []": "read_paths = [{out!r}]",
    "max_connections = 64": "max_connections = 12",
    "idle_timeout_s = 300": "idle_timeout_s = 3",
    "frame_timeout_s = 30": "frame_timeout_s = 3",
    "send_timeout_s = 60": "send_timeout_s = 3",
}


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outgoing")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, out_dir: Path) -> Iterator[dict[str, Daemon]]:
    tune = {k: v.format(out=str(out_dir)) for k, v in LIMITS.items()}
    homes = provision(tmp_path_factory.mktemp("hostile"), {"g22": [G22, SUB], "h01": [H01]}, tune=tune)
    with running(homes) as daemons:
        yield daemons


def quick_info(node: Daemon, limit_s: float = 2.0) -> float:
    """node.info on a fresh connection; returns how long it took (fails beyond ``limit_s``).

    ``busy`` means "try again shortly" (docs/ipc.md §3), so a well-behaved client retries it:
    while attackers hold every connection slot for a moment, the time to an answer is what counts.
    """
    t0 = time.monotonic()
    while True:
        try:
            with Client(node.home / "truc.sock", timeout=limit_s) as c:
                assert c.call("node.info")["codes"] == [G22, SUB]
            return time.monotonic() - t0
        except BusyError:
            if time.monotonic() - t0 > limit_s:
                raise
            time.sleep(0.02)


def submit_path(node: Daemon, path: str | Path) -> Any:
    with node.client(timeout=20) as c:
        return c.call("submit", **{"from": G22, "to": [H01], "subject": "x", "files": [{"name": "a", "path": str(path)}]})


def doc_count(node: Daemon) -> int:
    return len(node.call("documents.list", role="sent"))  # type: ignore[arg-type]


# --- item 1: the node sends any file it can read -------------------------------------------


def test_the_node_never_reads_its_own_keys_whatever_the_path(nodes: dict[str, Daemon], out_dir: Path) -> None:
    g22 = nodes["g22"]
    key = g22.home / "node.key"
    before = doc_count(g22)
    (out_dir / "link").symlink_to(key)
    os.link(key, out_dir / "hard")  # root may hard-link a file it cannot otherwise expose
    (out_dir / "sub").mkdir()
    (out_dir / "sub" / "up").symlink_to(g22.home)
    attempts = {
        str(key): "not below a directory this node reads from",
        str(g22.home / "keys" / f"{G22}.key"): "not below a directory this node reads from",
        "/etc/shadow": "not below a directory this node reads from",
        "/proc/self/environ": "not below a directory this node reads from",
        str(out_dir / "link"): "symbolic link",
        str(out_dir / "hard"): "one of the node's key files",
        str(out_dir / "sub" / "up" / "node.key"): "symbolic link",
        f"{out_dir}/../{out_dir.name}/link": "not allowed",
        "relative/cv.pdf": "absolute path",
    }
    for path, why in attempts.items():
        with pytest.raises(FileError, match=why):
            submit_path(g22, path)
    assert doc_count(g22) == before, "a refused attachment must leave no document behind"
    assert list((g22.home / "spool").iterdir()) == []


def test_a_node_without_read_paths_reads_no_path(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    with running(homes) as d:
        with pytest.raises(FileError, match="does not read files by path"), d["g22"].client() as c:
            c.call(
                "submit",
                **{
                    "from": G22,
                    "to": [H01],
                    "subject": "x",
                    "files": [{"name": "k", "path": str(homes["g22"] / "node.key")}],
                },
            )
        assert d["g22"].call("documents.list") == []


def test_an_allowed_file_and_a_streamed_file_arrive_byte_for_byte(
    nodes: dict[str, Daemon], out_dir: Path, tmp_path: Path
) -> None:
    g22, h01 = nodes["g22"], nodes["h01"]
    allowed = out_dir / "cong-van.pdf"
    allowed.write_bytes(os.urandom(300_000))
    allowed.chmod(0o644)
    streamed = tmp_path / "phu-luc.bin"
    streamed.write_bytes(os.urandom(3 * (1 << 20) + 17))
    with g22.client() as c:
        by_path = c.call(
            "submit", **{"from": G22, "to": [H01], "subject": "đường dẫn", "files": [{"name": "cv.pdf", "path": str(allowed)}]}
        )["id"]
    with g22.client() as c:
        by_stream = c.submit([streamed], **{"from": G22, "to": [H01], "subject": "luồng"})["id"]
    for doc, src in ((by_path, allowed), (by_stream, streamed)):
        wait_for(lambda doc=doc: any(i["id"] == doc for i in h01.call("inbox.list")["items"]), 30, "delivery")  # type: ignore[index]
        with h01.client() as c:
            got = c.get_document(doc, tmp_path / doc[:8])
        assert Path(got["files"][0]["path"]).read_bytes() == src.read_bytes()
    assert list((g22.home / "spool").iterdir()) == []


def test_a_streamed_file_that_does_not_match_its_declared_hash_is_refused(nodes: dict[str, Daemon]) -> None:
    g22 = nodes["g22"]
    before = doc_count(g22)
    data = os.urandom(2 << 20)
    params = {"from": G22, "to": [H01], "subject": "x", "files": [{"name": "a", "size": len(data), "sha256": "00" * 32}]}
    body = frame(ipc.Request(5, "submit", params).encode(), max_bytes=ipc.MAX_FRAME_BYTES)
    for i in range(0, len(data), ipc.CHUNK_BYTES):
        body += frame(ipc.Upload(5, 0, data[i : i + ipc.CHUNK_BYTES]).encode(), max_bytes=ipc.MAX_FRAME_BYTES)
    got = ipc_exchange(g22.home / "truc.sock", body)
    assert [a["error"]["code"] for a in got if a["id"] == 5] == [HashMismatchError.code], got
    assert doc_count(g22) == before
    assert list((g22.home / "spool").iterdir()) == []


# --- item 2: a FIFO, a device, a stalled upload ----------------------------------------------


def test_a_fifo_or_a_device_is_refused_at_once_and_nobody_waits(nodes: dict[str, Daemon], out_dir: Path) -> None:
    g22 = nodes["g22"]
    fifo = out_dir / "fifo"
    os.mkfifo(fifo)
    targets = [fifo]
    if os.geteuid() == 0:
        os.mknod(out_dir / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))  # the same device as /dev/zero
        targets.append(out_dir / "zero")
    for target in targets:
        t0 = time.monotonic()
        with pytest.raises(FileError, match="not a regular file"):
            submit_path(g22, target)
        assert time.monotonic() - t0 < 2
    # Forty of them at once still leave the node answering everyone else.
    errors: list[str] = []

    def attack() -> None:
        try:
            submit_path(g22, targets[-1])
        except (FileError, BusyError):  # refused, or turned away at the connection limit
            return
        errors.append("accepted")

    threads = [threading.Thread(target=attack) for _ in range(40)]
    for t in threads:
        t.start()
    assert quick_info(g22) < 2
    for t in threads:
        t.join(10)
    assert errors == []


def test_an_upload_that_stalls_times_out_and_frees_its_spool(nodes: dict[str, Daemon]) -> None:
    g22 = nodes["g22"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(15)
        s.connect(str(g22.home / "truc.sock"))
        params = {"from": G22, "to": [H01], "subject": "x", "files": [{"name": "a", "size": 10 << 20}]}
        s.sendall(frame(ipc.Request(3, "submit", params).encode(), max_bytes=ipc.MAX_FRAME_BYTES))
        s.sendall(frame(ipc.Upload(3, 0, b"x" * 1000).encode(), max_bytes=ipc.MAX_FRAME_BYTES))
        assert quick_info(g22) < 2  # the stalled upload holds nobody else up
        dec = FrameDecoder(max_bytes=ipc.MAX_ANSWER_BYTES)
        while (payload := dec.next_frame()) is None:
            dec.feed(s.recv(65536))
        answer = ipc.decode_message(payload)
    assert answer["id"] == 3 and answer["error"]["code"] == IpcTimeoutError.code, answer
    wait_for(lambda: list((g22.home / "spool").iterdir()) == [], 5, "spool emptied")


# --- item 4: frames and connections ---------------------------------------------------------


def test_an_oversize_frame_is_refused_before_it_is_read(nodes: dict[str, Daemon]) -> None:
    sock = nodes["g22"].home / "truc.sock"
    got = ipc_exchange(sock, struct.pack(">I", 60 << 20) + b"x" * (1 << 20))
    assert got[0]["id"] == 0 and got[0]["error"]["code"] == "too_large"


def test_many_half_sent_frames_do_not_grow_the_node(nodes: dict[str, Daemon]) -> None:
    g22 = nodes["g22"]
    base = g22.anon_mib()
    socks = []
    try:
        for _ in range(10):  # 10 connections x 4 MiB announced, 3.9 MiB sent: 39 MiB the node must not all hold
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect(str(g22.home / "truc.sock"))
            data = struct.pack(">I", ipc.MAX_FRAME_BYTES) + b"\xa0" * (ipc.MAX_FRAME_BYTES - 100_000)
            sent = 0
            deadline = time.monotonic() + 2
            while sent < len(data) and time.monotonic() < deadline:
                try:
                    sent += s.send(data[sent:])
                except BlockingIOError:
                    time.sleep(0.01)
            socks.append(s)
        time.sleep(0.5)
        grown = g22.anon_mib() - base
        assert quick_info(g22) < 2
        assert grown < 80, f"heap grew {grown:.0f} MiB"
        # The frame timeout (3 s) closes every one of them.
        for s in socks:
            s.setblocking(True)
            s.settimeout(10)
            dec = FrameDecoder(max_bytes=ipc.MAX_ANSWER_BYTES)
            while chunk := s.recv(65536):
                dec.feed(chunk)
            msg = ipc.decode_message(dec.next_frame() or b"")
            assert msg["error"]["code"] == "timeout"
    finally:
        for s in socks:
            s.close()


def test_connections_are_capped_and_idle_ones_are_closed(nodes: dict[str, Daemon]) -> None:
    g22 = nodes["g22"]
    path = str(g22.home / "truc.sock")
    held = []
    try:
        for _ in range(12):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            held.append(s)
        time.sleep(0.3)
        refused = ipc_exchange(g22.home / "truc.sock", b"", half_close=False, timeout=5)
        assert refused and refused[0]["error"]["code"] == "busy"
        for s in held:  # idle_timeout_s = 3: the node closes them
            s.settimeout(10)
            assert s.recv(10) == b""
    finally:
        for s in held:
            s.close()
    assert quick_info(g22) < 2


def test_a_client_that_does_not_read_its_answers_is_dropped(nodes: dict[str, Daemon]) -> None:
    g22 = nodes["g22"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(g22.home / "truc.sock"))
        s.settimeout(20)
        req = b"".join(frame(ipc.Request(i + 1, "directory.show", {}).encode(), max_bytes=1 << 20) for i in range(400))
        s.sendall(req)
        assert quick_info(g22) < 2
        wait_for(lambda: "ipc.client_not_reading" in g22.log(20_000), 15, "the node drops the client")


def test_a_frame_cut_short_by_a_half_close_is_answered(nodes: dict[str, Daemon]) -> None:
    whole = frame(ipc.Request(9, "node.info", {}).encode(), max_bytes=1 << 20)
    first = frame(ipc.Request(8, "node.info", {}).encode(), max_bytes=1 << 20)
    got = ipc_exchange(nodes["g22"].home / "truc.sock", first + whole[:7])
    by_id = {a["id"]: a for a in got}
    assert by_id[8]["ok"] is True, "a request before the bad frame is still answered"
    assert by_id[0]["error"]["code"] == "malformed" and "middle of a frame" in by_id[0]["error"]["message"]


# --- item 9: who may use the socket (SO_PEERCRED) ------------------------------------------


def _as_nobody(sock: Path, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Run IPC calls from a forked child that switched to the account ``nobody``; returns results or error codes."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = []
            for method, params in calls:
                try:
                    with Client(sock, timeout=10) as c:
                        out.append(c.call(method, **params))
                except Exception as exc:
                    out.append({"error": getattr(exc, "code", type(exc).__name__)})
            os.write(w, cbor.encode(out))
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 20):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return list(cbor.decode_lenient(data, max_bytes=1 << 24))


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another account needs root (to switch to 'nobody')")
def test_an_account_acts_only_for_the_agencies_config_grants() -> None:
    public = Path(tempfile.mkdtemp(prefix="truc-acl-", dir="/tmp"))
    try:
        public.chmod(0o711)  # 'nobody' may reach the node's socket through it, nothing else
        homes = provision(public, {"g22": [G22, SUB], "h01": [H01]})
        homes["g22"].chmod(0o711)
        cfg = homes["g22"] / "config.toml"
        cfg.write_text(cfg.read_text() + '\n[[ipc.clients]]\nuser = "nobody"\ncodes = ["000.00.01.G22"]\n')
        sock = homes["g22"] / "truc.sock"
        with running(homes):
            sock.chmod(0o666)  # let 'nobody' open the socket at all: the node's own check is what is tested
            results = _as_nobody(
                sock,
                [
                    ("node.info", {}),
                    ("submit", {"from": G22, "to": [H01], "subject": "mạo danh"}),
                    ("submit", {"from": SUB, "to": [H01], "subject": "hợp lệ"}),
                    ("peers.list", {}),
                    ("inbox.list", {"code": G22}),
                    ("inbox.list", {}),
                ],
            )
            assert results[0]["codes"] == [G22, SUB]
            assert results[1] == {"error": AccessDeniedError.code}
            assert len(results[2]["id"]) == 64
            assert results[3] == {"error": AccessDeniedError.code}
            assert results[4] == {"error": AccessDeniedError.code}
            assert results[5]["items"] == []
            with Client(sock) as c:  # the node's own user still does everything
                assert c.call("peers.list")
        # An account no rule names is turned away at connect.
        cfg.write_text(cfg.read_text().replace('user = "nobody"', 'user = "daemon"'))
        with running({"g22": homes["g22"]}):
            sock.chmod(0o666)
            assert _as_nobody(sock, [("node.info", {})]) == [{"error": AccessDeniedError.code}]
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_unknown_accounts_in_the_rules_stop_the_node_at_start(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]})
    cfg = homes["g22"] / "config.toml"
    cfg.write_text(cfg.read_text() + '\n[[ipc.clients]]\nuser = "no-such-user-xyz"\ncodes = ["G22"]\n')
    with pytest.raises(RuntimeError, match="no user named 'no-such-user-xyz'"), running(homes):
        pass


def test_a_bad_upload_sequence_closes_only_that_connection(nodes: dict[str, Daemon]) -> None:
    g22 = nodes["g22"]
    stray = frame(ipc.Upload(77, 0, b"abc").encode(), max_bytes=1 << 20)
    got = ipc_exchange(g22.home / "truc.sock", stray)
    assert (
        got[0]["id"] == 0 and got[0]["error"]["code"] == "malformed" and "no streamed file pending" in got[0]["error"]["message"]
    )
    params = {"from": G22, "to": [H01], "subject": "x", "files": [{"name": "a", "size": 3}]}
    too_long = frame(ipc.Request(4, "submit", params).encode(), max_bytes=1 << 20) + frame(
        ipc.Upload(4, 0, b"abcd").encode(), max_bytes=1 << 20
    )
    got = ipc_exchange(g22.home / "truc.sock", too_long)
    assert any(a["id"] == 0 and "longer than its declared size" in a["error"]["message"] for a in got), got
    with pytest.raises(SchemaError, match="exactly one of data"), g22.client() as c:
        c.call("submit", **{"from": G22, "to": [H01], "subject": "x", "files": [{"name": "a", "size": 3, "data": b"abc"}]})
    assert quick_info(g22) < 2
