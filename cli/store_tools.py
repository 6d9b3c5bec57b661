"""``truc store check | gc | repair | adopt``: the operator's tools for a stopped node's store, and how they print.

The work is in node/maintenance.py (through cli/daemon.py, the one module of
cli/ that hands over to node/); results come back as plain dicts, printed
here for people or as they are with ``--json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from . import output
from .context import Ctx, home_option, json_option

REPAIR_LOSES = """\
Repair keeps every record LevelDB can still read and drops the rest. What that can cost:
documents may lose blocks: they wait for them again and are fetched from peers (lost for
good if no peer keeps them: relays drop documents a day after their receipts); envelopes
may be lost: the node re-reads its peers' logs and fetches them again; the delivery of a
lost envelope is no longer tracked here. The store as it was is copied first (--backup);
restoring a backup instead loses what arrived since that backup, which peers resend too."""


@click.group("store")
def store_group() -> None:
    """Check, clean or repair the node's store (stop the node first).

    \b
    check   read everything, verify checksums and references; exit 0 sound, 1 damaged
    gc      remove blocks no document refers to (left by older versions)
    repair  copy the store aside, rebuild it, make it consistent; says what was lost
    adopt   record this node as the store's owner after a deliberate node key change
    """


def _store_tool(command: str, home: Path | None, **kw: Any) -> dict[str, Any]:
    from . import daemon

    return daemon.store_tool(command, Ctx().home(home), **kw)


@store_group.command("check")
@home_option
@json_option
def store_check(home: Path | None, as_json: bool) -> None:
    """Read every record with checksums verified and follow every reference; exit 0 sound, 1 damaged."""
    r = _store_tool("check", home)
    output.show(r, as_json, lambda r: _print_check(r, home))
    sys.exit(0 if r["sound"] else 1)


def _print_check(r: dict[str, Any], home: Path | None, *, title: str = "store") -> None:
    h = f" --home {home}" if home else ""
    if not r["opened"]:
        click.echo(f"{title:9} {r['path']}: cannot be opened")
        for d in r["damage"]:
            click.echo(f"          {d}")
        click.echo(f"verdict   damaged: truc store repair{h} (docs/operations.md, 'The store is damaged')")
        return
    click.echo(f"{title:9} {r['path']} (format {r['format']}, {r['owner']})")
    records, sizes = r["records"], r["record_bytes"]
    took = f" in {r['seconds']} s" if "seconds" in r else ""
    click.echo(f"read      {sum(records.values()):,} records, {output.size(sum(sizes.values()))}, checksums verified{took}")
    click.echo("          " + " · ".join(f"{name} {n:,}" for name, n in sorted(records.items(), key=lambda x: -x[1]) if n))
    if r["awaiting_blocks"]:
        click.echo(f"          {r['awaiting_blocks']} documents still waiting for blocks from peers (normal)")
    for label, items, count in (("damage", r["damage"], r["damage_count"]), ("lost", r["lost"], r["lost_count"])):
        if not count:
            click.echo(f"{label:9} none")
            continue
        what = "problems" if label == "damage" else "references to envelopes that are not stored"
        click.echo(f"{label:9} {count} {what}:")
        for item in items:
            click.echo(f"            {item}")
        if count > len(items):
            click.echo(f"            ... and {count - len(items)} more")
    if r["garbage_blocks"]:
        click.echo(
            f"garbage   {r['garbage_blocks']} blocks ({output.size(r['garbage_bytes'])}) no document refers to: "
            f"truc store gc{h} removes them"
        )
    else:
        click.echo("garbage   none")
    if r["inflight_blocks"]:
        click.echo(f"          {r['inflight_blocks']} blocks of a submit a crash cut short: the node removes them when it starts")
    if r["clean"]:
        click.echo("verdict   sound")
    elif r["sound"]:
        click.echo("verdict   sound; the lost envelopes come back from peers that still keep them (catch-up)")
    else:
        click.echo(f"verdict   damaged: truc store repair{h} (read docs/operations.md, 'The store is damaged', first)")


@store_group.command("gc")
@home_option
@json_option
def store_gc(home: Path | None, as_json: bool) -> None:
    """Remove blocks no stored document refers to (left by older versions after failed submits)."""

    def render(r: dict[str, Any]) -> None:
        click.echo(f"removed   {r['removed_blocks']} blocks ({output.size(r['removed_bytes'])})")
        _print_check(r, home, title="store now")

    output.show(_store_tool("gc", home), as_json, render)


@store_group.command("repair", epilog=REPAIR_LOSES)
@home_option
@click.option(
    "--backup",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Copy the store here first (default: beside it, store.damaged-TIME).",
)
@click.option("--no-backup", is_flag=True, help="Do not copy the store first (when there is no room for a copy).")
@json_option
def store_repair(home: Path | None, backup: Path | None, no_backup: bool, as_json: bool) -> None:
    """Copy the store aside, rebuild it with LevelDB's repair, make its records consistent again."""
    if backup is not None and no_backup:
        raise click.UsageError("give --backup DIR or --no-backup, not both")
    r = _store_tool("repair", home, backup=backup, no_backup=no_backup)
    if as_json:
        output.emit_json(r)
        sys.exit(0 if r["after"] and r["after"]["opened"] and not r["after"]["damage_count"] else 1)
    before, after = r["before"], r["after"]
    if before["clean"]:
        click.echo("the store checks sound: nothing to repair")
        sys.exit(0)
    click.echo(REPAIR_LOSES)
    click.echo()
    click.echo(f"before    {before['damage_count']} problems, {before['lost_count']} lost references")
    click.echo(f"backup    {r['backup']} (the store as it was)" if r["backup"] else "backup    none (--no-backup)")
    if r["error"] and not r["repaired"]:
        click.echo(f"repair    failed: {r['error']}")
        click.echo("          restore a backup (docs/operations.md, 'The store is damaged')")
        sys.exit(1)
    archived = f"; the files it replaced are in {after['path'] if after else 'the store'}/lost/: {', '.join(r['archived'])}"
    click.echo("repair    LevelDB rebuilt the store from its files" + (archived if r["archived"] else ""))
    lost = r["lost_records"]
    line = ", ".join(f"{name} {n:,}" for name, n in lost.items()) if lost else "no record readable before is gone"
    if r["uncounted"]:
        line += f"; not counted: {', '.join(r['uncounted'])} (unreadable before the repair; see 'fixed')"
    click.echo(f"lost      {line}")
    for fix, n in r["fixed"].items():
        click.echo(f"fixed     {n} {FIX_TEXT.get(fix, fix)}")
    if r["cursors_reset"]:
        click.echo("sync      cursors reset: at its next start the node re-reads its peers' logs and fetches what it lacks")
    if after is not None:
        _print_check(after, home, title="store now")
    if r["error"] or after is None or not after["opened"] or after["damage_count"]:
        click.echo("          still damaged: restore a backup (docs/operations.md, 'The store is damaged')")
        sys.exit(1)


FIX_TEXT = {
    "refetch": "documents waiting for their blocks again (fetched from peers)",
    "doc_without_envelope": "document records without their envelope removed (a peer sends the envelope again)",
    "stray_awaiting": "stray 'awaiting blocks' markers removed",
    "inbox_index": "inbox index entries rebuilt",
    "delete": "records that were wrong or pointed nowhere removed",
    "delete_delivery": "outbox records of envelopes no longer stored removed (their delivery is no longer tracked)",
    "reschedule": "pending deliveries scheduled again",
    "stale_mark": "in-flight marks of stored blocks removed",
    "garbage": "unreferenced blocks removed",
    "bad_record": "undecodable records removed",
    "bad_block": "blocks whose content did not match their hash removed (fetched again)",
    "unknown": "keyspaces this format does not have removed",
}


@store_group.command("adopt")
@home_option
def store_adopt(home: Path | None) -> None:
    """Record this node as the store's owner (only after replacing node.key on purpose)."""
    r = _store_tool("adopt", home)
    click.echo(f"{r['store']} was recorded for {r['was'] or 'no node'}; now for {r['now']}")
