"""``truc``: the command line of a Trục node.

Admin and integrator commands talk to a running node only through its IPC
socket (cli/client.py); offline commands (keys, the directory file, a node
home) use identity/ and protocol/ directly. The documents commands are here;
the others in cli/offline.py, cli/inspection.py and cli/store_tools.py, each using
cli/context.py for the node a command talks to. Errors become one line and an
exit code here, in one place (:class:`TrucGroup`); the code is the error
type's ``exit_code`` (the rule is in protocol/errors.py):

    0 ok · 1 refused or failed · 2 fix the input, configuration, keys or store first · 3 no node is running
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click

from protocol.errors import AccessDeniedError, SchemaError, TrucError, find_truc_error

from . import edxml_tools, inspection, offline, output, sdk_tools, store_tools
from .client import file_entry
from .context import Ctx, code_arg, home_option, json_option, pass_ctx

__all__ = ["Ctx", "cli", "main"]  # Ctx: tests hand commands a client through it


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
      edxml check/send/export/statuses   the national edXML packages, as they are
      sdk enable/add-system/systems      the national SDK's HTTP calls, answered by this node
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


offline.register(cli)  # authority, node home, directory file
cli.add_command(store_tools.store_group)
cli.add_command(edxml_tools.edxml_group)
cli.add_command(sdk_tools.sdk_group)
for command in inspection.COMMANDS:
    cli.add_command(command)


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
        ["id", "from", "to", "received", "acked", "số/ký hiệu", "subject"],
        lambda i: (
            output.short(i["id"]),
            i["from"],
            i["to"],
            output.when(i["received_at"]),
            "yes" if i["acked_at"] else "no",
            _number(i),
            i["subject"][:50],
        ),
    )


def _number(item: dict[str, Any]) -> str:
    """số/ký hiệu as written on the document ("" when it has neither)."""
    return "/".join(x for x in (item.get("number", ""), item.get("notation", "")) if x)


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
    if t.get("document_id") and t["document_id"] != t["id"]:  # a document with no số or date is named by its id
        click.echo(f"  edXML DocumentId {t['document_id']}")
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


def main() -> None:
    cli()
