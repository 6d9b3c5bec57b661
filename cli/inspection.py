"""Reading a running node: ``truc info``, ``peers``, ``queues``, ``stats`` (each also ``--json``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from protocol.agency import AgencyCode

from . import output
from .context import Ctx, home_option, json_option, pass_ctx


@click.command()
@home_option
@json_option
@pass_ctx
def info(ctx: Ctx, home: Path | None, as_json: bool) -> None:
    """Version, peer id, hosted agencies, directory serial and expiry, uptime, store size and garbage."""
    output.show(ctx.call(home, "node.info"), as_json, _print_info)


def _print_info(i: dict[str, Any]) -> None:
    d = i["directory"]
    click.echo(f"truc {i['version']} (Python {i['python']})  network {i['network']}")
    click.echo(f"peer      {i['peer_id']}")
    for code in i["codes"]:
        click.echo(f"hosts     {code}  {i['names'].get(code, '')}")
    expiry = "EXPIRED" if d["expired"] else "valid"
    click.echo(
        f"directory serial {d['serial']}, {d['agencies']} agencies on {d['nodes']} nodes, "
        f"{expiry} until {output.when(d['valid_until'])}"
    )
    click.echo(f"uptime    {output.age(i['uptime_s'])}, {i['peers_connected']} peers connected")
    pnet = i.get("private_network", "off")  # a node older than this CLI does not say
    if pnet == "off":
        click.echo(
            "WARNING   no private network (psk_file): anyone who reaches the overlay port can connect and run the "
            "handshake; only directory members get further (docs/operations.md, Private network)"
        )
    else:
        click.echo(f"overlay   private network on ({'key file' if pnet == 'psk_file' else 'inline psk in config.toml'})")
    click.echo(f"store     {output.size(i['store_bytes'])} at {i['store_path']}")
    click.echo(f"garbage   {_garbage_line(i)}")
    click.echo(f"queues    {i['pending_deliveries']} pending deliveries, {i['awaiting_blocks']} documents still arriving")


def _garbage_line(i: dict[str, Any]) -> str:
    """What the store holds that no document refers to (counted offline), and what the node removed itself."""
    if i.get("garbage_checked_at") is None:
        line = "not counted yet (truc store check, with the node stopped)"
    elif i["garbage_blocks"]:
        line = (
            f"{i['garbage_blocks']} blocks ({output.size(i['garbage_bytes'])}) no document refers to, at the check of "
            f"{output.when(i['garbage_checked_at'])}: truc store gc removes them (node stopped)"
        )
    else:
        line = f"none at the check of {output.when(i['garbage_checked_at'])}"
    if i.get("dead_blocks_removed"):
        line += (
            f"; {i['dead_blocks_removed']} blocks of failed submits removed since start ({output.size(i['dead_bytes_removed'])})"
        )
    return line


@click.command()
@home_option
@json_option
@pass_ctx
def peers(ctx: Ctx, home: Path | None, as_json: bool) -> None:
    """The network's nodes (from the directory), whether connected, and when last seen."""
    output.show_rows(
        ctx.call(home, "peers.list"),
        as_json,
        ["peer", "codes", "connected", "last seen", "addresses"],
        lambda p: (
            p["peer_id"][:20] + "…",
            ",".join(AgencyCode.parse(c).short() for c in p["codes"]),
            p["connected"],
            output.when(p["last_seen"]),
            ",".join(p["addrs"]),
        ),
    )


@click.command()
@home_option
@json_option
@pass_ctx
def queues(ctx: Ctx, home: Path | None, as_json: bool) -> None:
    """What waits to be delivered, per recipient, and why it is not delivered yet.

    \b
    "refused" counts what the recipient refused for good in the last 7 days
    (not retried; truc track ID shows the reason for each).
    """
    output.show_rows(
        ctx.call(home, "queues.list"),
        as_json,
        ["recipient", "pending", "docs", "statuses", "refused", "oldest", "next try", "why not delivered yet"],
        lambda q: (
            q["recipient"],
            q["pending"],
            q["documents"],
            q["statuses"],
            q.get("refused", 0),
            output.age(q["oldest_age_s"]),
            output.when(q["next_retry"]),
            q["reason"],
        ),
    )


@click.command()
@home_option
@click.option("--since", default=None, help="Only documents created on or after DATE (YYYY-MM-DD, UTC).")
@json_option
@pass_ctx
def stats(ctx: Ctx, home: Path | None, since: str | None, as_json: bool) -> None:
    """Documents sent and received per agency, status counts, delivery outcomes."""
    since_ms = 0
    if since:
        try:
            since_ms = int(dt.datetime.fromisoformat(since).replace(tzinfo=dt.UTC).timestamp() * 1000)
        except ValueError:
            raise click.BadParameter(f"{since!r} is not a date YYYY-MM-DD", param_hint="--since") from None
    output.show(ctx.call(home, "stats", since=since_ms), as_json, _print_stats)


def _print_stats(s: dict[str, Any]) -> None:
    click.echo(f"since {output.when(s['since']) if s['since'] else 'the beginning'}")
    output.table([(c, n) for c, n in s["sent"].items()], ["sent by", "documents"])
    output.table([(c, n) for c, n in s["received"].items()], ["received by", "documents"])
    output.table([(c, n) for c, n in s["statuses"].items()], ["status", "count"])
    d = s["deliveries"]
    lat = s["receipt_latency_ms"]
    click.echo(
        f"deliveries: {d['delivered']} receipted, {d['pending']} pending, {d['failed']} failed; "
        f"receipt latency p50 {lat['p50']} ms, p99 {lat['p99']} ms"
    )


COMMANDS = (info, peers, queues, stats)
