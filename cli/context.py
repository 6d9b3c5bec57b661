"""What the command modules share: the node a command talks to (:class:`Ctx`) and the options spelled once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from identity.home import Home
from protocol.agency import AgencyCode
from protocol.errors import AgencyCodeError, ConfigError

from .client import Client


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
