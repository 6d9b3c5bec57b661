"""Commands that need no running node: the authority's keys and directory, a node's home."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from identity.directory import DirectoryDelta, load_chain, read_chain_file
from identity.directory_view import directory_view
from identity.home import Home
from identity.keys import AuthorityPublic, SigningKey, load_authority_public, save_authority
from identity.provision import (
    DEFAULT_NETWORK,
    add_join_requests,
    create_node_home,
    extend_directory_file,
    load_authority,
    now_ms,
)
from identity.psk import generate_psk, save_psk_file
from protocol import ipc
from protocol.agency import AgencyCode, parse_agency_list
from protocol.config import NodeConfig
from protocol.envelope import check_network
from protocol.errors import DirectoryError, SchemaError

from . import output
from .context import Ctx, code_arg, home_option, json_option, pass_ctx


def register(cli: click.Group) -> None:
    @cli.group()
    def authority() -> None:
        """The network authority's key (it signs the directory)."""

    @authority.command("init")
    @click.option(
        "--out",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory for authority.key and authority.pub.",
    )
    @click.option("--network", default=DEFAULT_NETWORK, show_default=True, help="Network id every node and directory must share.")
    def authority_init(out: Path, network: str) -> None:
        """Create the authority key pair: OUT/authority.key (0600, keep offline) and OUT/authority.pub."""
        try:
            check_network(network)
        except SchemaError as exc:
            raise click.BadParameter(exc.detail, param_hint="--network") from None
        out.mkdir(parents=True, exist_ok=True)
        secret, public = save_authority(out, SigningKey.generate(os.urandom), network)
        click.echo(
            f"authority key for network {network!r}:\n"
            f"  {secret}  (secret, 0600: keep it offline)\n  {public}  (give it to every node)"
        )

    @authority.command("psk")
    @click.option(
        "--out",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Key file to create, e.g. /secure/auth/swarm.key (never overwritten).",
    )
    def authority_psk(out: Path) -> None:
        """Create the network's private-network key (libp2p PSK v1 file, 0600): give it to every node (truc init --psk-file)."""
        save_psk_file(out, generate_psk(os.urandom))
        click.echo(
            f"{out}: private-network key (libp2p PSK v1, secret, 0600)\n"
            f"  give it to every node operator over a confidential channel: truc init ... --psk-file {out.name}\n"
            "  any libp2p implementation reads this file (go-libp2p swarm.key, js-libp2p @libp2p/pnet)"
        )

    @cli.command()
    @click.option(
        "--home", required=True, type=click.Path(file_okay=False, path_type=Path), envvar="TRUC_HOME", help="New node home."
    )
    @click.option(
        "--code", "codes", required=True, multiple=True, callback=code_arg, help="Agency hosted here; repeat for sub-units."
    )
    @click.option(
        "--name", "names", multiple=True, help="CODE=NAME for the join request (default: from the 2019 list, else the code)."
    )
    @click.option(
        "--authority",
        "authority_pub",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The authority.pub to pin.",
    )
    @click.option(
        "--listen", multiple=True, default=("/ip4/0.0.0.0/tcp/4001",), show_default=True, help="libp2p listen multiaddr."
    )
    @click.option("--announce", multiple=True, help="Address peers should dial (default: the listen addresses).")
    @click.option("--bootstrap", multiple=True, help="Peer to dial at start: /ip4/.../tcp/.../p2p/<peer id>.")
    @click.option(
        "--socket",
        "ipc_socket",
        default=NodeConfig.ipc_socket,
        show_default=True,
        help="IPC socket path (systemd: /run/truc/truc.sock).",
    )
    @click.option(
        "--psk-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The network's private-network key file (truc authority psk); copied into the home as swarm.key.",
    )
    def init(
        home: Path,
        codes: tuple[str, ...],
        names: tuple[str, ...],
        authority_pub: Path,
        listen: tuple[str, ...],
        announce: tuple[str, ...],
        bootstrap: tuple[str, ...],
        ipc_socket: str,
        psk_file: Path | None,
    ) -> None:
        """Create a node home: node key, agency keys, config.toml, join-request.cbor (and swarm.key with --psk-file)."""
        code_list = [AgencyCode.parse(c) for c in codes]
        peer_id, addrs = create_node_home(
            home, code_list, _names(names), authority_pub, listen, announce, bootstrap, ipc_socket=ipc_socket, psk_file=psk_file
        )
        click.echo(peer_id)
        click.echo(
            f"created {home}: node key, keys for {', '.join(codes)}, config.toml\n"
            f"next: send {Home(home).join_request} to the network authority (truc directory add), "
            f"put the directory it returns at {Home(home).directory}, then: truc run --home {home}",
            err=True,
        )
        if psk_file is None:
            click.echo(
                "note: no private-network key (--psk-file): anyone who reaches the port can attempt a connection; "
                "only directory members are let in after the Noise handshake",
                err=True,
            )
        if not addrs:
            click.echo(
                "note: the join request lists no address (listening on 0.0.0.0); pass --announce /ip4/<your ip>/tcp/4001",
                err=True,
            )

    @cli.group()
    def directory() -> None:
        """The signed directory: create and extend it (authority), show and look up (anyone)."""

    @directory.command("add")
    @click.option(
        "--authority",
        "auth_dir",
        required=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Directory with authority.key.",
    )
    @click.option(
        "--directory",
        "dir_file",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Directory file to create or extend.",
    )
    @click.option("--valid-days", type=click.IntRange(1, 3650), default=30, show_default=True, help="Validity of the new serial.")
    @click.option(
        "--names",
        "names_csv",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Agency list CSV (code,name,group,evidence) for names.",
    )
    @click.option(
        "--move",
        "allow_move",
        is_flag=True,
        help="Allow a request to move an agency already listed to another node or to new keys.",
    )
    @click.argument("requests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def directory_add(
        auth_dir: Path,
        dir_file: Path,
        valid_days: int,
        names_csv: Path | None,
        allow_move: bool,
        requests: tuple[Path, ...],
    ) -> None:
        """List the nodes and agencies of join REQUEST files under a new serial.

        An agency already listed on another node (or with other keys) is only
        moved with --move: its documents then go to the new node, encrypted
        to the new keys, and what its old keys sign is refused.
        """
        names = {r.code: r.name for r in parse_agency_list(names_csv.read_text("utf-8"))} if names_csv else {}
        res = add_join_requests(auth_dir, dir_file, list(requests), valid_days=valid_days, names=names, allow_move=allow_move)
        click.echo(
            f"{dir_file}: serial {res.serial}, {res.agencies} agencies on {res.nodes} nodes added or updated, "
            f"valid {valid_days} days"
        )
        for move in res.moves:
            click.echo(f"  {move.describe()}")

    @directory.command("revoke")
    @click.option("--authority", "auth_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--directory", "dir_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--code", required=True, callback=code_arg, help="Agency whose signing keys are revoked.")
    @click.option("--valid-days", type=click.IntRange(1, 3650), default=30, show_default=True)
    def directory_revoke(auth_dir: Path, dir_file: Path, code: str, valid_days: int) -> None:
        """Revoke every signing key of an agency (a stolen or lost key) under a new serial."""
        key, network = load_authority(auth_dir)
        current = load_chain(read_chain_file(dir_file), AuthorityPublic(key.public, network))
        rec = current.agencies.get(AgencyCode.parse(code))
        if rec is None:
            raise DirectoryError(f"{code} is not in {dir_file}")
        delta = DirectoryDelta(revoke=tuple((k.kid, now_ms()) for k in rec.signing_keys if k.kid not in current.revoked))
        serial = extend_directory_file(dir_file, key, network, delta, valid_days)
        click.echo(
            f"{dir_file}: serial {serial}, revoked {len(delta.revoke)} key(s) of {code}; "
            f"publish it: truc directory publish {dir_file}"
        )

    @directory.command("renew")
    @click.option("--authority", "auth_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--directory", "dir_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--valid-days", type=click.IntRange(1, 3650), default=30, show_default=True)
    def directory_renew(auth_dir: Path, dir_file: Path, valid_days: int) -> None:
        """Extend the directory's validity (an empty delta under a new serial)."""
        key, network = load_authority(auth_dir)
        serial = extend_directory_file(dir_file, key, network, DirectoryDelta(), valid_days)
        click.echo(f"{dir_file}: serial {serial}, valid {valid_days} more days")

    @directory.command("show")
    @home_option
    @click.option(
        "--directory",
        "dir_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Read this file instead of asking the node.",
    )
    @click.option(
        "--authority-pub",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Verify the file's signatures with this key.",
    )
    @json_option
    @pass_ctx
    def directory_show(ctx: Ctx, home: Path | None, dir_file: Path | None, authority_pub: Path | None, as_json: bool) -> None:
        """The directory: serial, validity, agencies and nodes."""
        data = _offline_directory(dir_file, authority_pub) if dir_file is not None else ctx.call(home, "directory.show")
        output.show(data, as_json, _print_directory)

    @directory.command("lookup")
    @home_option
    @click.argument("code", callback=code_arg)
    @json_option
    @pass_ctx
    def directory_lookup(ctx: Ctx, home: Path | None, code: str, as_json: bool) -> None:
        """One agency: name, parent, hosting node and its addresses, keys, sub-units."""
        output.show(ctx.call(home, "directory.lookup", code=code), as_json, _print_agency)

    @directory.command("publish")
    @home_option
    @click.argument("dir_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @pass_ctx
    def directory_publish(ctx: Ctx, home: Path | None, dir_file: Path) -> None:
        """Hand a newer directory file to the running node; it applies and gossips the new serials."""
        size = dir_file.stat().st_size
        if size <= ipc.MAX_FRAME_BYTES // 2:
            res = ctx.call(home, "directory.publish", file=dir_file.read_bytes())
        else:  # a national directory is larger than one frame: stream it
            res = ctx.client(home).call_with_files("directory.publish", {"file": {"size": size}}, {0: dir_file})
        click.echo(f"the node now runs directory serial {res['serial']}")


def _print_directory(data: dict[str, Any]) -> None:
    state = "EXPIRED" if data["expired"] else "valid"
    click.echo(
        f"network {data['network']}  serial {data['serial']}  {state} until {output.when(data['valid_until'])}  "
        f"{data.get('verified', '')}".rstrip()
    )
    output.table([(a["code"], a["name"], a["node"][:20] + "…") for a in data["agencies"]], ["code", "name", "node"])
    output.table(
        [(n["peer_id"], ",".join(n["codes"]), ",".join(n["addrs"])) for n in data["nodes"]], ["node", "hosts", "addresses"]
    )
    if data["revoked"]:
        output.table([(r["kid"], output.when(r["at"])) for r in data["revoked"]], ["revoked key", "since"])


def _print_agency(rec: dict[str, Any]) -> None:
    click.echo(f"{rec['code']} ({rec['short']})  {rec['name']}")
    click.echo(f"  parent    {rec['parent'] or '-'}")
    click.echo(f"  node      {rec['node']}{'  (this node)' if rec['hosted_here'] else ''}")
    for a in rec["node_addrs"]:
        click.echo(f"            {a}")
    for k in rec["signing_keys"]:
        click.echo(
            f"  key       {k['kid']}  valid {output.when(k['not_before'])} .. {output.iso(k['not_after'])}"
            f"{'  REVOKED' if k['revoked'] else ''}"
        )
    if rec["sub_units"]:
        click.echo(f"  sub-units {', '.join(rec['sub_units'])}")


def _names(pairs: tuple[str, ...]) -> dict[AgencyCode, str]:
    out: dict[AgencyCode, str] = {}
    known = _known_names()
    out.update(known)
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r}: expected CODE=NAME", param_hint="--name")
        code, name = pair.split("=", 1)
        out[AgencyCode.parse(code)] = name
    return out


def _known_names() -> dict[AgencyCode, str]:
    path = Path(__file__).resolve().parent.parent / "simnet" / "data" / "agencies-level1.csv"
    try:
        return {r.code: r.name for r in parse_agency_list(path.read_text("utf-8"))}
    except OSError:
        return {}


def _offline_directory(dir_file: Path, authority_pub: Path | None) -> dict[str, Any]:
    chain = read_chain_file(dir_file)
    if authority_pub is not None:
        d = load_chain(chain, load_authority_public(authority_pub))
        verified = "(signatures verified)"
    else:
        d = load_chain(chain, None)
        verified = "(signatures NOT verified: pass --authority-pub FILE)"
    return {**directory_view(d, now=now_ms()), "verified": verified}
