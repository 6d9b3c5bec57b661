"""``truc edxml``: edXML packages (QCVN 102:2016) — check one offline, send one, export a document, read its statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from protocol.edxml import Package, PackageRead, Reader

from . import output
from .context import Ctx, code_arg, home_option, json_option, pass_ctx

READ_BYTES = 1 << 16


@click.group("edxml")
def edxml_group() -> None:
    """edXML packages, as agencies' document systems make them (docs/edxml.md).

    \b
      truc edxml check FILE          read a package here, no node needed: what it says, warnings, errors
      truc edxml send FILE           send it through the node as it is (an edoc or a status package)
      truc edxml export ID           a received document as a package, for the agency's software
      truc edxml statuses ID         the statuses about a document, as status packages
    """


@edxml_group.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@json_option
def check(file: Path, as_json: bool) -> None:
    """Read FILE as the node would (streamed, every limit applied) and say what it is; exit 2 if it is refused."""
    reader = Reader()
    package: Package | None = None
    with open(file, "rb") as f:
        while chunk := f.read(READ_BYTES):
            reader.feed(chunk)
    for ev in reader.close():
        if isinstance(ev, PackageRead):
            package = ev.package
    assert package is not None
    output.show(_summary(package), as_json, _print_summary)


def _summary(p: Package) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": p.kind.value, "warnings": [[w.field, w.what] for w in p.warnings]}
    if p.edoc is not None:
        e = p.edoc
        out |= {
            "from": e.sender.organ_id,
            "to": [r.organ_id for r in e.recipients],
            "document_id": e.document_id,
            "number": e.code_number,
            "notation": e.code_notation,
            "date": e.promulgation_date,
            "subject": e.subject,
            "business": e.business.doc_type.name.lower(),
            "target": e.business.document_id,
            "trace": [[t.organ_id, t.timestamp] for t in e.trace_headers],
            "attachments": [
                {"name": a.name, "size": a.size, "type": a.media_type, "zipped": bool(a.wrapper), "sha256": a.sha256.hex()}
                for a in p.attachments
            ],
        }
    if p.status is not None:
        s = p.status
        out |= {
            "from": s.sender.organ_id,
            "to": s.response_for.organ_id,
            "document_id": s.response_for.document_id,
            "code": s.status_code,
            "description": s.description,
            "timestamp": s.timestamp,
        }
    return out


def _print_summary(s: dict[str, Any]) -> None:
    if s["kind"] == "edoc":
        click.echo(f"edoc      {s['document_id']}")
        click.echo(f"from      {s['from']}")
        click.echo(f"to        {', '.join(s['to'])}")
        click.echo(f"số/ký hiệu {s['number']}/{s['notation']}  ngày {s['date']}")
        click.echo(f"subject   {s['subject']}")
        if s["business"] != "new":
            click.echo(f"business  {s['business']} of {s['target']}")
        for a in s["attachments"]:
            zipped = " (in VNPT's zip)" if a["zipped"] else ""
            click.echo(f"file      {a['name']}  {output.size(a['size'])}  {a['type']}{zipped}")
    else:
        click.echo(f"status    {s['code']} from {s['from']} to {s['to']}")
        click.echo(f"document  {s['document_id']}")
        click.echo(f"note      {s['description']}")
    for field, what in s["warnings"]:
        click.echo(f"warning   {field}: {what}")


@edxml_group.command("send")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@home_option
@json_option
@pass_ctx
def send(ctx: Ctx, file: Path, home: Path | None, as_json: bool) -> None:
    """Send the package FILE through the node, unchanged. Sending it again is safe (see docs/ipc.md)."""
    result = ctx.client(home).edxml_submit(file)
    output.show(result, as_json, _print_sent)


def _print_sent(r: dict[str, Any]) -> None:
    again = " (sent before: nothing new)" if r["duplicate"] else ""
    if r["kind"] == "edoc":
        click.echo(f"document {r['id']}  DocumentId {r['document_id']}{again}")
    else:
        click.echo(f"status {r['code']} {r['id']} for document {r['doc']}{again}")
    for field, what in r["warnings"]:
        click.echo(f"warning  {field}: {what}")


@edxml_group.command("export")
@click.argument("doc_id")
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), help="File to write (default ID.edxml here).")
@click.option("--as", "code", callback=code_arg, help="The hosted recipient (when several are hosted here).")
@click.option(
    "--zip",
    "zip_mode",
    type=click.Choice(["as_received", "zip", "raw"]),
    help="Attachments zipped as the sender did, all in VNPT's zip, or none (default: [edxml] zip).",
)
@home_option
@json_option
@pass_ctx
def export(
    ctx: Ctx, doc_id: str, out: Path | None, code: str | None, zip_mode: str | None, home: Path | None, as_json: bool
) -> None:
    """Write a received document as an edXML package (checked against its SHA-256)."""
    result = ctx.client(home).edxml_export(doc_id, out or Path(f"{doc_id}.edxml"), code=code, zip=zip_mode)
    output.show(result, as_json, lambda r: click.echo(f"{r['path']}  {output.size(r['size'])}  DocumentId {r['document_id']}"))


@edxml_group.command("statuses")
@click.argument("doc_id")
@click.option("--as", "code", callback=code_arg, help="The hosted party they are for (when several are hosted here).")
@click.option("--since", type=int, default=0, help="Only statuses after this time (ms since 1970).")
@click.option("-o", "--out", type=click.Path(path_type=Path, file_okay=False), help="Also write each package here.")
@home_option
@json_option
@pass_ctx
def statuses(ctx: Ctx, doc_id: str, code: str | None, since: int, out: Path | None, home: Path | None, as_json: bool) -> None:
    """The statuses about a document as status packages: for its sender, the recipients'; for a recipient, the 13s."""
    params: dict[str, Any] = {"id": doc_id, "since": since, "limit": 1000}
    if code is not None:
        params["code"] = code
    found = ctx.call(home, "edxml.statuses", **params)["statuses"]
    for s in found:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"status-{s['code']}-{s['id'][:12]}.edxml"
            path.write_bytes(s["package"])
            s["path"] = str(path)
        s["package"] = len(s["package"])
    output.show(found, as_json, _print_statuses)


def _print_statuses(found: list[dict[str, Any]]) -> None:
    for s in found:
        click.echo(f"{output.when(s['at'])}  {s['code']}  from {s['from']}  {s.get('path', '')}")
