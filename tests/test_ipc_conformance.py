"""docs/ipc.md and the node agree: a conformance suite driven by the document itself.

The tables of docs/ipc.md are parsed here — the error codes of §3, and for
each method of §4 its parameter table and its result shape — and every row
becomes a request sent to real `truc run` processes:

* every documented method answers, with exactly the documented result fields;
* every parameter rule is checked: a required parameter left out, a value of
  the wrong type, text over its length, an integer out of its range, a code
  that is not a code, and a parameter the table does not list;
* every documented error code is produced by a request that should produce it.

Adding a method, a parameter, a result field or an error code to the node
without the document (or the reverse) fails here.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.client import Client
from protocol import cbor, ipc
from protocol.edxml import EdocFields, FileSpec, ZipMode, build_edoc, write_bytes
from protocol.errors import TrucError, error_class
from protocol.framing import frame
from tests.procs import Daemon, invoke, ipc_exchange, provision, running, wait_for
from tests.vectors.edxml import generate as gen

pytestmark = pytest.mark.slow
DOC = (Path(__file__).resolve().parent.parent / "docs" / "ipc.md").read_text("utf-8")
G22, SUB, H01 = "000.00.00.G22", "000.00.01.G22", "000.00.00.H01"
TUNE = {"frame_timeout_s = 30": "frame_timeout_s = 2", "spool_mb = 1024": "spool_mb = 1"}


# --- reading the document ---------------------------------------------------------------


@dataclass(frozen=True)
class ParamRule:
    name: str
    type: str
    required: bool


def _section(method: str) -> str:
    m = re.search(rf"^### `{re.escape(method)}`.*?$(.*?)(?=^### |^## )", DOC, re.S | re.M)
    assert m, f"docs/ipc.md has no section for {method}"
    return m.group(1)


def documented_methods() -> list[str]:
    part = DOC[DOC.index("## 4. Methods") : DOC.index("## 5.")]
    return re.findall(r"^### `([a-z.]+)`", part, re.M)


def param_rules(method: str) -> list[ParamRule]:
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \| ([^|]*) \|$", _section(method), re.M)
    return [ParamRule(name, typ.strip(), "**required**" in rule) for name, typ, rule in rows]


def result_shape(method: str) -> Any:
    """The documented result as a nested shape: {name: sub-shape or None}, or [shape]."""
    m = re.search(r"Result:?\s*\n\s*```\n(.*?)```", _section(method), re.S)
    assert m, f"docs/ipc.md: {method} has no Result block"
    tokens = re.findall(r'"[a-z_0-9]+"|[{}\[\]:,]', m.group(1))
    pos = 0

    def shape() -> Any:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "[":
            inner = shape()
            assert tokens[pos] == "]"
            pos += 1
            return [inner]
        assert tok == "{", f"{method}: unexpected {tok!r} in the Result block"
        out: dict[str, Any] = {}
        while tokens[pos] != "}":
            name = tokens[pos].strip('"')
            pos += 1
            out[name] = None
            if tokens[pos] == ":":
                pos += 1
                out[name] = shape()
            if tokens[pos] == ",":
                pos += 1
        pos += 1
        return out

    return shape()


def documented_errors() -> list[str]:
    part = DOC[DOC.index("## 3. Errors") : DOC.index("## 4. Methods")]
    return re.findall(r"^\| `([a-z_0-9]+)` \|", part, re.M)


def check_shape(got: Any, shape: Any, where: str) -> None:
    if isinstance(shape, list):
        assert isinstance(got, list), f"{where}: expected a list, got {got!r:.80}"
        for item in got[:3]:
            check_shape(item, shape[0], f"{where}[]")
        return
    assert isinstance(got, dict), f"{where}: expected a map, got {got!r:.80}"
    assert set(got) == set(shape), f"{where}: fields {sorted(got)} but docs/ipc.md says {sorted(shape)}"
    for name, sub in shape.items():
        if sub is not None and got[name] not in (None, [], {}):
            if isinstance(sub, dict) and isinstance(got[name], list):
                continue  # e.g. "to": a list of codes documented by name only
            check_shape(got[name], sub, f"{where}.{name}")


# --- the network under test ---------------------------------------------------------------


@dataclass
class Net:
    g22: Daemon
    h01: Daemon
    doc: str  # G22 -> H01, delivered
    auth: Path
    tmp: Path


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("conformance")
    homes = provision(tmp, {"g22": [G22, SUB], "h01": [H01]}, tune=TUNE)
    with running(homes) as d:
        g22, h01 = d["g22"], d["h01"]
        doc = g22.call("submit", **{"from": G22, "to": [H01], "subject": "Kiểm tra", "files": [{"name": "a.txt", "data": b"a"}]})
        wait_for(lambda: h01.call("inbox.list", code=H01)["items"], 30, "delivery")  # type: ignore[index]
        yield Net(g22, h01, doc["id"], tmp / "auth", tmp)


def call(node: Daemon, method: str, params: dict[str, Any]) -> Any:
    with Client(node.home / "truc.sock", timeout=20) as c:
        return c.call(method, **params)


def error_of(node: Daemon, method: str, params: dict[str, Any]) -> TrucError:
    with pytest.raises(TrucError) as err:
        call(node, method, params)
    return err.value


def valid(net: Net, method: str) -> tuple[Daemon, dict[str, Any]]:
    """A node and parameters with which ``method`` succeeds (each parameter of the table valid)."""
    base: dict[str, tuple[Daemon, dict[str, Any]]] = {
        "submit": (net.g22, {"from": G22, "to": [H01], "subject": "Hợp lệ"}),
        "inbox.list": (net.h01, {"code": H01}),
        "inbox.ack": (net.h01, {"id": net.doc, "code": H01}),
        "document.get": (net.h01, {"id": net.doc, "code": H01}),
        "document.track": (net.g22, {"id": net.doc}),
        "documents.list": (net.g22, {}),
        "status.send": (net.h01, {"id": net.doc, "code": "05", "as": H01, "note": "x"}),
        "events.subscribe": (net.g22, {}),
        "peers.list": (net.g22, {}),
        "queues.list": (net.g22, {}),
        "node.info": (net.g22, {}),
        "stats": (net.g22, {}),
        "directory.lookup": (net.g22, {"code": H01}),
        "directory.show": (net.g22, {}),
        "directory.publish": (net.g22, {"file": (net.g22.home / "directory.cbor").read_bytes()}),
        "edxml.submit": (net.g22, {"package": edxml_package()}),
        "edxml.export": (net.h01, {"id": net.doc, "code": H01, "zip": "raw"}),
        "edxml.statuses": (net.g22, {"id": net.doc, "code": G22, "since": 0, "limit": 10}),
    }
    return base[method]


# --- 1. methods and results ---------------------------------------------------------------


def test_the_documented_methods_are_the_node_methods() -> None:
    assert sorted(documented_methods()) == sorted(ipc.METHODS)


@pytest.mark.parametrize("method", sorted(set(ipc.METHODS) - {"events.subscribe"}))
def test_each_method_answers_with_the_documented_fields(net: Net, method: str) -> None:
    if method == "status.send":  # a thread must be at "processing" for a repeatable 05
        for code in ("03", "04"):
            try:
                call(net.h01, "status.send", {"id": net.doc, "code": code, "as": H01})
            except TrucError as exc:
                assert exc.code == "illegal_transition"
    node, params = valid(net, method)
    check_shape(call(node, method, params), result_shape(method), method)


def test_events_subscribe_answers_then_ends_on_half_close(net: Net) -> None:
    frames = raw(net.g22, frame(ipc.Request(3, "events.subscribe", {}).encode(), max_bytes=1 << 20), settle=0.5)
    answers = [f["result"] for f in frames if f["id"] == 3 and f.get("ok")]
    assert answers == [{"subscribed": True}, {"subscribed": False}]
    check_shape(answers[0], result_shape("events.subscribe"), "events.subscribe")


# --- 2. parameter rules -------------------------------------------------------------------


def bad_values(rule: ParamRule) -> list[tuple[Any, str]]:
    """Values that break ``rule``'s type, with the error code the document promises for each."""
    t = rule.type
    out: list[tuple[Any, str]] = [({"x": 1}, "bad_schema")]  # a map is no parameter's type
    if t == "code":
        out += [("ZZZ", "bad_agency_code"), (5, "bad_schema")]
    elif t == "[code]":
        out += [(G22, "bad_schema"), (["ZZZ"], "bad_agency_code"), ([H01, "000.00.00.H01"], "bad_schema"), ([], "bad_schema")]
    elif t == "id":
        out += [("xyz", "bad_schema"), ("AB" * 32, "bad_schema"), (b"short", "bad_schema")]
    elif m := re.fullmatch(r"text ≤ (\d+)", t):
        out += [("x" * (int(m.group(1)) + 1), "bad_schema"), (5, "bad_schema")]
    elif m := re.fullmatch(r"int (\d+)\.\.(\d+)", t):
        out += [
            (int(m.group(2)) + 1, "bad_schema"),
            (int(m.group(1)) - 1, "bad_schema"),
            ("1", "bad_schema"),
            (True, "bad_schema"),
        ]
    elif t == "uint":
        out += [(-1, "bad_schema"), ("1", "bad_schema"), (True, "bad_schema")]
    elif t == "bool":
        out += [(1, "bad_schema"), ("true", "bad_schema")]
    elif t == "status":
        out += [("1", "bad_schema"), (True, "bad_schema"), (99, "bad_schema"), ("99", "bad_schema")]
    elif t == "package":
        out += [("x", "bad_schema"), (b"", "bad_schema"), ({"size": 0}, "bad_schema")]
    elif t in ("[file]", "file"):
        out += [("x", "bad_schema"), ([{"name": "a"}] if t == "[file]" else {"size": -1}, "bad_schema")]
    else:
        raise AssertionError(f"docs/ipc.md uses a parameter type this suite does not know: {t!r}")
    return out


CASES = [(method, rule) for method in sorted(ipc.METHODS) for rule in param_rules(method)]


def test_every_method_with_parameters_has_a_table() -> None:
    with_params = {m for m, _ in CASES}
    for method in ipc.METHODS:
        if method not in with_params:
            assert "No parameters." in _section(method), f"{method}: no parameter table and no 'No parameters.'"


@pytest.mark.parametrize(("method", "rule"), CASES, ids=[f"{m}:{r.name}" for m, r in CASES])
def test_each_parameter_rule(net: Net, method: str, rule: ParamRule) -> None:
    node, params = valid(net, method)
    if rule.required:
        err = error_of(node, method, {k: v for k, v in params.items() if k != rule.name})
        assert err.code == "bad_schema" and rule.name in err.message, (rule, err.message)
    for value, code in bad_values(rule):
        err = error_of(node, method, {**params, rule.name: value})
        assert err.code == code, f"{method} {rule.name}={value!r:.40}: {err.code} ({err.message}), docs promise {code}"


@pytest.mark.parametrize("method", sorted(ipc.METHODS))
def test_an_unlisted_parameter_is_refused(net: Net, method: str) -> None:
    node, params = valid(net, method)
    err = error_of(node, method, {**params, "colour": 1})
    assert err.code == "bad_schema" and "colour" in err.message


# --- 3. every error code ------------------------------------------------------------------


def raw(node: Daemon, data: bytes, *, settle: float = 0.0) -> list[dict[str, Any]]:
    """Send bytes, half-close, read every answer until the node closes."""
    return ipc_exchange(node.home / "truc.sock", data, settle=settle, timeout=15, until_closed=True)


def framed(obj: Any) -> bytes:
    import cbor2

    return frame(cbor2.dumps(obj), max_bytes=1 << 22)


def _expired_directory(net: Net) -> str:
    """A node whose directory has expired: it runs (loudly) but sends nothing."""
    import dataclasses

    from identity.directory import load_chain, read_chain_file, sign_snapshot, write_chain_file
    from identity.provision import load_authority, now_ms

    homes = provision(net.tmp / "expired", {"old": ["000.00.00.H29"]}, network="truc-expired")
    key, _ = load_authority(net.tmp / "expired" / "auth")
    path = homes["old"] / "directory.cbor"
    current = load_chain(read_chain_file(path), None)
    past = now_ms() - 86_400_000
    expired = dataclasses.replace(current, serial=current.serial + 1, issued_at=past - 86_400_000, valid_until=past)
    write_chain_file(path, [sign_snapshot(expired, key, at=past - 86_400_000)])
    with running(homes) as n:
        return error_of(n["old"], "submit", {"from": "H29", "to": ["H31"], "subject": "x"}).code


def edxml_package(subject: str = "Kiểm tra edXML") -> bytes:
    """A small edoc from G22 to H01, as VNPT's library writes one."""
    fields = EdocFields(sender=G22, recipients=(H01,), subject=subject, number="7", notation="VPCP-TH", date="2026-11-30")
    package = build_edoc(fields, names=lambda code: "", files=[FileSpec("a.txt", "text/plain")])
    return write_bytes(package, [b"edxml"], zip=ZipMode.RAW)


def _edxml_error(n: Net, code: str) -> str:
    """The code the node answers for the hostile vector the codec's tests pin to ``code``."""
    data = next(data for data, cls in gen.hostile().values() if error_class(code).__name__ == cls)
    # The vectors are addressed to H29, which this network's directory lacks: the header would be refused first.
    return error_of(n.g22, "edxml.submit", {"package": data.replace(b"000.00.00.H29", H01.encode())}).code


def _document_id_taken(n: Net) -> str:
    call(n.g22, "edxml.submit", {"package": edxml_package()})
    return error_of(n.g22, "edxml.submit", {"package": edxml_package("Nội dung khác")}).code


EDXML_CODES = (
    "edxml_syntax", "edxml_forbidden", "edxml_limit", "edxml_not_edxml", "edxml_header", "edxml_manifest",
    "edxml_base64", "edxml_unsafe_name", "edxml_zip", "edxml_zip_bomb",
)  # fmt: skip


def _submit(**kw: Any) -> dict[str, Any]:
    return {"from": G22, "to": [H01], "subject": "x", **kw}


def _hash_mismatch(n: Net) -> str:
    request = {"v": 1, "id": 4, "method": "submit", "params": _submit(files=[{"name": "a", "size": 3, "sha256": "00" * 32}])}
    answers = raw(n.g22, framed(request) + framed({"v": 1, "id": 4, "file": 0, "data": b"abc"}))
    return next(a["error"]["code"] for a in answers if a["id"] == 4)


def _first_error(n: Net, data: bytes, settle: float = 0.0) -> str:
    return str(raw(n.g22, data, settle=settle)[0]["error"]["code"])


ERROR_CASES: dict[str, Callable[[Net], str]] = {
    "bad_schema": lambda n: error_of(n.g22, "submit", {"from": G22, "to": [H01]}).code,
    "malformed": lambda n: _first_error(n, frame(b"\xff not cbor", max_bytes=100)),
    "too_large": lambda n: _first_error(n, struct.pack(">I", ipc.MAX_FRAME_BYTES + 1)),
    "timeout": lambda n: _first_error(n, struct.pack(">I", 100) + b"\xa0", settle=3.0),
    "busy": lambda n: error_of(n.g22, "submit", _submit(files=[{"name": "a", "size": 2 << 20}])).code,
    "unsupported_version": lambda n: _first_error(n, framed({"v": 2, "id": 7, "method": "node.info", "params": {}})),
    "bad_agency_code": lambda n: error_of(n.g22, "directory.lookup", {"code": "ZZZ"}).code,
    "unknown_agency": lambda n: error_of(n.g22, "submit", _submit(to=["000.00.00.H05"])).code,
    "not_hosted": lambda n: error_of(n.g22, "submit", _submit(**{"from": H01, "to": [G22]})).code,
    "not_found": lambda n: error_of(n.g22, "document.track", {"id": "00" * 32}).code,
    "not_authorized": lambda n: error_of(n.h01, "status.send", {"id": n.doc, "code": "13", "as": H01}).code,
    "not_a_recipient": lambda n: error_of(n.g22, "document.get", {"id": n.doc}).code,
    "illegal_transition": lambda n: error_of(n.h01, "status.send", {"id": n.doc, "code": "15", "as": H01}).code,
    "file": lambda n: error_of(n.g22, "submit", _submit(files=[{"name": "a", "path": "/etc/hostname"}])).code,
    "hash_mismatch": _hash_mismatch,
    "bad_directory": lambda n: (
        error_of(n.g22, "directory.publish", {"file": cbor.encode({"v": 1, "chain": [_last_link(n)]})}).code
    ),
    "directory_expired": _expired_directory,
    "document_id_taken": _document_id_taken,
    **{code: functools.partial(_edxml_error, code=code) for code in EDXML_CODES},
}
# Codes a client cannot cause on purpose, with the reason; they must still be documented.
NOT_CAUSABLE = {
    "internal": "a bug in the node",
    "cannot_decrypt": "needs a damaged store or a recipient key that does not match the directory",
    "access_denied": "needs a second account: tests/node/test_ipc_hostile.py covers it, as root",
    "shutting_down": "needs a node in its SIGTERM grace: tests/node/test_shutdown.py covers it",
}


def _last_link(net: Net) -> bytes:
    """A directory link that does not continue the node's chain (serial 3 on a node at serial 1)."""
    d = net.tmp / "ahead.cbor"
    d.write_bytes((net.g22.home / "directory.cbor").read_bytes())
    for _ in range(2):
        invoke("directory", "renew", "--authority", str(net.auth), "--directory", str(d))
    from identity.directory import read_chain_file

    return read_chain_file(d)[-1].encode()


def _chain_file(link: bytes) -> bytes:
    return cbor.encode({"v": 1, "chain": [link]})


def test_every_documented_error_code_has_a_case() -> None:
    assert sorted(documented_errors()) == sorted(set(ERROR_CASES) | set(NOT_CAUSABLE))


@pytest.mark.parametrize("code", sorted(ERROR_CASES))
def test_each_error_code_is_produced_as_documented(net: Net, code: str) -> None:
    assert ERROR_CASES[code](net) == code
    assert call(net.g22, "node.info", {})["codes"] == [G22, SUB]  # and the node carries on


def test_a_request_without_params_is_accepted(net: Net) -> None:
    answers = raw(net.g22, framed({"v": 1, "id": 5, "method": "node.info"}))
    assert answers[0]["ok"] is True


@pytest.mark.parametrize(
    ("frame_obj", "why"),
    [
        ([1, 2], "not a map"),
        ({"v": 1, "method": "node.info", "params": {}}, "no id"),
        ({"v": 1, "id": -1, "method": "node.info", "params": {}}, "negative id"),
        ({"v": 1, "id": 0, "method": "node.info", "params": {}}, "id 0 is the node's"),
        ({"v": 1, "id": 2**63, "method": "node.info", "params": {}}, "id over 2^63-1"),
        ({"v": 1, "id": 1, "method": "node.info", "params": [1]}, "params not a map"),
    ],
)
def test_frame_level_faults_are_malformed_with_id_0(net: Net, frame_obj: Any, why: str) -> None:
    answers = raw(net.g22, framed(frame_obj))
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(0, "malformed")], why


def test_trailing_bytes_after_the_map_are_malformed(net: Net) -> None:
    payload = ipc.Request(6, "node.info", {}).encode() + b"\x00"
    assert raw(net.g22, frame(payload, max_bytes=1 << 20))[0]["error"]["code"] == "malformed"


def test_inbox_paging_follows_the_one_rule(net: Net) -> None:
    for i in range(5):
        call(net.g22, "submit", {"from": G22, "to": [H01], "subject": f"Trang {i}"})
    wait_for(lambda: len(call(net.h01, "inbox.list", {"code": H01, "limit": 100})["items"]) >= 7, 30, "deliveries")
    everything = [i["id"] for i in call(net.h01, "inbox.list", {"code": H01, "limit": 100})["items"]]
    seen, after, calls = [], 0, 0
    while True:
        page = call(net.h01, "inbox.list", {"code": H01, "after": after, "limit": 2})
        calls += 1
        assert len(page["items"]) <= 2 and page["next_after"] is not None
        seen += [i["id"] for i in page["items"]]
        after = page["next_after"]
        if not page["more"]:
            break
    assert seen == everything and calls >= len(everything) // 2
    again = call(net.h01, "inbox.list", {"code": H01, "after": after})
    assert again["items"] == [] and again["more"] is False and again["next_after"] == after
    err = error_of(net.g22, "inbox.list", {})
    assert err.code == "bad_schema" and "code" in err.message  # two agencies hosted: say which


def test_the_worked_example_bytes_are_the_pinned_vectors() -> None:
    from tests.test_vectors import pinned

    shown = DOC[DOC.index("On the wire") :].split("```")[1]
    hex_digits = "".join(t for t in shown.split() if re.fullmatch(r"[0-9a-f]{2,8}", t))
    assert len(hex_digits) > 60 and pinned("ipc-submit-request").hex().startswith(hex_digits)
