"""``truc``: the command line of a Trục node."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import click


def _version() -> str:
    try:
        return version("truc")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="truc")
def cli() -> None:
    """Trục: a peer-to-peer relay for official documents between agencies."""


def main() -> None:
    cli()
