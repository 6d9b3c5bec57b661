"""The format documents stay complete: every method, error code and event the code has is written down."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import errors, ipc

DOCS = Path(__file__).resolve().parent.parent / "docs"


def all_error_codes() -> set[str]:
    out = set()
    stack: list[type[errors.TrucError]] = [errors.TrucError]
    while stack:
        cls = stack.pop()
        out.add(cls.code)
        stack.extend(cls.__subclasses__())
    return out - {"error", "rejected"}  # abstract bases, never sent


def test_every_ipc_method_is_documented() -> None:
    text = (DOCS / "ipc.md").read_text("utf-8")
    missing = [m for m in ipc.METHODS if f"`{m}`" not in text]
    assert not missing, f"docs/ipc.md does not describe: {missing}"


def test_every_error_code_is_documented() -> None:
    text = "".join((DOCS / name).read_text("utf-8") for name in ("ipc.md", "protocol.md", "operations.md"))
    missing = sorted(c for c in all_error_codes() if f"`{c}`" not in text)
    assert not missing, f"error codes not in docs/ipc.md, protocol.md or operations.md: {missing}"


def test_every_pushed_event_is_documented() -> None:
    source = "".join(p.read_text("utf-8") for p in (DOCS.parent / "node").glob("*.py"))
    emitted = set(re.findall(r'self\.emit\(\s*"([a-z.]+)"', source)) | set(re.findall(r'e\.emit\(\s*"([a-z.]+)"', source))
    assert emitted, "found no emitted events: the pattern is stale"
    text = (DOCS / "ipc.md").read_text("utf-8")
    missing = sorted(e for e in emitted if f"`{e}`" not in text)
    assert not missing, f"docs/ipc.md does not list events: {missing}"


def test_every_test_the_security_model_cites_exists() -> None:
    """docs/security.md names the test behind each check: each name must be a test that exists."""
    cited = set(re.findall(r"\b(test_[a-z0-9_]+)", (DOCS / "security.md").read_text("utf-8")))
    assert len(cited) > 30, "the pattern is stale"
    tests = "".join(p.read_text("utf-8") for p in (DOCS.parent / "tests").rglob("*.py"))
    defined = set(re.findall(r"def (test_[a-z0-9_]+)", tests)) | {p.stem for p in (DOCS.parent / "tests").rglob("test_*.py")}
    assert sorted(cited - defined) == []
