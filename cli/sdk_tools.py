"""``truc sdk``: let existing document systems call this node as they called the national SDK's adapter (docs/sdk.md).

Offline: these write the home's config.toml and secret files; a running
node picks them up at its next start (``systemctl restart truc``).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from identity import sdk_systems
from identity.home import Home
from protocol.agency import AgencyCode

from . import output
from .context import Ctx, code_arg, home_option, json_option, pass_ctx


@click.group("sdk")
def sdk_group() -> None:
    """The national SDK's HTTP calls (sendEdoc, getReceivedEdocList, ...) answered by this node.

    \b
      truc sdk enable --listen HOST:PORT             turn the listener on ([sdk] in config.toml)
      truc sdk add-system --system-id ID --agency C  allow a document system; prints its secret once
      truc sdk systems                               the allowed systems (no secrets)
    Restart the node for a change to apply.
    """


@sdk_group.command("enable")
@home_option
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where the SDK's calls are answered, e.g. 127.0.0.1:8080.")
@pass_ctx
def enable(ctx: Ctx, home: Path | None, listen: str) -> None:
    """Answer the SDK's calls at http://HOST:PORT/XrdAdapter/adapter/... (writes [sdk] listen)."""
    settings = sdk_systems.enable(ctx.home(home), listen)
    click.echo(f"[sdk] listen = {settings.listen}, base path {settings.base_path}; restart the node to apply")


@sdk_group.command("add-system")
@home_option
@click.option("--system-id", required=True, help="The systemid the document system signs with (its properties file).")
@click.option("--agency", "agencies", multiple=True, required=True, callback=code_arg, help="A hosted agency it acts for.")
@json_option
@pass_ctx
def add_system(ctx: Ctx, home: Path | None, system_id: str, agencies: tuple[str, ...], as_json: bool) -> None:
    """Allow a document system: a new random secret (shown once, kept 0600 under the home) and its config entry."""
    secret, path = sdk_systems.add_system(ctx.home(home), system_id, [AgencyCode.parse(a) for a in agencies], os.urandom)
    if as_json:
        output.emit_json({"system_id": system_id, "secret": secret, "secret_file": str(path)})
        return
    click.echo(f"system {system_id} may act for {', '.join(agencies)}")
    click.echo(f"secret (shown once; also in {path}): {secret}")
    click.echo("restart the node to apply")


@sdk_group.command("systems")
@home_option
@json_option
@pass_ctx
def systems(ctx: Ctx, home: Path | None, as_json: bool) -> None:
    """The systems allowed to call, with the agencies each acts for (never their secrets)."""
    h = Home.load(ctx.home(home))
    rows = [
        {"system_id": s.system_id, "agencies": [str(c) for c in s.agencies], "secret_file": str(h.path(s.secret_file))}
        for s in h.config.sdk.systems
    ]
    headers = ["system", "agencies", "secret file"]
    output.show_rows(rows, as_json, headers, lambda r: [r["system_id"], ", ".join(r["agencies"]), r["secret_file"]])
