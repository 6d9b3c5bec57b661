"""A node home's paths: fixed by the layout, or named by config.toml relative to the home."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity.home import Home
from protocol.agency import AgencyCode
from protocol.config import NodeConfig, render_config
from protocol.errors import ConfigError

G22 = AgencyCode.parse("000.00.00.G22")


def test_paths_named_by_the_config_are_inside_the_home_unless_absolute(tmp_path: Path) -> None:
    cfg = NodeConfig(network="truc-test", codes=(G22,), store="/var/lib/elsewhere/store", psk_file="swarm.key")
    (tmp_path / "config.toml").write_text(render_config(cfg))
    home = Home.load(tmp_path)
    assert home.config.codes == (G22,)
    assert home.store == Path("/var/lib/elsewhere/store")
    assert home.socket == tmp_path / cfg.ipc_socket and home.directory == tmp_path / cfg.directory
    assert home.psk_file == tmp_path / "swarm.key"
    # The private-network key is a secret too: the IPC socket never reads it for a client (not even by a hard link).
    assert home.secret_files == [tmp_path / "node.key", tmp_path / "keys" / f"{G22}.key", tmp_path / "swarm.key"]


def test_the_config_is_read_once_when_first_asked_for(tmp_path: Path) -> None:
    home = Home(tmp_path)
    assert home.node_key == tmp_path / "node.key"  # the fixed paths need no config
    (tmp_path / "config.toml").write_text(render_config(NodeConfig(network="truc-test", codes=(G22,))))
    assert home.psk_file is None
    (tmp_path / "config.toml").write_text("not toml [")
    assert home.config.network == "truc-test"


def test_a_directory_without_config_toml_is_a_config_error_saying_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.toml does not exist; create a node home with: truc init"):
        Home.load(tmp_path)
