"""The document systems a node lets call the national SDK's HTTP API: ``[sdk]`` in config.toml and their secrets.

``truc sdk enable`` and ``truc sdk add-system`` (cli/sdk_tools.py) write
them; ``truc run`` reads them (node/daemon.py). A secret is random, shown
once, and kept in its own 0600 file under the home (``sdk/ID.secret``):
the HMAC key of the SDK's signature is its text, as in the system's
properties file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from protocol.agency import AgencyCode
from protocol.config import SdkSettings, SdkSystem, parse_config, render_config
from protocol.errors import ConfigError, KeyFileError

from .home import Home
from .keys import read_toml_file, write_toml_file

SECRET_TYPE = "truc-sdk-secret-v1"
SECRET_BYTES = 32
SDK_DIR = "sdk"


def secret_file_name(system_id: str) -> str:
    return f"{SDK_DIR}/{system_id}.secret"


def _rewrite(home: Home, sdk: SdkSettings) -> None:
    cfg = dataclasses.replace(home.config, sdk=sdk)
    text = render_config(cfg)
    parse_config(text, str(home.config_file))  # what is written reads back (raises ConfigError naming the key)
    tmp = home.config_file.with_name(home.config_file.name + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(home.config_file)


def enable(root: Path, listen: str) -> SdkSettings:
    """Set ``[sdk] listen`` (the listener is on at the node's next start); raises ConfigError."""
    home = Home.load(root)
    sdk = dataclasses.replace(home.config.sdk, listen=listen)
    _rewrite(home, sdk)
    return sdk


def add_system(root: Path, system_id: str, agencies: list[AgencyCode], rng: Callable[[int], bytes]) -> tuple[str, Path]:
    """A new system: its secret (returned once, and written 0600) and its ``[[sdk.systems]]`` table.

    Raises ConfigError (a system of that id exists, an agency not hosted,
    a bad id) before anything is written.
    """
    home = Home.load(root)
    sdk = home.config.sdk
    if any(s.system_id == system_id for s in sdk.systems):
        raise ConfigError(f"{home.config_file}: [[sdk.systems]] {system_id} exists already")
    entry = SdkSystem(system_id, secret_file_name(system_id), tuple(agencies))
    sdk = dataclasses.replace(sdk, systems=(*sdk.systems, entry))
    parse_config(render_config(dataclasses.replace(home.config, sdk=sdk)), str(home.config_file))
    secret = rng(SECRET_BYTES).hex()
    path = home.path(entry.secret_file)
    write_toml_file(
        path,
        {"type": SECRET_TYPE, "system_id": system_id, "secret": secret},
        comment=f"The secret of document system {system_id} for the SDK's signed calls (its properties file's secretkey).",
        secret=True,
    )
    _rewrite(home, sdk)
    return secret, path


def load_secret(path: Path, system_id: str) -> bytes:
    """The HMAC key in a system's secret file; raises KeyFileError (missing, open to others, another system's)."""
    fields = read_toml_file(path, secret=True, expect_type=SECRET_TYPE)
    if fields.get("system_id") != system_id:
        raise KeyFileError(f"{path} holds the secret of {fields.get('system_id')!r:.80}, not {system_id}")
    secret = fields.get("secret")
    if not isinstance(secret, str) or len(secret) < 16:
        raise KeyFileError(f"{path}: secret is missing or shorter than 16 characters")
    return secret.encode("utf-8")
