"""``truc``: the command line of a Trục node.

Admin and integrator commands talk to a running node only through its IPC
socket (cli/client.py); offline commands (keys, the directory file, a node
home) use identity/ and protocol/ directly. Errors become one line and an
exit code here, in one place (:class:`TrucGroup`); the code is the error
type's ``exit_code`` (the rule is in protocol/errors.py):

    0 ok · 1 refused or failed · 2 fix the input, configuration, keys or store first · 3 no node is running
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click

from identity.home import Home
from protocol.agency import AgencyCode
from protocol.errors import AccessDeniedError, AgencyCodeError, ConfigError, SchemaError, TrucError, find_truc_error

from . import output
from .client import Client, file_entry


def _version() -> str:
    try:
        return version("truc")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


class TrucGroup(click.Group):
    """Turns every TrucError into one line on stderr and an exit code; no tracebacks for user errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (TrucError, BaseExceptionGroup) as raised:
            found = find_truc_error(raised)
            if found is None:
                raise
            click.echo(f"truc: {found.message}", err=True)
            ctx.exit(found.exit_code)


class Ctx:
    """What commands receive: the node home and (lazily) an IPC client. Tests inject a client."""

    def __init__(self, home: Path | None = None, client: Client | None = None) -> None:
        self.home_override = home
        self._client = client

    def home(self, explicit: Path | None) -> Path:
        home = explicit or self.home_override or (Path(os.environ["TRUC_HOME"]) if os.environ.get("TRUC_HOME") else None)
        if home is None:
            raise ConfigError("which node? pass --home DIR or set TRUC_HOME")
        return home

    def client(self, explicit: Path | None) -> Client:
        if self._client is not None:
            return self._client
        self._client = Client(Home.load(self.home(explicit)).socket)
        return self._client

    def call(self, explicit: Path | None, method: str, **params: Any) -> Any:
        return self.client(explicit).call(method, **params)


pass_ctx = click.make_pass_decorator(Ctx, ensure=True)


def home_option(f: Any) -> Any:
    return click.option(
        "--home", type=click.Path(path_type=Path, file_okay=False), envvar="TRUC_HOME", help="Node home directory (or TRUC_HOME)."
    )(f)


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table (times in ISO 8601 UTC).")(f)


def parse_code(value: str) -> str:
    try:
        return str(AgencyCode.parse(value))
    except AgencyCodeError as exc:
        raise click.BadParameter(exc.message) from None


def code_arg(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(parse_code(v) for v in value)
    return parse_code(value)


@click.group(cls=TrucGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), prog_name="truc")
def cli() -> None:
    """Trục: a peer-to-peer relay for official documents between agencies.

    \b
    Start here:
      truc demo                      a local network on loopback, end to end
      truc init ... / truc run       set up and run a node
    \b
    Documents (integrators and operators):
      send, inbox, fetch, ack, status, track, documents, events
    \b
    Inspecting a running node (every read command also takes --json):
      info, peers, queues, stats, directory show/lookup
    \b
    Network authority (offline):
      authority init, directory add/revoke/renew/publish
    \b
    The store (with the node stopped):
      store check, store gc, store repair, store adopt
    """


# --- offline: authority, node home, directory file -------------------------------------------

from . import offline  # noqa: E402  (commands register themselves on ``cli``)

offline.register(cli)


# --- the demo and the daemon -----------------------------------------------------------------------


@cli.command()
@click.option("--short", is_flag=True, help="Fewer and smaller documents (what CI runs).")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Build the network in this empty directory and keep it."
)
def demo(short: bool, keep: Path | None) -> None:
    """Run a local network of 4 real nodes on 127.0.0.1 and show documents, receipts and recovery.

    \b
    Builds an authority and a signed directory for G22 (Văn phòng Chính phủ)
    and three provinces, starts four `truc run` processes, then: a document
    with attachments to three agencies and their receipts; a status flow
    01→03→04→05→06; a node stopped (its receipt's signature verified from its
    store), sent to, restarted and caught up; a node killed with SIGKILL
    mid-delivery and nothing lost. Every claim is checked; exit status 1 if
    one fails.
    """
    from . import daemon

    sys.exit(daemon.demo(short=short, keep=keep))


@cli.command()
@home_option
def run(home: Path | None) -> None:
    """Run the node in the foreground (the form systemd runs) until SIGTERM/SIGINT."""
    from . import daemon

    sys.exit(daemon.run(Ctx().home(home)))


# --- the store, offline -------------------------------------------------------------------------

REPAIR_LOSES = """\
Repair keeps every record LevelDB can still read and drops the rest. What that can cost:
documents may lose blocks: they wait for them again and are fetched from peers (lost for
good if no peer keeps them: relays drop documents a day after their receipts); envelopes
may be lost: the node re-reads its peers' logs and fetches them again; the delivery of a
lost envelope is no longer tracked here. The store as it was is copied first (--backup);
restoring a backup instead loses what arrived since that backup, which peers resend too."""


@cli.group("store")
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


@cli.group()
def simnet() -> None:
    """Simulate the national network: many nodes, a realistic workload, faults, a verdict."""


@simnet.command("run")
@click.option(
    "--nodes", type=click.IntRange(2, 2500), default=None, help="Agencies (default: all 95 of 2019; more are synthesized)."
)
@click.option(
    "--agencies", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Agency list CSV (code,name,group,evidence)."
)
@click.option("--docs", type=click.IntRange(1, 10_000_000), default=None, help="Documents to send (default: rate x duration).")
@click.option("--rate", type=click.FloatRange(0.001), default=None, help="Documents per second, on average (default 0.5).")
@click.option(
    "--duration",
    type=click.FloatRange(1),
    default=600.0,
    show_default=True,
    help="Seconds of workload (virtual seconds in virtual mode).",
)
@click.option(
    "--faults",
    default="default",
    show_default=True,
    help="none, default, or e.g. kill=H29@30%+10%,partition=gov|prov@50%+10% (see docs/simnet.md).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Everything random follows from it.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path), help="Write summary.json and PNG plots here.")
@click.option(
    "--mode",
    type=click.Choice(["virtual", "libp2p", "processes"]),
    default="virtual",
    show_default=True,
    help="virtual: simulated wire in virtual time; libp2p: real hosts in one process; processes: one truc run per agency.",
)
@click.option(
    "--relay",
    type=click.IntRange(-1, 10_000),
    default=3,
    show_default=True,
    help="Shards each node relays besides its own (-1: all).",
)
@click.option(
    "--max-size-mb", type=click.FloatRange(0.01, 200), default=8.0, show_default=True, help="Largest attachment in the workload."
)
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the nodes' stores in this directory.")
def simnet_run(**kw: Any) -> None:
    """Build a network from the agency list, run a workload with faults, check the invariants.

    \b
    Prints a verdict on: every document delivered exactly once to every
    recipient; every 01 receipt back at its sender; statuses in legal order
    and equal at both ends; no invalid envelope stored or forwarded; nothing
    lost at crashed nodes. Exit status 1 if any fails.
    """
    if kw["docs"] is not None and kw["rate"] is not None:
        raise click.UsageError("give --docs or --rate, not both")
    from . import daemon

    sys.exit(daemon.simnet_run(**kw))


# --- documents ----------------------------------------------------------------------------------


@cli.command()
@home_option
@click.option("--from", "sender", required=True, callback=code_arg, help="Sending agency (hosted on this node).")
@click.option("--to", "recipients", required=True, multiple=True, callback=code_arg, help="Recipient agency; repeat for several.")
@click.option("--subject", required=True, help="Trích yếu: what the document is about.")
@click.option("--number", default="", help="Số.")
@click.option("--notation", default="", help="Ký hiệu, e.g. VPCP-KSTT.")
@click.option("--type", "doc_type", default="", help="Document type, e.g. 'Công văn'.")
@click.option("--place", default="", help="Place of promulgation.")
@click.option("--date", default="", help="Promulgation date YYYY-MM-DD.")
@click.option("--signer", default="", help="Who signed it.")
@click.option("--signer-title", default="", help="The signer's position.")
@click.option("--urgency", type=click.IntRange(0, 4), default=0, help="0 normal .. 4 flash with timer.")
@click.option("--due", default="", help="Due date YYYY-MM-DD.")
@click.option("--business", type=click.Choice(["new", "revoke", "update", "replace"]), default="new")
@click.option("--ref", default=None, help="Target document id (for revoke/update/replace).")
@click.option(
    "--key", "idempotency_key", default=None, help="Idempotency key: sending again with it returns the same document id."
)
@click.option("--mime", default="application/octet-stream", help="Media type of the files.")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ...} instead of the bare id.')
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_ctx
# ctx positional-only: with **kw, pass_ctx's typing (Concatenate[Ctx, P]) cannot match it by name
def send(ctx: Ctx, /, home: Path | None, files: tuple[Path, ...], as_json: bool, mime: str, **kw: Any) -> None:
    """Send a document with FILE attachments; prints its id once the node has it durably.

    The files are read here and streamed to the node over its socket (the
    node never opens a path you name)."""
    params = {k: v for k, v in kw.items() if v not in ("", None)}
    params["from"] = params.pop("sender")
    params["to"] = list(params.pop("recipients"))
    entries: list[dict[str, Any]] = []
    uploads: dict[int, Path] = {}
    for f in files:
        entry, stream = file_entry(f, mime=_guess_mime(f, mime))
        if stream is not None:
            uploads[len(entries)] = stream
        entries.append(entry)
    params["files"] = entries
    client = ctx.client(home)
    result = client.call_with_files("submit", params, uploads) if uploads else client.call("submit", **params)
    output.show(result, as_json, lambda r: click.echo(r["id"]))


def _guess_mime(path: Path, default: str) -> str | None:
    return None if default == "application/octet-stream" else default  # None: guessed from the name


@cli.command()
@home_option
@click.option("--code", callback=code_arg, default=None, help="Only this hosted agency.")
@click.option("--unacked", is_flag=True, help="Only documents not acknowledged yet.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100)
@json_option
@pass_ctx
def inbox(ctx: Ctx, home: Path | None, code: str | None, unacked: bool, limit: int, as_json: bool) -> None:
    """Documents received by the agencies hosted here, oldest first."""
    codes = [code] if code else ctx.call(home, "node.info")["codes"]
    items = []
    for c in codes:
        try:
            items += ctx.call(home, "inbox.list", code=c, unacked=unacked, limit=limit)["items"]
        except AccessDeniedError:
            if code:
                raise  # asked for explicitly; otherwise: an agency this account does not act for
    items = sorted(items, key=lambda i: (i["received_at"], i["to"], i["seq"]))[:limit]
    output.show_rows(
        items,
        as_json,
        ["id", "from", "to", "received", "acked", "subject"],
        lambda i: (
            output.short(i["id"]),
            i["from"],
            i["to"],
            output.when(i["received_at"]),
            "yes" if i["acked_at"] else "no",
            i["subject"][:50],
        ),
    )


@cli.command()
@home_option
@click.argument("doc_id")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for the files."
)
@click.option("--code", callback=code_arg, default=None, help="Which hosted recipient (when several received it).")
@click.option("--ack", is_flag=True, help="Acknowledge it in the inbox once written.")
@json_option
@pass_ctx
def fetch(ctx: Ctx, home: Path | None, doc_id: str, out_dir: Path, code: str | None, ack: bool, as_json: bool) -> None:
    """Write a received document's files and metadata.json into --out (hashes verified)."""
    doc_id = _full_id(ctx, home, doc_id)
    result = ctx.client(home).get_document(doc_id, out_dir, code=code)
    (out_dir / "metadata.json").write_text(json.dumps(output.humanize(result), ensure_ascii=False, indent=2))
    if ack:
        ctx.call(home, "inbox.ack", id=doc_id, code=code)

    def render(result: dict[str, Any]) -> None:
        click.echo(f"{result['metadata']['subject']}  (from {result['from']})")
        for f in result["files"]:
            click.echo(f"  {f['path']}  {output.size(f['size'])}  sha256 ok")
        click.echo(f"  {out_dir / 'metadata.json'}")

    output.show(result, as_json, render)


@cli.command()
@home_option
@click.argument("doc_id")
@click.option("--code", callback=code_arg, default=None, help="Which hosted recipient.")
@pass_ctx
def ack(ctx: Ctx, home: Path | None, doc_id: str, code: str | None) -> None:
    """Mark a received document as taken by the document-management system."""
    res = ctx.call(home, "inbox.ack", id=_full_id(ctx, home, doc_id), code=code)
    click.echo("acknowledged" if res["acked"] else "already acknowledged")


@cli.command()
@home_option
@click.argument("doc_id")
@click.argument("code")
@click.option("--note", default="", help="A note for the other party (encrypted to it).")
@click.option(
    "--as", "author", callback=code_arg, default=None, help="Hosted agency sending the status (default: the recipient here)."
)
@click.option("--to", "target", callback=code_arg, default=None, help="For 13 (take-back): which recipient.")
@pass_ctx
def status(ctx: Ctx, home: Path | None, doc_id: str, code: str, note: str, author: str | None, target: str | None) -> None:
    """Send processing status CODE about a document: 02 03 04 05 06 13 15 16.

    \b
    02 rejected · 03 accepted/registered · 04 assigned · 05 processing
    06 finished · 13 take-back request (sender) · 15 agree · 16 refuse
    (01 is sent by the node itself when the document is stored.)
    """
    res = ctx.call(
        home, "status.send", id=_full_id(ctx, home, doc_id), code=code, note=note or None, **{"as": author, "to": target}
    )
    click.echo(f"status {res['code']} sent as {res['as']} ({output.short(res['id'])})")


@cli.command()
@home_option
@click.argument("doc_id")
@json_option
@pass_ctx
def track(ctx: Ctx, home: Path | None, doc_id: str, as_json: bool) -> None:
    """Per-recipient timeline of a document: delivery, receipt, statuses, retries, last failure."""
    output.show(ctx.call(home, "document.track", id=_full_id(ctx, home, doc_id)), as_json, _print_track)


def _print_track(t: dict[str, Any]) -> None:
    click.echo(f"{t['id']}\n  from {t['from']}  created {output.when(t['created_at'])}  {output.size(t['size'])}  {t['subject']}")
    if t["problem"]:
        click.echo(f"  problem: {t['problem']}")
    for r in t["recipients"]:
        line = f"  → {r['code']}  {r['state']}  ({r['phase']})"
        if r["waiting_for"]:
            line += f"  waiting for an answer to a {r['waiting_for']}"
        click.echo(line)
        for s in r["statuses"]:
            click.echo(f"      {s['code']}  {output.when(s['at'])}  {s['author']}  {s['note']}".rstrip())
        if r["state"] == "pending":
            click.echo(
                f"      attempts {r['attempts']}, next try {output.when(r['next_retry'])}"
                + (f", last error: {r['last_error']}" if r["last_error"] else "")
            )
        elif r["state"] == "failed":
            click.echo(f"      failed: {r['last_error']}")


@cli.command()
@home_option
@click.option("--role", type=click.Choice(["sent", "received", "relayed"]), default=None)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50)
@json_option
@pass_ctx
def documents(ctx: Ctx, home: Path | None, role: str | None, limit: int, as_json: bool) -> None:
    """Documents this node sent or received, newest first."""
    output.show_rows(
        ctx.call(home, "documents.list", role=role, limit=limit),
        as_json,
        ["id", "role", "from", "to", "created", "subject"],
        lambda d: (
            output.short(d["id"]),
            d["role"],
            d["from"],
            ",".join(c[-3:] for c in d["to"]),
            output.when(d["created_at"]),
            d["subject"][:40],
        ),
    )


@cli.command()
@home_option
@json_option
@pass_ctx
def events(ctx: Ctx, home: Path | None, as_json: bool) -> None:
    """Follow the node's events (documents, statuses, receipts, failures, peers) until Ctrl-C."""
    try:
        for ev in ctx.client(home).events():
            if as_json:
                click.echo(json.dumps(output.humanize(ev), ensure_ascii=False))
            else:
                fields = " ".join(f"{k}={v}" for k, v in ev["data"].items())
                click.echo(f"{output.when(ev['at'])}  {ev['event']}  {fields}")
    except KeyboardInterrupt:
        pass


def _full_id(ctx: Ctx, home: Path | None, doc_id: str) -> str:
    """Accept the 12-digit short form shown in tables, when it is unambiguous."""
    if len(doc_id) == 64:
        return doc_id
    if len(doc_id) < 8:
        raise SchemaError(f"{doc_id!r}: give the document id (64 hex digits, or at least its first 8)")
    matches = [d["id"] for d in ctx.call(home, "documents.list", limit=100_000) if d["id"].startswith(doc_id.lower())]
    if len(matches) != 1:
        raise SchemaError(f"{doc_id!r} matches {len(matches)} documents here; give more digits")
    return str(matches[0])


# --- inspecting a node ---------------------------------------------------------------------------


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


def main() -> None:
    cli()
