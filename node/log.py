"""Structured logs: one line per event, ``name key=value ...`` on a terminal, JSON otherwise.

Event names are dotted facts (``peer.connected``, ``envelope.rejected``,
``document.delivered``); fields carry the specifics (``reason=bad_signature``).
Only node/ logs: protocol, identity and store return or raise.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Log:
    def __init__(self, *, stream: TextIO | None = None, level: str = "info", fmt: str = "auto", node: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.level = LEVELS[level]
        if fmt == "auto":
            fmt = "text" if getattr(self.stream, "isatty", lambda: False)() else "json"
        self.json = fmt == "json"
        self.node = node
        self.counts: dict[str, int] = {}

    def event(self, name: str, level: str = "info", **fields: Any) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        if LEVELS[level] < self.level:
            return
        now = time.time()
        if self.json:
            record = {"ts": round(now, 3), "level": level, "event": name, **({"node": self.node} if self.node else {}), **fields}
            line = json.dumps(record, ensure_ascii=False, default=str)
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
            parts = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
            tag = f" [{self.node}]" if self.node else ""
            line = f"{stamp}{tag} {level.upper():7} {name} {parts}".rstrip()
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not take the node down

    def debug(self, name: str, **fields: Any) -> None:
        self.event(name, "debug", **fields)

    def info(self, name: str, **fields: Any) -> None:
        self.event(name, "info", **fields)

    def warning(self, name: str, **fields: Any) -> None:
        self.event(name, "warning", **fields)

    def error(self, name: str, **fields: Any) -> None:
        self.event(name, "error", **fields)


def _text(v: Any) -> str:
    s = str(v)
    return json.dumps(s, ensure_ascii=False) if (" " in s or not s) else s


class NullLog(Log):
    def __init__(self) -> None:
        super().__init__(stream=sys.stderr, level="error", fmt="json")

    def event(self, name: str, level: str = "info", **fields: Any) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class _Forward(logging.Handler):
    """Library log records (py-libp2p, trio...) become ``lib.log`` events in our stream."""

    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        # A logging handler runs inside the library's own code path (here, in
        # gossipsub's stream handler): whatever goes wrong in it must not
        # raise into that code, or one log line takes the connection, and
        # with it the node, down.
        try:
            try:
                message = record.getMessage()
            except Exception:
                message = str(record.msg)
            self.log.debug("lib.log", logger=record.name, lib_level=record.levelname.lower(), message=message[:500])
        except Exception:
            self.log.counts["lib.log_failed"] = self.log.counts.get("lib.log_failed", 0) + 1


def capture_library_logs(log: Log) -> None:
    """Route Python logging into ``log`` as debug events.

    py-libp2p logs expected events (a peer that is down, a refused dial) as
    errors; in our log they are debug detail, shown with ``log_level = "debug"``
    and counted otherwise. Without this, Python's last-resort handler prints
    them as bare lines in the middle of our JSON.
    """
    handler = _Forward(log)
    level = logging.DEBUG if log.level <= LEVELS["debug"] else logging.WARNING
    # py-libp2p's own root logger does not propagate (and has no handler of its own).
    for name in ("", "libp2p"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
    logging.getLogger("libp2p").propagate = False  # one line per record, not one per handler
