"""Printing for the CLI: readable tables, or the same data as JSON (``--json``).

Times travel as milliseconds since the Unix epoch; here they become ISO 8601
UTC (``2026-11-22T04:26:35.128Z``) in JSON and in tables.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

TIME_KEYS = {
    "at", "received_at", "acked_at", "created_at", "last_seen", "next_retry", "first_sent",
    "delivered_at", "valid_until", "issued_at", "since", "oldest_first_sent", "started_at",
    "not_before", "not_after",
}  # fmt: skip
FOREVER_MS = (1 << 63) - 1
T = TypeVar("T")


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    if ms >= FOREVER_MS or ms > 253_402_300_799_000:
        return "never"
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def humanize(value: Any) -> Any:
    """Convert every time field (by key name) to ISO 8601 UTC, recursively."""
    if isinstance(value, dict):
        return {k: (iso(v) if k in TIME_KEYS and isinstance(v, int) else humanize(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [humanize(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(humanize(value), ensure_ascii=False, indent=2))


def show(value: T, as_json: bool, render: Callable[[T], object]) -> None:
    """What every read command does with its answer: JSON with ``--json``, else ``render`` lays it out for people."""
    if as_json:
        emit_json(value)
    else:
        render(value)


def show_rows(items: Sequence[T], as_json: bool, headers: Sequence[str], row: Callable[[T], Sequence[Any]]) -> None:
    """:func:`show` for a list answer: a table of one ``row`` per item."""
    show(items, as_json, lambda items: table([row(i) for i in items], headers))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def when(ms: int | None) -> str:
    s = iso(ms)
    return "-" if s is None else s.replace("T", " ")[:19]


def age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def short(doc_id: str) -> str:
    return doc_id[:12]


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
