"""Library log capture: py-libp2p's log calls run inside its stream handlers, so our handler must never raise.

Regression: the forwarder passed ``level=`` as a field, which collided with
``Log.event``'s own parameter; the first warning gossipsub logged (a GRAFT
during backoff, seen with 20 nodes) raised a TypeError inside its stream
handler and took the whole node down.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from node.log import Log, capture_library_logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("", "libp2p")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_library_warnings_become_debug_events(restore_logging: None, fmt: str) -> None:
    out = io.StringIO()
    log = Log(stream=out, level="debug", fmt=fmt)
    capture_library_logs(log)
    logging.getLogger("libp2p.pubsub.gossipsub").warning("GRAFT from %s during backoff", "12D3KooW")
    logging.getLogger("libp2p.network").error("dial failed: %s", "refused")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    if fmt == "json":
        first = json.loads(lines[0])
        assert first["event"] == "lib.log"
        assert first["level"] == "debug"
        assert first["lib_level"] == "warning"
        assert first["logger"] == "libp2p.pubsub.gossipsub"
        assert first["message"] == "GRAFT from 12D3KooW during backoff"
    else:
        assert "lib.log" in lines[0] and "lib_level=warning" in lines[0]
    assert log.counts["lib.log"] == 2


def test_a_broken_record_never_raises_into_the_library(restore_logging: None) -> None:
    out = io.StringIO()
    log = Log(stream=out, level="debug", fmt="json")
    capture_library_logs(log)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    # Bad %-arguments and an argument whose str() raises: both must be absorbed.
    logging.getLogger("libp2p.x").warning("%d peers", "not a number")
    logging.getLogger("libp2p.x").warning(Unprintable())
    assert log.counts.get("lib.log", 0) + log.counts.get("lib.log_failed", 0) == 2


def test_library_logs_hidden_at_info_but_counted(restore_logging: None) -> None:
    out = io.StringIO()
    log = Log(stream=out, level="info", fmt="json")
    capture_library_logs(log)
    logging.getLogger("libp2p.pubsub").warning("something expected")
    assert out.getvalue() == ""
    assert log.counts["lib.log"] == 1
