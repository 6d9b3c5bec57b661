"""The authority's directory tools refuse what would silently change who hosts an agency, or apply nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from identity.directory import load_chain, read_chain_file
from identity.keys import load_authority_public, load_node_key
from protocol.agency import AgencyCode
from tests.procs import invoke, provision, running

G22, H01 = "000.00.00.G22", "000.00.00.H01"


def truc(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def init_home(tmp: Path, name: str, auth: Path, *codes: str) -> Path:
    home = tmp / name
    args = ["init", "--home", str(home), "--authority", str(auth / "authority.pub"), "--listen", "/ip4/127.0.0.1/tcp/4999"]
    for c in codes:
        args += ["--code", c]
    invoke(*args)
    return home


@pytest.mark.timeout(60)
def test_directory_add_refuses_to_move_a_hosted_agency_without_move(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    invoke("authority", "init", "--out", str(auth), "--network", "truc-test")
    first = init_home(tmp_path, "first", auth, G22)
    # Another node (a new machine, or someone else's) claims the same agency with its own keys.
    second = init_home(tmp_path, "second", auth, G22, H01)
    dir_file = auth / "directory.cbor"
    common = ["directory", "add", "--authority", str(auth), "--directory", str(dir_file)]
    invoke(*common, str(first / "join-request.cbor"))
    before = dir_file.read_bytes()
    old_peer = load_node_key(first / "node.key").peer_id
    new_peer = load_node_key(second / "node.key").peer_id

    code, out = truc(*common, str(second / "join-request.cbor"))
    assert code == 2, out
    assert out.count("\n") == 1 and "Traceback" not in out
    assert G22 in out and old_peer in out and new_peer in out and "--move" in out
    assert "keys" in out and "node" in out
    assert dir_file.read_bytes() == before, "nothing was written"

    code, out = truc(*common, "--move", str(second / "join-request.cbor"))
    assert code == 0, out
    assert f"moved {G22} from node {old_peer} to node {new_peer}" in out and "new signing key" in out
    d = load_chain(read_chain_file(dir_file), load_authority_public(auth / "authority.pub"))
    assert d.agencies[AgencyCode.parse(G22)].node == new_peer and d.serial == 2

    # The same node asking again (an address change) is not a move and needs no flag.
    code, out = truc(*common, str(second / "join-request.cbor"))
    assert code == 0 and "moved" not in out, out


@pytest.mark.timeout(60)
def test_directory_add_refuses_two_requests_claiming_one_agency(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    invoke("authority", "init", "--out", str(auth), "--network", "truc-test")
    a = init_home(tmp_path, "a", auth, G22)
    b = init_home(tmp_path, "b", auth, G22)
    dir_file = auth / "directory.cbor"
    code, out = truc(
        "directory", "add", "--authority", str(auth), "--directory", str(dir_file),
        str(a / "join-request.cbor"), str(b / "join-request.cbor"),
    )  # fmt: skip
    assert code == 2 and G22 in out and "both" in out, out
    assert not dir_file.exists()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_publishing_a_directory_signed_by_another_authority_fails(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22]})
    # A second authority (another network's, or a forger's) with a file that looks newer.
    other = tmp_path / "other-auth"
    invoke("authority", "init", "--out", str(other), "--network", "truc-test")
    forged = other / "directory.cbor"
    for serial in range(3):  # serial 3: newer than the node's 1
        shutil.copy(homes["g22"] / "join-request.cbor", tmp_path / f"req{serial}.cbor")
        invoke("directory", "add", "--authority", str(other), "--directory", str(forged), str(tmp_path / f"req{serial}.cbor"))
    with running(homes) as nodes:
        code, out = truc("directory", "publish", "--home", str(homes["g22"]), str(forged))
        assert code != 0, out
        assert "not valid" in out and "not the pinned network authority" in out and "now runs" not in out
        assert nodes["g22"].call("node.info")["directory"]["serial"] == 1
        # An old file of the right authority is fine: nothing newer to apply.
        code, out = truc("directory", "publish", "--home", str(homes["g22"]), str(homes["g22"] / "directory.cbor"))
        assert code == 0 and "serial 1" in out, out


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_directory_show_of_a_file_is_what_the_node_running_it_shows(tmp_path: Path) -> None:
    homes = provision(tmp_path, {"g22": [G22], "h01": [H01]})
    home = homes["g22"]
    code, out = truc(
        "directory", "show", "--json", "--directory", str(home / "directory.cbor"), "--authority-pub", str(home / "authority.pub")
    )
    assert code == 0, out
    offline = json.loads(out)
    assert offline.pop("verified") == "(signatures verified)"
    with running({"g22": home}):
        code, out = truc("directory", "show", "--json", "--home", str(home))
    assert code == 0, out
    assert offline == json.loads(out)
    assert [a["code"] for a in offline["agencies"]] == [G22, H01] and len(offline["nodes"]) == 2
