"""``truc edxml``: edXML packages (QCVN 102:2016) — check one offline, send one, export a document, read its statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from protocol.edxml import Package, PackageRead, Reader
from protocol.errors import EXIT_REFUSED, TrucError

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
      truc edxml export ID --statuses   the status packages about it, one file each, in order
      truc edxml statuses ID         list the statuses about a document (as status packages with -o)
    """


@edxml_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@json_option
def check(files: tuple[Path, ...], as_json: bool) -> None:
    """Read each FILE as the node would (streamed, every limit applied): one line per file, exit 1 if any is refused.

    \b
    A line is "FILE: ok" with the kind, from, to, DocumentId, attachments and
    warnings, or "FILE: refused" with the error code and why. --json: a list
    of {"file", "ok", ...what the package says | "error": {"code", "message"}}.
    """
    results = [_check_one(f) for f in files]
    output.show(results, as_json, _print_checked)
    if not all(r["ok"] for r in results):
        raise SystemExit(EXIT_REFUSED)


def _print_checked(results: list[dict[str, Any]]) -> None:
    for r in results:
        click.echo(_check_line(r))


def _check_one(file: Path) -> dict[str, Any]:
    try:
        return {"file": str(file), "ok": True, **_summary(_read(file))}
    except TrucError as exc:
        return {"file": str(file), "ok": False, "error": {"code": exc.code, "message": exc.message}}
    except OSError as exc:
        return {"file": str(file), "ok": False, "error": {"code": "file", "message": f"cannot read it: {exc.strerror}"}}


def _read(file: Path) -> Package:
    reader = Reader()
    with open(file, "rb") as f:
        while chunk := f.read(READ_BYTES):
            reader.feed(chunk)
    for ev in reader.close():
        if isinstance(ev, PackageRead):
            return ev.package
    raise AssertionError("a reader that closes without error has read a package")


def _check_line(r: dict[str, Any]) -> str:
    if not r["ok"]:
        return f"{r['file']}: refused {r['error']['code']}: {r['error']['message']}"
    warnings = "".join(f"; warning {field}: {what}" for field, what in r["warnings"])
    if r["kind"] == "status":
        return f"{r['file']}: ok status {r['code']} from {r['from']} to {r['to']} DocumentId {r['document_id']}{warnings}"
    files = ", ".join(f"{a['name']} {output.size(a['size'])}{' zipped' if a['zipped'] else ''}" for a in r["attachments"])
    business = f" {r['business']} of {r['target']}" if r["business"] != "new" else ""
    return (
        f"{r['file']}: ok edoc{business} from {r['from']} to {','.join(r['to'])} DocumentId {r['document_id']}, "
        f"{len(r['attachments'])} attachment(s){': ' + files if files else ''}{warnings}"
    )


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
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="The file to write (default ID.edxml here); with --statuses, the directory (default ID-statuses).",
)
@click.option("--as", "code", callback=code_arg, help="The hosted agency it is for (when several are hosted here).")
@click.option(
    "--statuses",
    "with_statuses",
    is_flag=True,
    help="Instead: the status packages about ID addressed to that agency, one file each, numbered in order.",
)
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
    ctx: Ctx,
    doc_id: str,
    out: Path | None,
    code: str | None,
    with_statuses: bool,
    zip_mode: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Write a received document as an edXML package (checked against its SHA-256), or its status packages.

    \b
      truc edxml export ID --as CODE --out FILE              the package as CODE's software receives it
      truc edxml export ID --as CODE --statuses --out DIR    the status packages about ID for CODE, in order
    """
    if with_statuses:
        found = _statuses(ctx, home, doc_id, code, 0, out or Path(f"{doc_id}-statuses"))
        output.show(found, as_json, _print_statuses)
        return
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
    output.show(_statuses(ctx, home, doc_id, code, since, out), as_json, _print_statuses)


def _statuses(ctx: Ctx, home: Path | None, doc_id: str, code: str | None, since: int, out: Path | None) -> list[dict[str, Any]]:
    """Every status package about ``doc_id`` (all pages), written to ``out`` as NN-CODE-ID.edxml when given."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"id": doc_id, "since": since, "limit": 1000}
    if code is not None:
        params["code"] = code
    while True:
        page = ctx.call(home, "edxml.statuses", **params)
        found += page["statuses"]
        if not page["more"] or not page["statuses"]:
            break
        params["since"] = page["statuses"][-1]["at"]
    if out is not None:
        if out.exists() and not out.is_dir():
            raise click.UsageError(f"{out} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(found, 1):
        if out is not None:
            path = out / f"{i:02d}-status-{s['code']}-{s['id'][:12]}.edxml"
            path.write_bytes(s["package"])
            s["path"] = str(path)
        s["package"] = len(s["package"])
    return found


def _print_statuses(found: list[dict[str, Any]]) -> None:
    for s in found:
        click.echo(f"{output.when(s['at'])}  {s['code']}  from {s['from']}  {s.get('path', '')}")
