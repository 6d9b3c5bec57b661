"""``truc run``: load a node's home and run it until SIGTERM/SIGINT.

One wiring function, :func:`run_node`, builds the whole object graph in
dependency order: config → log → keys → authority → store → directory →
trust → what could fail for want of a port, directory or secret (the IPC
socket's directory, the metrics and SDK addresses, the SDK systems'
secrets) → metrics → overlay → engine → spool → IPC → metrics endpoint →
SDK endpoint → systemd readiness. Read it and you know the daemon.
SIGTERM: :func:`shutdown` (refuse new work, let what is in flight finish
within ``SHUTDOWN_GRACE_S``), then cancel. The home's files: identity/home.py.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path
from typing import TextIO

import trio

from identity.directory import Directory
from identity.directory_cache import CacheReport, CacheState, cache_mac_key, load_directory_cached
from identity.home import Home
from identity.keys import (
    AgencyKeys,
    AuthorityPublic,
    NodeKey,
    check_private_dir,
    load_agency_keys,
    load_authority_public,
    load_node_key,
)
from identity.psk import configured_psk, load_psk_file
from identity.sdk_systems import load_secret
from identity.trust import Trust
from protocol.agency import AgencyCode
from protocol.config import SdkSettings
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, Envelope
from protocol.errors import ConfigError, KeyFileError, StoreCorruptError, TrucError, find_truc_error
from store.records import Owner
from store.store import Store

from . import http, systemd
from .access import AccessPolicy
from .assemble import DirectoryGate, assemble
from .committer import run_in_thread
from .core import NodeCore
from .engine import Engine
from .ipc import IpcServer
from .log import Log, capture_library_logs
from .methods import Methods
from .metrics import Metrics
from .p2p import P2POverlay
from .sdk import SdkApi, page
from .sdk_gate import SdkGate, System
from .tasks import TaskStatus
from .upload import ReadPaths, Spool

SHUTDOWN_GRACE_S = 10.0  # in-flight work gets this long after SIGTERM (systemd's TimeoutStopSec is 30 s)


def load_keys(home: Home) -> tuple[NodeKey, dict[AgencyCode, AgencyKeys]]:
    node_key = load_node_key(home.node_key)
    check_private_dir(home.keys_dir)
    hosted = {}
    for code in home.config.codes:
        path = home.agency_key(code)
        keys = load_agency_keys(path)
        if keys.code != code:
            raise KeyFileError(f"{path} holds the keys of {keys.code}, not {code}")
        hosted[code] = keys
    return node_key, hosted


def load_directory(
    home: Home, authority: AuthorityPublic, store: Store, node_key: NodeKey
) -> tuple[Directory, list[Envelope], CacheReport]:
    """The directory file's chain, then any newer links this node received and stored (verified form in cache/)."""
    stored = [Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES) for raw in store.directory_links()]
    return load_directory_cached(home.directory, authority, home.cache, mac_key=cache_mac_key(node_key), later=stored)


async def run_node(
    root: Path, *, log_stream: TextIO | None = None, task_status: TaskStatus[Engine] = trio.TASK_STATUS_IGNORED
) -> None:
    home = Home.load(root)
    cfg = home.config
    node_key, hosted = load_keys(home)
    log = Log(stream=log_stream, level=cfg.log_level, fmt=cfg.log_format, node=",".join(c.short() for c in cfg.codes))
    capture_library_logs(log)
    authority = load_authority_public(home.authority_pub)
    if authority.network and authority.network != cfg.network:
        raise ConfigError(
            f"{home.config_file}: [node] network is {cfg.network!r} but {cfg.authority} is for {authority.network!r}"
        )
    store = Store(home.store, owner=Owner(cfg.network, node_key.peer_id))
    if store.dead_blocks_removed:
        log.info("store.dead_blocks_removed", blocks=store.dead_blocks_removed, bytes=store.dead_bytes_removed)
    if store.blocks_moved:
        log.info("store.blocks_moved_to_files", blocks=store.blocks_moved)  # format 3 -> 4, once
    if store.temporary_removed:
        log.info("store.partial_blocks_removed", files=store.temporary_removed)
    corrupt: list[StoreCorruptError] = []
    metrics_listeners: list[trio.SocketListener] = []
    sdk_listeners: list[trio.SocketListener] = []
    try:
        directory, chain, cache = load_directory(home, authority, store, node_key)
        gc.freeze()  # the directory is ~450k objects that live as long as the process: full collections skip them
        gc.enable()  # `truc run` turns the collector off for the imports and the load (cli/daemon.py)
        if directory.net != cfg.network:
            raise ConfigError(f"{home.directory} is for network {directory.net!r}, this node is on {cfg.network!r}")
        if node_key.peer_id not in directory.nodes:
            log.error(
                "node.not_in_directory",
                peer=node_key.peer_id,
                serial=directory.serial,
                fix="send join-request.cbor to the network authority; peers refuse this node until it is listed",
            )
        for code in cfg.codes:
            rec = directory.agencies.get(code)
            if rec is not None and rec.node != node_key.peer_id:
                log.error(
                    "agency.hosted_elsewhere", code=str(code), node=rec.node, fix="the directory says another node hosts it"
                )
        # What can fail for want of a port or a directory fails now, with one line, before anything listens.
        check_socket_dir(home.socket)
        if cfg.metrics_listen:
            metrics_listeners = await http.open_listeners(*_host_port(cfg.metrics_listen))
        systems = load_systems(home)
        if cfg.sdk.listen:
            sdk_listeners = await http.open_listeners(*_host_port(cfg.sdk.listen), what="[sdk] listen")
        metrics = Metrics()
        core = NodeCore(
            config=cfg,
            store=store,
            trust=Trust(directory, authority),
            chain=chain,
            hosted=hosted,
            peer_id=node_key.peer_id,
            clock=lambda: int(time.time() * 1000),
            rng=os.urandom,
            offload=run_in_thread,
            log=log,
            metrics=metrics,
        )
        gate = DirectoryGate(core)
        overlay = P2POverlay(
            key=node_key,
            listen=cfg.listen,
            is_member=gate.is_member,
            targets=gate.targets,
            log=log,
            metrics=metrics,
            psk=configured_psk(cfg.psk, home.psk_file),
            psk_also_accept=[load_psk_file(p) for p in home.psk_also_accept],
            bootstrap=cfg.bootstrap,
            restarted=not store.fresh,
        )
        engine = assemble(core, overlay)
        spool = Spool(home.spool, int(cfg.ipc.spool_mb * 1024 * 1024))
        removed = spool.prepare()
        if removed:
            log.info("spool.cleaned", files=removed)
        ipc = ipc_server(home, engine, log, metrics, spool)
        async with trio.open_nursery() as nursery:
            _stop_on_corruption(store, nursery, corrupt, log)
            await nursery.start(overlay.run)
            await nursery.start(engine.run)
            await nursery.start(ipc.run)
            if metrics_listeners:
                bound: int = await nursery.start(
                    partial(http.serve, log=log, metrics=metrics), metrics_listeners, metrics.render, _ok
                )
                log.info("metrics.listening", address=f"{cfg.metrics_listen.rsplit(':', 1)[0]}:{bound}")
            if sdk_listeners:
                api = SdkApi(engine, SdkGate(cfg.sdk, systems, time.monotonic), spool)
                server = http.HttpServer(
                    api.handle, limits=sdk_limits(cfg.sdk), log=log, metrics=metrics, name="sdk", error_page=page
                )
                bound = await nursery.start(server.serve, sdk_listeners)
                address = f"{cfg.sdk.listen.rsplit(':', 1)[0]}:{bound}"
                log.info("sdk.listening", address=address, base_path=cfg.sdk.base_path, systems=len(systems))
            nursery.start_soon(systemd.watchdog, engine)
            systemd.notify(f"READY=1\nSTATUS=serving {', '.join(str(c) for c in cfg.codes)}; directory serial {directory.serial}")
            # Logged once the node serves: a start that fails prints only the one line that says why.
            log.event(
                "directory.loaded",
                "warning" if cache.state is CacheState.DAMAGED or cache.write_error else "info",
                cache=cache.state.value,
                detail=cache.detail,
                serial=directory.serial,
                agencies=len(directory.agencies),
                written=cache.written,
                **({"write_error": cache.write_error} if cache.write_error else {}),
            )
            log.info("node.ready", socket=str(home.socket), peer=node_key.peer_id)
            task_status.started(engine)
            nursery.start_soon(_status_line, engine)
    finally:
        for listener in metrics_listeners + sdk_listeners:  # if the node stopped before serving them
            listener.socket.close()
        store.close()
    if corrupt:
        raise corrupt[0]


def _stop_on_corruption(store: Store, nursery: trio.Nursery, found: list[StoreCorruptError], log: Log) -> None:
    """Damage met by any read (in the event loop or a worker thread, answering anyone) stops the node.

    Whoever read gets the error too; the node then exits with it (exit 2,
    one line), and the mark the store left keeps it from starting again
    until ``truc store check`` finds the store sound.
    """
    token = trio.lowlevel.current_trio_token()

    def stop(exc: StoreCorruptError) -> None:
        if not found:
            found.append(exc)
            log.error("store.corrupt", detail=exc.detail[:300], fix="stop the node and run: truc store check")
            token.run_sync_soon(nursery.cancel_scope.cancel)

    store.on_corruption = stop


def _ok() -> bool:
    return True


def load_systems(home: Home) -> list[System]:
    """The ``[[sdk.systems]]`` with their secrets; raises KeyFileError for a missing or open secret file."""
    return [System(s.system_id, load_secret(home.path(s.secret_file), s.system_id), s.agencies) for s in home.config.sdk.systems]


def sdk_limits(settings: SdkSettings) -> http.HttpLimits:
    return http.HttpLimits(
        max_connections=settings.max_connections,
        header_timeout_s=settings.header_timeout_s,
        read_timeout_s=settings.read_timeout_s,
    )


def ipc_server(home: Home, engine: Engine, log: Log, metrics: Metrics, spool: Spool) -> IpcServer:
    """The IPC socket with the spool, the directories it may read and who may use it (raises ConfigError)."""
    settings = home.config.ipc
    policy = AccessPolicy(settings.clients)
    read_paths = ReadPaths(settings.read_paths, home=home.root, secrets=home.secret_files)
    methods = Methods(engine, spool=spool, read_paths=read_paths, frame_timeout_s=settings.frame_timeout_s)
    return IpcServer(
        home.socket, settings=settings, handlers=methods.handlers(), log=log, metrics=metrics, policy=policy, admission=engine.n
    )


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def check_socket_dir(path: Path) -> None:
    """Create the IPC socket's directory if needed; raises ConfigError when it cannot be created or written."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"ipc_socket {path}: cannot create its directory {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"ipc_socket {path}: this user cannot create files in {parent}")


async def _status_line(engine: Engine) -> None:
    while True:
        await trio.sleep(30)
        systemd.notify(
            f"STATUS={len(engine.overlay.connected_peers())} peers; "
            f"{sum(1 for _ in engine.store.pending())} pending deliveries; directory serial {engine.trust.directory.serial}"
        )


async def shutdown(engine: Engine, grace_s: float) -> bool:
    """Stop taking work and wait for the work in flight, at most ``grace_s``; True if it all finished.

    In flight: IPC requests being answered (a submit being sealed and
    committed, ...), ingests and their commits, documents being completed.
    New IPC requests and pushes are refused meanwhile (``shutting_down``),
    and no delivery attempt starts. The caller cancels what is left.
    """
    engine.begin_shutdown()
    with trio.move_on_after(grace_s) as waited:
        await engine.wait_idle()
    if not waited.cancelled_caught:
        return True
    engine.log.warning("node.grace_expired", grace_s=grace_s, in_flight=engine.in_flight, fix="what was left is cancelled")
    return False


def main(root: Path) -> int:
    """Run the node in the foreground until SIGTERM or SIGINT; returns the exit code."""

    async def top() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                engine = await nursery.start(run_node, root)
                async for signum in signals:
                    engine.log.info(
                        "node.stopping", signal=signal.Signals(signum).name, in_flight=engine.in_flight, grace_s=SHUTDOWN_GRACE_S
                    )
                    systemd.notify("STOPPING=1")
                    await shutdown(engine, SHUTDOWN_GRACE_S)
                    nursery.cancel_scope.cancel()
                    break
        engine.log.info("node.stopped")

    try:
        trio.run(top)
    except (TrucError, BaseExceptionGroup) as raised:
        exc = find_truc_error(raised)
        if exc is None:
            raise
        print(f"truc run: {exc.message}", file=sys.stderr)
        return exc.exit_code  # 2 (the unit does not restart) for what the operator must fix: protocol/errors.py
    except KeyboardInterrupt:
        return 130
    return 0
