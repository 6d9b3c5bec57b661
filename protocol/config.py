"""The node's configuration file (``HOME/config.toml``): schema, defaults, errors.

Pure: :func:`parse_config` takes the file's text and its name (for messages)
and returns a validated :class:`NodeConfig`, or raises ConfigError naming the
file, the section and the key. :func:`render_config` writes the file
``truc init`` creates, with a comment per key.

Why one module: every key is declared, parsed with its message and
rendered with its comment here, so a key cannot be read without being
written back (``truc sdk`` rewrites the file through render_config).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .agency import AgencyCode, parse_shard
from .envelope import check_network
from .errors import AgencyCodeError, ConfigError, SchemaError

_MULTIADDR = re.compile(r"^/(ip4|ip6|dns4|dns6|dns)/[^/]+/tcp/\d{1,5}(/p2p/[1-9A-HJ-NP-Za-km-z]+)?$")
_HOSTPORT = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|0\.0\.0\.0|[0-9.]+):(\d{1,5})$")


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 1.0
    cap_s: float = 300.0
    jitter: float = 0.2  # +/- fraction of each delay
    receipt_timeout_s: float = 600.0  # re-send a document this long after a transport ack without receipt
    give_up_days: float = 30.0  # then the delivery is marked failed


@dataclass(frozen=True)
class ClientRule:
    """One ``[[ipc.clients]]`` table: a local account (or group) and the agencies it may act for.

    ``user`` and ``group`` are names or numeric ids as text; exactly one is
    set. ``admin`` adds the node-wide methods (peers, queues, stats,
    directory.publish, every document). Names are resolved by the daemon.
    """

    user: str = ""
    group: str = ""
    codes: tuple[AgencyCode, ...] = ()
    admin: bool = False


@dataclass(frozen=True)
class IpcSettings:
    """The ``[ipc]`` section: limits of the integrator socket and who may use it (docs/ipc.md §1)."""

    max_connections: int = 64
    idle_timeout_s: float = 300.0  # a connection with nothing in flight and no subscription is closed
    frame_timeout_s: float = 30.0  # a frame (or an attachment's next chunk) must arrive within this
    send_timeout_s: float = 60.0  # a client that does not read its answers for this long is dropped
    read_paths: tuple[str, ...] = ()  # directories whose files ``submit`` may name by path; none = off
    spool_mb: float = 1024.0  # attachments being received, in total, waiting to be sealed
    clients: tuple[ClientRule, ...] = ()  # none: every account that can open the socket acts for every agency


@dataclass(frozen=True)
class SdkSystem:
    """One ``[[sdk.systems]]`` table: a document system calling the SDK's HTTP API (docs/sdk.md §2)."""

    system_id: str
    secret_file: str  # relative to the home; 0600, written by `truc sdk add-system`
    agencies: tuple[AgencyCode, ...]  # hosted agencies it acts for: sendEdoc's from, whose documents it lists


@dataclass(frozen=True)
class SdkSettings:
    """The ``[sdk]`` section: the HTTP listener for the national SDK's calls (off while ``listen`` is empty)."""

    listen: str = ""
    base_path: str = "/XrdAdapter/adapter"
    window_s: float = 300.0  # a signed timestamp further than this from the node's clock is refused
    utc_offset_min: int = 420  # the SDK writes local wall time without a zone: Vietnam's UTC+7
    rate_per_s: float = 20.0  # calls per second per system, on average
    burst: int = 60  # calls a system may make at once above the average
    max_connections: int = 64
    header_timeout_s: float = 10.0  # a request's line and headers must arrive within this
    read_timeout_s: float = 30.0  # each piece of a body must arrive within this
    systems: tuple[SdkSystem, ...] = ()


@dataclass(frozen=True)
class NodeConfig:
    network: str
    codes: tuple[AgencyCode, ...]
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    authority: str = "authority.pub"
    directory: str = "directory.cbor"
    ipc_socket: str = "truc.sock"
    store: str = "store"
    log_level: str = "info"
    log_format: str = "auto"
    metrics_listen: str = ""
    psk: str = ""  # deprecated: the network key as 64 hex digits inline (before psk_file)
    psk_file: str = ""  # the network's libp2p PSK v1 key file (identity/psk.py); empty with psk empty = no private network
    psk_also_accept: tuple[str, ...] = ()  # key files also accepted from peers dialling with them (a key rotation)
    max_document_mb: float = 200.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    relay_shards: tuple[str, ...] | None = None  # None = every shard in the directory
    keep_after_receipt_h: float = 24.0
    fetch_relayed_blocks: bool = False
    sync_interval_s: float = 30.0
    sync_fanout: int = 3
    sync_parallel: int = 8  # sync rounds in flight at once (a node starting among 1,000 peers queues the rest)
    gossip_flush_ms: float = 20.0
    gossip_batch_kb: int = 256
    push_batch: int = 64
    direct_push: bool = True  # False: every envelope goes by gossip only (measurements; networks without direct reachability)
    ipc: IpcSettings = field(default_factory=IpcSettings)
    edxml_zip: str = "as_received"  # how exported edXML packages carry attachments: as_received, zip, raw
    sdk: SdkSettings = field(default_factory=SdkSettings)

    @property
    def max_document_bytes(self) -> int:
        return int(self.max_document_mb * 1024 * 1024)


_SECTIONS: dict[str, set[str]] = {
    "node": {
        "network", "codes", "listen", "bootstrap", "authority", "directory", "ipc_socket",
        "store", "log_level", "log_format", "metrics_listen", "psk", "psk_file", "psk_also_accept",
    },
    "limits": {"max_document_mb"},
    "retry": {"initial_s", "cap_s", "jitter", "receipt_timeout_s", "give_up_days"},
    "relay": {"shards", "keep_after_receipt_h", "fetch_blocks"},
    "sync": {"interval_s", "fanout", "parallel"},
    "gossip": {"flush_ms", "batch_kb", "push_batch", "direct_push"},
    "ipc": {
        "max_connections", "idle_timeout_s", "frame_timeout_s", "send_timeout_s", "read_paths", "spool_mb", "clients",
    },
    "edxml": {"zip"},
    "sdk": {
        "listen", "base_path", "window_s", "utc_offset_min", "rate_per_s", "burst", "max_connections",
        "header_timeout_s", "read_timeout_s", "systems",
    },
}  # fmt: skip
_SYSTEM_KEYS = {"system_id", "secret_file", "agencies"}
_SYSTEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # protocol/sdk.py SYSTEM_ID
_BASE_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)*$")
_CLIENT_KEYS = {"user", "group", "codes", "admin"}
EDXML_ZIP_MODES = ("as_received", "zip", "raw")  # protocol.edxml.ZipMode's values
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$|^\d{1,10}$")


class _Reader:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, section: str, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{section}] {key}: {why}")

    def get(self, section: str, key: str, default: Any) -> Any:
        return self.data.get(section, {}).get(key, default)

    def number(
        self, section: str, key: str, default: float, *, lo: float = 0.0, hi: float = 1e12, strict_lo: bool = False
    ) -> float:
        v = self.get(section, key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(section, key, f"expected a number, got {v!r}")
        if v < lo or v > hi or (strict_lo and v == lo):
            raise self.fail(section, key, f"{v} is outside the allowed range {'(' if strict_lo else '['}{lo}, {hi}]")
        return float(v)

    def integer(self, section: str, key: str, default: int, *, lo: int, hi: int) -> int:
        v = self.get(section, key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(section, key, f"expected a whole number, got {v!r}")
        if not lo <= v <= hi:
            raise self.fail(section, key, f"{v} is outside {lo}..{hi}")
        return v

    def text(self, section: str, key: str, default: str, *, choices: tuple[str, ...] | None = None) -> str:
        v = self.get(section, key, default)
        if not isinstance(v, str):
            raise self.fail(section, key, f"expected text, got {v!r}")
        if choices is not None and v not in choices:
            raise self.fail(section, key, f"{v!r} is not one of {', '.join(choices)}")
        return v

    def boolean(self, section: str, key: str, default: bool) -> bool:
        v = self.get(section, key, default)
        if not isinstance(v, bool):
            raise self.fail(section, key, f"expected true or false, got {v!r}")
        return v

    def tables(self, section: str, key: str, known: set[str]) -> list[tuple[str, _Reader]]:
        """``[[section.key]]`` tables: (where, a reader of the table as section "t"), unknown keys refused."""
        raw = self.get(section, key, [])
        if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
            raise self.fail(section, key, f"expected [[{section}.{key}]] tables")
        out = []
        for i, t in enumerate(raw):
            where = f"{key}[{i}]"
            unknown = set(t) - known
            if unknown:
                known_text = ", ".join(sorted(known))
                raise self.fail(section, where, f"unknown key(s) {', '.join(sorted(unknown))} (known: {known_text})")
            out.append((where, _Reader({"t": t}, self.source)))
        return out

    def texts(
        self, section: str, key: str, default: tuple[str, ...], check: Callable[[str], object] | None = None
    ) -> tuple[str, ...]:
        v = self.get(section, key, list(default))
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.fail(section, key, f"expected a list of texts, got {v!r}")
        if check is not None:
            for x in v:
                try:
                    check(x)
                except (ConfigError, SchemaError, AgencyCodeError, ValueError) as exc:
                    why = exc.detail if isinstance(exc, ConfigError | SchemaError | AgencyCodeError) else str(exc)
                    raise self.fail(section, key, f"{x!r}: {why}") from None
        return tuple(v)


def _check_multiaddr(text: str) -> None:
    if not _MULTIADDR.match(text):
        raise ValueError("expected a TCP multiaddr such as /ip4/10.0.0.1/tcp/4001 (optionally ending in /p2p/<peer id>)")


def _check_hostport(text: str) -> None:
    m = _HOSTPORT.match(text)
    if not m or not 0 <= int(m.group(2)) <= 65535:
        raise ValueError("expected HOST:PORT such as 127.0.0.1:9464")


def parse_config(text: str, source: str) -> NodeConfig:
    """Parse and validate ``config.toml``; raises ConfigError naming ``source``, section and key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    for section, value in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {section} must be a [section]")
        for key in value:
            if key not in _SECTIONS[section]:
                raise ConfigError(f"{source}: [{section}] {key}: unknown key (known: {', '.join(sorted(_SECTIONS[section]))})")
    r = _Reader(data, source)
    if "network" not in data.get("node", {}):
        raise r.fail("node", "network", "missing; it must match the network id of the authority and directory")
    try:
        network = check_network(r.text("node", "network", ""))
    except SchemaError as exc:
        raise r.fail("node", "network", exc.detail) from None
    codes = tuple(AgencyCode.parse(c) for c in r.texts("node", "codes", (), AgencyCode.parse))
    if not codes:
        raise r.fail("node", "codes", "a node hosts at least one agency code")
    if len(set(codes)) != len(codes):
        raise r.fail("node", "codes", "a code is listed twice")
    listen = r.texts("node", "listen", NodeConfig.listen, _check_multiaddr)
    if not listen:
        raise r.fail("node", "listen", "at least one listen address is needed")
    psk = r.text("node", "psk", "")
    if psk and not re.fullmatch(r"[0-9a-f]{64}", psk):
        raise r.fail("node", "psk", "a private-network key is 64 lower-case hex digits (32 bytes); leave empty to disable")
    psk_file = r.text("node", "psk_file", "")
    if psk and psk_file:
        raise r.fail("node", "psk", "set psk_file or psk, not both (psk is the older inline form of the key)")
    psk_also_accept = r.texts("node", "psk_also_accept", ())
    if psk_also_accept and not (psk or psk_file):
        raise r.fail("node", "psk_also_accept", "keys to also accept need the network's own key in psk_file")
    metrics = r.text("node", "metrics_listen", "")
    if metrics:
        try:
            _check_hostport(metrics)
        except ValueError as exc:
            raise r.fail("node", "metrics_listen", str(exc)) from None
    shards_raw = r.get("relay", "shards", "all")
    relay_shards = None if shards_raw == "all" else tuple(parse_shard(s) for s in r.texts("relay", "shards", (), parse_shard))
    retry = RetryPolicy(
        initial_s=r.number("retry", "initial_s", 1.0, lo=0.0, hi=3600.0, strict_lo=True),
        cap_s=r.number("retry", "cap_s", 300.0, lo=0.0, hi=86400.0, strict_lo=True),
        jitter=r.number("retry", "jitter", 0.2, lo=0.0, hi=0.9),
        receipt_timeout_s=r.number("retry", "receipt_timeout_s", 600.0, lo=1.0, hi=30 * 86400.0),
        give_up_days=r.number("retry", "give_up_days", 30.0, lo=0.0, hi=3650.0, strict_lo=True),
    )
    if retry.cap_s < retry.initial_s:
        raise r.fail("retry", "cap_s", f"{retry.cap_s} is below initial_s {retry.initial_s}")
    return NodeConfig(
        network=network,
        codes=codes,
        listen=listen,
        bootstrap=r.texts("node", "bootstrap", (), _check_multiaddr),
        # The home's file names are spelled once, as NodeConfig's defaults (identity/home.py resolves them).
        authority=r.text("node", "authority", NodeConfig.authority),
        directory=r.text("node", "directory", NodeConfig.directory),
        ipc_socket=r.text("node", "ipc_socket", NodeConfig.ipc_socket),
        store=r.text("node", "store", NodeConfig.store),
        log_level=r.text("node", "log_level", "info", choices=("debug", "info", "warning", "error")),
        log_format=r.text("node", "log_format", "auto", choices=("auto", "json", "text")),
        metrics_listen=metrics,
        psk=psk,
        psk_file=psk_file,
        psk_also_accept=psk_also_accept,
        max_document_mb=r.number("limits", "max_document_mb", 200.0, lo=0.0, hi=4096.0, strict_lo=True),
        retry=retry,
        relay_shards=relay_shards,
        keep_after_receipt_h=r.number("relay", "keep_after_receipt_h", 24.0, lo=0.0, hi=24 * 3650.0),
        fetch_relayed_blocks=r.boolean("relay", "fetch_blocks", False),
        sync_interval_s=r.number("sync", "interval_s", 30.0, lo=0.0, hi=86400.0, strict_lo=True),
        sync_fanout=r.integer("sync", "fanout", 3, lo=1, hi=1000),
        sync_parallel=r.integer("sync", "parallel", 8, lo=1, hi=1000),
        gossip_flush_ms=r.number("gossip", "flush_ms", 20.0, lo=0.0, hi=10_000.0),
        gossip_batch_kb=r.integer("gossip", "batch_kb", 256, lo=1, hi=3072),
        push_batch=r.integer("gossip", "push_batch", 64, lo=1, hi=1024),
        direct_push=r.boolean("gossip", "direct_push", True),
        ipc=_ipc_settings(r, codes),
        edxml_zip=r.text("edxml", "zip", "as_received", choices=EDXML_ZIP_MODES),
        sdk=_sdk_settings(r, codes),
    )


def _sdk_settings(r: _Reader, hosted: tuple[AgencyCode, ...]) -> SdkSettings:
    listen = r.text("sdk", "listen", "")
    if listen:
        try:
            _check_hostport(listen)
        except ValueError as exc:
            raise r.fail("sdk", "listen", str(exc).replace("9464", "8080")) from None
    base_path = r.text("sdk", "base_path", SdkSettings.base_path).rstrip("/")
    if not _BASE_PATH.match(base_path):
        raise r.fail("sdk", "base_path", "expected a path such as /XrdAdapter/adapter (letters, digits, _ . -)")
    systems: list[SdkSystem] = []
    for where, sub in r.tables("sdk", "systems", _SYSTEM_KEYS):
        system_id = sub.text("t", "system_id", "")
        if not _SYSTEM_ID.match(system_id):
            raise r.fail("sdk", f"{where}.system_id", f"{system_id!r:.80} is not 1-64 letters, digits, _ . -")
        if any(s.system_id == system_id for s in systems):
            raise r.fail("sdk", f"{where}.system_id", f"{system_id} is listed twice")
        secret_file = sub.text("t", "secret_file", "")
        if not secret_file:
            raise r.fail("sdk", f"{where}.secret_file", "missing: the file holding the system's secret (truc sdk add-system)")
        agencies = tuple(AgencyCode.parse(c) for c in sub.texts("t", "agencies", (), AgencyCode.parse))
        if not agencies:
            raise r.fail("sdk", f"{where}.agencies", "a system acts for at least one hosted agency")
        foreign = [str(c) for c in agencies if c not in hosted]
        if foreign:
            raise r.fail("sdk", f"{where}.agencies", f"{', '.join(foreign)} not hosted by this node ([node] codes)")
        systems.append(SdkSystem(system_id, secret_file, agencies))
    return SdkSettings(
        listen=listen,
        base_path=base_path,
        window_s=r.number("sdk", "window_s", 300.0, lo=1.0, hi=86400.0),
        utc_offset_min=r.integer("sdk", "utc_offset_min", 420, lo=-720, hi=840),
        rate_per_s=r.number("sdk", "rate_per_s", 20.0, lo=0.0, hi=1e6, strict_lo=True),
        burst=r.integer("sdk", "burst", 60, lo=1, hi=1_000_000),
        max_connections=r.integer("sdk", "max_connections", 64, lo=1, hi=100_000),
        header_timeout_s=r.number("sdk", "header_timeout_s", 10.0, lo=0.0, hi=3600.0, strict_lo=True),
        read_timeout_s=r.number("sdk", "read_timeout_s", 30.0, lo=0.0, hi=3600.0, strict_lo=True),
        systems=tuple(systems),
    )


def _check_absolute_dir(text: str) -> None:
    if not text.startswith("/") or any(part in (".", "..") for part in text.split("/")):
        raise ValueError("expected an absolute directory path without . or .. components")


def _ipc_settings(r: _Reader, hosted: tuple[AgencyCode, ...]) -> IpcSettings:
    rules = []
    for where, sub in r.tables("ipc", "clients", _CLIENT_KEYS):
        user, group = sub.text("t", "user", ""), sub.text("t", "group", "")
        if bool(user) == bool(group):
            raise r.fail("ipc", where, "give exactly one of user or group (a name or a numeric id)")
        if not _ACCOUNT.match(user or group):
            raise r.fail("ipc", where, f"{user or group!r} is not a user or group name, nor a numeric id")
        codes = tuple(AgencyCode.parse(c) for c in sub.texts("t", "codes", (), AgencyCode.parse))
        foreign = [str(c) for c in codes if c not in hosted]
        if foreign:
            raise r.fail("ipc", f"{where}.codes", f"{', '.join(foreign)} not hosted by this node ([node] codes)")
        admin = sub.boolean("t", "admin", False)
        if not codes and not admin:
            raise r.fail("ipc", where, "grants nothing: list the agencies it acts for in codes, or set admin = true")
        rules.append(ClientRule(user=user, group=group, codes=codes, admin=admin))
    return IpcSettings(
        max_connections=r.integer("ipc", "max_connections", 64, lo=1, hi=100_000),
        idle_timeout_s=r.number("ipc", "idle_timeout_s", 300.0, lo=0.0, hi=86400.0, strict_lo=True),
        frame_timeout_s=r.number("ipc", "frame_timeout_s", 30.0, lo=0.0, hi=3600.0, strict_lo=True),
        send_timeout_s=r.number("ipc", "send_timeout_s", 60.0, lo=0.0, hi=3600.0, strict_lo=True),
        read_paths=r.texts("ipc", "read_paths", (), _check_absolute_dir),
        spool_mb=r.number("ipc", "spool_mb", 1024.0, lo=0.0, hi=1 << 20, strict_lo=True),
        clients=tuple(rules),
    )


def _q(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(vs: tuple[str, ...]) -> str:
    return "[" + ", ".join(_q(v) for v in vs) + "]"


def render_config(c: NodeConfig) -> str:
    """The text of a config file equal to ``c``, commented for operators."""
    shards = '"all"' if c.relay_shards is None else _list(c.relay_shards)
    psk = (
        f"psk = {_q(c.psk)}                    # deprecated inline form of the same key (64 hex); prefer psk_file\n"
        if c.psk
        else ""
    )
    return f"""# Trục node configuration. Paths are relative to this file's directory.
# Every key is optional except network and codes; shown values are the defaults
# unless `truc init` set them.

[node]
network = {_q(c.network)}            # network id; must match the authority and the directory
codes = {_list(tuple(str(x) for x in c.codes))}   # agencies hosted here (secret keys in keys/)
listen = {_list(c.listen)}           # libp2p listen addresses
bootstrap = {_list(c.bootstrap)}     # peers to dial at start (the directory adds every member node)
authority = {_q(c.authority)}        # pinned network authority public key
directory = {_q(c.directory)}        # signed directory file to start from
ipc_socket = {_q(c.ipc_socket)}      # Unix socket for integrators and the truc CLI (mode 0660)
store = {_q(c.store)}                # LevelDB store directory
log_level = {_q(c.log_level)}        # debug, info, warning, error
log_format = {_q(c.log_format)}      # auto (text on a terminal, JSON otherwise), json, text
metrics_listen = {_q(c.metrics_listen)}   # Prometheus /metrics, e.g. "127.0.0.1:9464"; empty = off
psk_file = {_q(c.psk_file)}          # the network's private-network key file (libp2p PSK v1, 0600; docs/operations.md)
                                     # empty: no private network, anyone reaching the port may try (members only after Noise)
psk_also_accept = {_list(c.psk_also_accept)}   # during a key rotation: older or newer key files also accepted from peers
{psk}
[limits]
max_document_mb = {c.max_document_mb:g}    # larger documents are refused at submit and on receipt

[retry]
initial_s = {c.retry.initial_s:g}          # first retry delay; doubles up to cap_s, with +/- jitter
cap_s = {c.retry.cap_s:g}
jitter = {c.retry.jitter:g}
receipt_timeout_s = {c.retry.receipt_timeout_s:g}  # re-send a document stored by the peer but not yet receipted
give_up_days = {c.retry.give_up_days:g}       # then the delivery is marked failed

[relay]
shards = {shards}                    # shards to relay and keep for catch-up: "all" or a list like ["G22", "H01"]
keep_after_receipt_h = {c.keep_after_receipt_h:g}   # relays drop a document this long after every receipt was seen
fetch_blocks = {"true" if c.fetch_relayed_blocks else "false"}   # relays also keep large bodies (bandwidth, disk)

[sync]
interval_s = {c.sync_interval_s:g}         # anti-entropy round with a few peers
fanout = {c.sync_fanout}                # peers per round (every newly connected peer is synced at once)
parallel = {c.sync_parallel}              # rounds in flight at once; more peers wait their turn

[gossip]
flush_ms = {c.gossip_flush_ms:g}           # envelopes wait this long to leave together (gossip messages and direct pushes)
batch_kb = {c.gossip_batch_kb}            # or until the batch reaches this size
push_batch = {c.push_batch}           # envelopes per direct push request
direct_push = {"true" if c.direct_push else "false"}         # false: gossip only (for measurements)

[ipc]
max_connections = {c.ipc.max_connections}       # more clients at once are answered "busy" and closed
idle_timeout_s = {c.ipc.idle_timeout_s:g}       # a connection with nothing in flight (and no subscription) is closed
frame_timeout_s = {c.ipc.frame_timeout_s:g}       # a frame, or an attachment's next chunk, must arrive within this
send_timeout_s = {c.ipc.send_timeout_s:g}        # a client that does not read its answers this long is dropped
read_paths = {_list(c.ipc.read_paths)}            # directories whose files `submit` may name by path; empty: clients stream
spool_mb = {c.ipc.spool_mb:g}             # attachments being received, in total (spool/ under the home)
# Who may use the socket (SO_PEERCRED). With no [[ipc.clients]] table, every account that can open
# the socket (mode 0660: the node's user and group) acts for every hosted agency. With tables, the
# node's own user and root still may do everything; anyone else only what a table grants:
#   [[ipc.clients]]
#   user = "iofice"                 # or group = "vpcp-docs"; a name or a numeric id
#   codes = ["000.00.01.G22"]       # hosted agencies it acts for
#   admin = false                   # true: also peers, queues, stats, every document, directory.publish
{_clients(c.ipc.clients)}
[edxml]
zip = {_q(c.edxml_zip)}            # exported packages' attachments: as_received (zipped if the sender zipped),
                                   # zip (every file in VNPT's one-file zip), raw (every file as it is)

[sdk]
# The national SDK's HTTP calls (docs/sdk.md): existing document systems point their endpoint here.
listen = {_q(c.sdk.listen)}          # HOST:PORT, e.g. "127.0.0.1:8080"; empty = off (truc sdk enable)
base_path = {_q(c.sdk.base_path)}    # the calls are base_path + /sendEdoc, /getReceivedEdocList, ...
window_s = {c.sdk.window_s:g}          # a signed timestamp further than this from the node's clock is refused
utc_offset_min = {c.sdk.utc_offset_min}       # the zone the SDK's timestamps are written in (420 = UTC+7)
rate_per_s = {c.sdk.rate_per_s:g}          # calls per second per system on average, with bursts of
burst = {c.sdk.burst}
max_connections = {c.sdk.max_connections}      # more at once are answered FAIL (busy) and closed
header_timeout_s = {c.sdk.header_timeout_s:g}     # a request's line and headers must arrive within this
read_timeout_s = {c.sdk.read_timeout_s:g}      # each piece of a request body must arrive within this
# Systems allowed to call (truc sdk add-system writes these; the secret is in its own 0600 file):
{_systems(c.sdk.systems)}"""


def _systems(systems: tuple[SdkSystem, ...]) -> str:
    out = []
    for sys in systems:
        agencies = _list(tuple(str(x) for x in sys.agencies))
        out.append(
            f"\n[[sdk.systems]]\nsystem_id = {_q(sys.system_id)}\nsecret_file = {_q(sys.secret_file)}\nagencies = {agencies}\n"
        )
    return "".join(out)


def _clients(rules: tuple[ClientRule, ...]) -> str:
    out = []
    for rule in rules:
        who = f"user = {_q(rule.user)}" if rule.user else f"group = {_q(rule.group)}"
        codes = _list(tuple(str(x) for x in rule.codes))
        out.append(f"\n[[ipc.clients]]\n{who}\ncodes = {codes}\nadmin = {'true' if rule.admin else 'false'}\n")
    return "".join(out)
