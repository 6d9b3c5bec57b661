"""Every change this project makes to py-libp2p 0.8.1, in one place (docs/overlay.md, the pitfalls table), but
for the stand-ins for the parts a node never uses (pitfall 32, node/slim_imports.py): those must be in place
before the library is imported, so ``node/__init__.py`` installs them.

Several workarounds replace private attributes of the library. An assignment
to an attribute a library update renamed would silently do nothing, and the
node would run without the fix; so each replacement here first checks that
the attribute exists and has the shape it had in 0.8.1 (its parameters, or
the names its code uses), and raises ``LibraryChangedError`` naming the
pitfall if not. Nothing happens at import: module-wide changes are made by
:func:`install` when the first overlay is built (and checked again each time),
per-object ones by :func:`patch_swarm` and :func:`patch_router` on the objects
of one host.

Why one module: it is what someone upgrading py-libp2p must review, line by
line, against the new version; split by subsystem, a fix in a file they did
not open would be the one that silently stops applying. Each function is one
pitfall, numbered as in docs/overlay.md, so the file reads as that table.
"""

from __future__ import annotations

import inspect
import logging
import socket
import struct
import time
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import libp2p.identity.identify.identify as identify_module
import libp2p.peer.peerstore as peerstore_module
import libp2p.protocol_muxer.multiselect_client as multiselect_client
import libp2p.pubsub.floodsub as floodsub_module
import libp2p.pubsub.gossipsub as gossipsub_module
import libp2p.pubsub.pubsub as pubsub_module
import libp2p.pubsub.rpc_queue as rpc_queue
import libp2p.pubsub.utils as pubsub_utils
import libp2p.security.noise.io as noise_io
import libp2p.stream_muxer.yamux.yamux as yamux_module
import libp2p.tools.anyio_service.trio_manager as trio_manager
import libp2p.tools.anyio_service.trio_tasks as trio_tasks
import libp2p.transport.tcp.tcp as libp2p_tcp
import trio
from libp2p.abc import IMultiselectCommunicator
from libp2p.io.exceptions import IOException
from libp2p.network.config import RetryConfig
from libp2p.network.stream.exceptions import StreamClosed, StreamReset
from libp2p.protocol_muxer.exceptions import MultiselectCommunicatorError
from libp2p.pubsub.score import ScoreParams
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.utils.varint import encode_delim, encode_varint_prefixed

from . import pnet

RPC_QUEUE_RPCS = 1024  # pitfall 5: 32 RPCs per peer, the rest dropped silently
RPC_MAX_BYTES = 4 << 20  # pitfall 8: messages of 1 MiB or more vanish
SENDER_RECORD_RECHECK_S = 600.0  # pitfall 27: the same signed record from a peer is checked again after this long
OWN_RECORD_RECHECK_S = 10.0  # pitfall 30: our own record for outgoing RPCs is re-derived after this long
RPC_WRITE_BYTES = 64 << 10  # pitfall 31: RPCs queued for one peer go out in one stream write, up to this many bytes
WINDOW_WAIT_S = 5.0  # pitfall 33: a yamux writer waits this long for window credit, as the library's
# pitfall 34: a yamux DATA frame's payload, so that the frame with its 12-byte header fits one Noise message (65,519
# bytes of plaintext); the library's 64 KiB payload made every full frame two Noise messages, the second of 17 bytes
FRAME_BYTES = noise_io.MAX_PLAINTEXT_LENGTH - yamux_module.HEADER_SIZE
_FRAME_HEADER = struct.Struct(yamux_module.YAMUX_HEADER_FORMAT)  # pitfalls 33, 36: a yamux frame's header
LIBRARY_RPC_DEFAULTS = (32, 1 << 20)


class LibraryChangedError(RuntimeError):
    """py-libp2p is not the version these workarounds were written for: one of them would silently stop applying."""

    def __init__(self, pitfall: int | str, what: str) -> None:
        which = f"pitfall {pitfall}" if isinstance(pitfall, int) else pitfall
        super().__init__(
            f"py-libp2p changed: {what}; the workaround for {which} (node/libp2p_fixes.py, docs/overlay.md) "
            "needs review before this version can run"
        )


def _params(fn: Any) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def _expect_params(pitfall: int | str, where: str, fn: Any, names: list[str]) -> None:
    if not callable(fn) or _params(fn) != names:
        raise LibraryChangedError(pitfall, f"{where} is not a callable of ({', '.join(names)})")


def _expect_uses(pitfall: int, where: str, fn: Any, name: str) -> None:
    code = getattr(fn, "__code__", None)
    if code is None or name not in code.co_names:
        raise LibraryChangedError(pitfall, f"{where} no longer reads {name}")


# --- module-wide ---------------------------------------------------------------------


def agent_version() -> str:
    """What identify tells peers we run: ``truc/<version> (py-libp2p/<version>)``."""

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:  # a source tree without install
            return "0+unknown"

    return f"truc/{of('truc')} (py-libp2p/{of('libp2p')})"


def _reuse_addr_only(sock: object) -> None:  # pitfall 20: SO_REUSEADDR, never SO_REUSEPORT
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # type: ignore[attr-defined]
    except OSError:
        pass


def install() -> None:
    """The module-wide changes, checked then made (idempotent; every overlay calls it when it is built)."""
    init = rpc_queue.RpcQueue.__init__
    if _params(init) != ["self", "max_size", "max_message_size"] or init.__defaults__ not in (
        LIBRARY_RPC_DEFAULTS,
        (RPC_QUEUE_RPCS, RPC_MAX_BYTES),
    ):
        raise LibraryChangedError(5, "RpcQueue.__init__(max_size=32, max_message_size=1 MiB) has another shape")
    init.__defaults__ = (RPC_QUEUE_RPCS, RPC_MAX_BYTES)

    reuse = getattr(libp2p_tcp, "_set_reuse_flags", None)
    if reuse is not _reuse_addr_only:
        _expect_params(20, "libp2p.transport.tcp.tcp._set_reuse_flags", reuse, ["sock"])
        libp2p_tcp._set_reuse_flags = _reuse_addr_only

    build = getattr(identify_module, "_mk_identify_protobuf", None)
    if not isinstance(getattr(identify_module, "AGENT_VERSION", None), str):
        raise LibraryChangedError(18, "libp2p.identity.identify.identify.AGENT_VERSION is gone")
    _expect_uses(18, "identify's _mk_identify_protobuf", build, "AGENT_VERSION")
    identify_module.AGENT_VERSION = agent_version()

    pnet.install()  # pitfall 17: checks the swarm's three call sites itself
    _index_service_tasks()  # pitfall 23
    _remember_sender_records()  # pitfall 27
    _reuse_own_record()  # pitfall 30
    _window_updates_with_hysteresis()  # pitfall 28
    _credit_wakes_the_writer()  # pitfall 33
    _pipelined_negotiation()  # pitfall 35
    _flags_ride_on_frames()  # pitfall 36


_LIBRARY_CONSUME_RECORD = pubsub_utils.maybe_consume_signed_record
_RECORD_USERS = (
    (pubsub_module, "Pubsub.continuously_read_stream", pubsub_module.Pubsub.continuously_read_stream),
    (gossipsub_module, "GossipSub.handle_rpc", gossipsub_module.GossipSub.handle_rpc),
    (floodsub_module, "FloodSub.handle_rpc", getattr(floodsub_module.FloodSub, "handle_rpc", None)),
)
# host -> {peer id: (the record's bytes last found valid, when)}: one record per peer, so bounded by the peers
_RECORDS_SEEN: weakref.WeakKeyDictionary[Any, dict[Any, tuple[bytes, float]]] = weakref.WeakKeyDictionary()


def consume_sender_record(msg: Any, host: Any, peer_id: Any) -> bool:
    """Pitfall 27: the library's ``maybe_consume_signed_record``, skipped for the bytes it accepted last time.

    Every pubsub RPC carries its sender's signed peer record, the same bytes
    each time (the sender caches it), and the library parses it, verifies its
    Ed25519 signature and updates the peerstore on every RPC, twice for
    control messages. The result for the same bytes from the same peer is
    the same; a different record (new addresses, or forged) goes through the
    library's check. Rechecked every ``SENDER_RECORD_RECHECK_S`` so the
    peerstore's entry (2 h) never lapses.
    """
    if not msg.HasField("senderRecord"):
        return True
    seen = _RECORDS_SEEN.setdefault(host, {})
    record, at = seen.get(peer_id, (b"", 0.0))
    now = time.monotonic()
    if record == msg.senderRecord and now - at < SENDER_RECORD_RECHECK_S:
        return True
    ok: bool = _LIBRARY_CONSUME_RECORD(msg, host, peer_id)
    if ok:
        seen[peer_id] = (bytes(msg.senderRecord), now)
    return ok


def _replace_imported_function(pitfall: int, name: str, library: Any, ours: Any, users: tuple[Any, ...]) -> None:
    """Replace the function ``name`` that each of ``users`` (module, where, a function of it) imported from the
    library: each function must still read ``name``, and each module must still hold the library's (or ours)."""
    for module, where, fn in users:
        _expect_uses(pitfall, where, fn, name)
        current = getattr(module, name, None)
        if current is not ours:
            if current is not library:
                raise LibraryChangedError(pitfall, f"{module.__name__}.{name} is not the library's")
            setattr(module, name, ours)


def _remember_sender_records() -> None:
    _replace_imported_function(27, "maybe_consume_signed_record", _LIBRARY_CONSUME_RECORD, consume_sender_record, _RECORD_USERS)


_LIBRARY_OWN_RECORD = peerstore_module.env_to_send_in_RPC
_OWN_RECORD_USERS = (
    (pubsub_module, "Pubsub.get_hello_packet", pubsub_module.Pubsub.get_hello_packet),
    (gossipsub_module, "GossipSub.emit_control_message", gossipsub_module.GossipSub.emit_control_message),
    (floodsub_module, "FloodSub.publish", floodsub_module.FloodSub.publish),
)
_OWN_RECORDS: weakref.WeakKeyDictionary[Any, tuple[bytes, float]] = weakref.WeakKeyDictionary()  # host -> (bytes, when)


def own_record_for_rpc(host: Any) -> tuple[bytes, bool]:
    """Pitfall 30: the library's ``env_to_send_in_RPC``, re-derived only every ``OWN_RECORD_RECHECK_S``.

    Every pubsub RPC a host sends carries the host's signed peer record. The
    library keeps the record, but to see whether it is still current it
    rebuilds the host's whole address list first (each listener's socket
    address turned into a multiaddr and parsed again, the ``/p2p`` suffix,
    a set of each side): ~10 % of a forming mesh's CPU, for an answer that
    changes only when the host listens somewhere new. Within the interval
    the bytes the library returned last are sent again; after it, the
    library's function decides (and issues a new record if the addresses
    changed). Trục's nodes never read these records (pitfall 24), and a
    peer's addresses come from the directory.
    """
    now = time.monotonic()
    cached = _OWN_RECORDS.get(host)
    if cached is not None and now - cached[1] < OWN_RECORD_RECHECK_S:
        return cached[0], False
    record, issued = _LIBRARY_OWN_RECORD(host)
    _OWN_RECORDS[host] = (record, now)
    return record, issued


def _reuse_own_record() -> None:
    _replace_imported_function(30, "env_to_send_in_RPC", _LIBRARY_OWN_RECORD, own_record_for_rpc, _OWN_RECORD_USERS)


_TASK_OF: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # trio task -> the FunctionTask it runs
_LIBRARY_FIND_PARENT_TASK = trio_manager.TrioManager._find_parent_task  # the walk, kept for the equivalence test


def _index_service_tasks() -> None:
    """Pitfall 23: ``TrioManager.run_task`` finds the new task's parent by walking every task of the service
    (``_find_parent_task``), so spawning is linear in the tasks alive and a busy service quadratic. Pubsub spawns
    three tasks for every topic a peer subscribes to: a connection between two nodes with 96 topics each was ~600
    spawns, each walking the node's thousands of tasks; it was the largest part of forming a mesh. Each task now
    records which trio task runs it, and the parent is found from that record: the same answer (the task whose
    trio task is the current one, if it belongs to this service), without the walk."""
    function_task = trio_tasks.FunctionTask
    prop = function_task.__dict__.get("trio_task")
    if isinstance(prop, property) and getattr(prop.fset, "_truc_indexed", False):
        return
    if not isinstance(prop, property) or prop.fget is None or _params(prop.fset) != ["self", "value"]:
        raise LibraryChangedError(23, "FunctionTask.trio_task is not a property with a setter of (self, value)")
    find = getattr(trio_manager.TrioManager, "_find_parent_task", None)
    _expect_params(23, "TrioManager._find_parent_task", find, ["self", "trio_task"])
    _expect_uses(23, "TrioManager._find_parent_task", find, "iterate_tasks")
    _expect_uses(23, "TrioManager.run_task", trio_manager.TrioManager.run_task, "_find_parent_task")
    set_trio_task = prop.fset
    assert set_trio_task is not None

    def indexed_set(self: Any, value: Any) -> None:
        set_trio_task(self, value)
        _TASK_OF[value] = self

    indexed_set._truc_indexed = True  # type: ignore[attr-defined]

    def find_parent_task(self: Any, trio_task: Any) -> Any:
        task = _TASK_OF.get(trio_task)
        if task is None:
            return None
        root = task
        while root.parent is not None:
            root = root.parent
        return task if root in self._root_tasks else None

    function_task.trio_task = property(prop.fget, indexed_set)  # type: ignore[method-assign,assignment]
    trio_manager.TrioManager._find_parent_task = find_parent_task  # type: ignore[method-assign]


_LIBRARY_WINDOW_UPDATE = yamux_module.YamuxStream._auto_tune_and_send_window_update  # what window_update falls back to
_LIBRARY_WRITE = yamux_module.YamuxStream.write
_CREDIT = "_truc_credit"  # pitfall 33: a YamuxStream's event for a writer waiting for window credit


async def window_update(self: Any, *, bytes_read: int = 0) -> None:
    """Pitfall 28: no WINDOW_UPDATE while the peer still has half a window of credit and less than half a window
    has been read since the last one (go-yamux's hysteresis, on the library's own threshold); otherwise the
    library's update, unchanged (its auto-tuning grows a bulk sender's window). Bulk reads too: the writer now wakes
    on credit (pitfall 33), so holding updates back no longer leaves it asleep."""
    threshold = self._grow_threshold()
    if self.recv_window >= threshold:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        if self.target_recv_window - (self.recv_window + buffered) < threshold:
            return
    await _LIBRARY_WINDOW_UPDATE(self, bytes_read=bytes_read)


def _window_updates_with_hysteresis() -> None:
    """Pitfall 28: py-libp2p's yamux sends a WINDOW_UPDATE after nearly every read of a stream (its
    ``RELEASE_ON_READ`` and a "partial slack" branch): a length-prefixed message is two reads, so every small
    message cost the receiver two frames back, and a bulk read one frame back per 64 KiB frame, each through Noise
    and the socket. :func:`window_update` holds them back."""
    stream = yamux_module.YamuxStream
    current = stream.__dict__.get("_auto_tune_and_send_window_update")
    if current is not window_update and current is not _LIBRARY_WINDOW_UPDATE:
        raise LibraryChangedError(28, "YamuxStream._auto_tune_and_send_window_update is not the library's")
    _expect_params(28, "YamuxStream._auto_tune_and_send_window_update", _LIBRARY_WINDOW_UPDATE, ["self", "bytes_read"])
    _expect_params(28, "YamuxStream._grow_threshold", getattr(stream, "_grow_threshold", None), ["self"])
    stream._auto_tune_and_send_window_update = window_update  # type: ignore[method-assign]


class _WakesWriter:
    """Pitfall 33: ``YamuxStream.send_window`` and ``.closed`` as attributes whose change to a true value (credit,
    or the end of the stream) wakes a writer waiting in :func:`write`. The value lives in the instance's
    ``__dict__``, where the library's own assignments put it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value
        if value > 0:  # an int window, or closed=True
            credit = obj.__dict__.get(_CREDIT)
            if credit is not None:
                credit.set()


async def write(self: Any, data: bytes) -> None:
    """Pitfall 33: ``YamuxStream.write`` as the library's (frames of at most the peer's window, under the same
    locks, the same errors; at most ``FRAME_BYTES``, pitfall 34), but a writer out of credit sleeps until a
    WINDOW_UPDATE or the stream's end wakes it, not in 10 ms polls; still 5 s at most, as the library."""
    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    total, sent = len(data), 0
    while sent < total:
        frame: bytes | None = None
        while frame is None:
            async with self.rw_lock.write_lock():
                if self.send_closed:
                    raise MuxedStreamError("Stream is closed for sending")
                async with self.window_lock:
                    if self.closed:
                        raise MuxedStreamError("Stream is closed")
                    if self.send_window > 0:
                        size = min(self.send_window, FRAME_BYTES, total - sent)
                        self.send_window -= size
                        header = _FRAME_HEADER.pack(0, yamux_module.TYPE_DATA, 0, self.stream_id, size)
                        frame = header + data[sent : sent + size]
            if frame is None:
                self._zero_window_waits += 1
                with trio.move_on_after(WINDOW_WAIT_S) as waited:
                    while self.send_window <= 0 and not self.closed:
                        credit = self.__dict__[_CREDIT] = trio.Event()
                        await credit.wait()
                self.__dict__.pop(_CREDIT, None)
                if waited.cancelled_caught:
                    raise MuxedStreamError(f"Timed out waiting for window update after {WINDOW_WAIT_S:g} seconds.")
        await self.conn._write_frame(frame)
        sent += len(frame) - yamux_module.HEADER_SIZE


def _credit_wakes_the_writer() -> None:
    """Pitfall 33: py-libp2p's yamux writer, out of window credit, polls for it every 10 ms; a bulk transfer whose
    reader holds updates back (pitfall 28) stalled up to 10 ms each time its window ran out."""
    stream = yamux_module.YamuxStream
    current = stream.__dict__.get("write")
    if current is not write and current is not _LIBRARY_WRITE:
        raise LibraryChangedError(33, "YamuxStream.write is not the library's")
    _expect_params(33, "YamuxStream.write", _LIBRARY_WRITE, ["self", "data"])
    for name in ("send_window", "closed", "send_closed", "window_lock", "rw_lock", "_write_frame", "MAX_MESSAGE_SIZE"):
        _expect_uses(33, "YamuxStream.write", _LIBRARY_WRITE, name)
    for name in ("YAMUX_HEADER_FORMAT", "TYPE_DATA"):  # HEADER_SIZE: FRAME_BYTES reads it at import
        if not hasattr(yamux_module, name):
            raise LibraryChangedError(33, f"libp2p.stream_muxer.yamux.yamux.{name} is gone")
    if current is write:
        return
    if "__slots__" in stream.__dict__ or any(name in stream.__dict__ for name in ("send_window", "closed", _CREDIT)):
        raise LibraryChangedError(33, "YamuxStream keeps send_window or closed other than in its instances' __dict__")
    stream.send_window = _WakesWriter("send_window")  # type: ignore[assignment]
    stream.closed = _WakesWriter("closed")  # type: ignore[assignment]
    stream.write = write  # type: ignore[method-assign]


_LIBRARY_SELECT_ONE_OF = multiselect_client.MultiselectClient.select_one_of
_HEADER = "/multistream/1.0.0"  # pitfall 35: the library's MULTISELECT_PROTOCOL_ID, checked at install


class _Pipelined(IMultiselectCommunicator):
    """Pitfall 35: the initiator's communicator for one multistream-select negotiation, sending its header and
    first proposal in one write (as go-multistream does): the header's write is held, the handshake's read of the
    peer's header is answered at once, and that header is read, and checked, before the answer to the proposal.
    Errors are the library's: ``MultiselectCommunicatorError``, which the client turns into its own."""

    def __init__(self, communicator: Any) -> None:
        self.read_writer = communicator.read_writer
        self._inner = communicator
        self._held = b""  # our header, not written yet
        self._started = False
        self._owed = False  # the peer's header is still to be read

    async def write(self, msg_str: str) -> None:
        data = encode_delim(msg_str.encode() if msg_str is not None else b"")
        if not self._started and msg_str == _HEADER:
            self._started, self._held = True, data
            return
        self._started = True
        await self._send(data)

    async def read(self) -> str:
        if self._held and not self._owed:  # the handshake reads the peer's header before anything was sent
            self._owed = True
            return _HEADER
        if self._held:  # read twice with nothing written between: send the header after all
            await self._send(b"")
        if self._owed:
            self._owed = False
            header: str = await self._inner.read()
            if header != _HEADER:
                raise MultiselectCommunicatorError(f"multiselect protocol ID mismatch: the peer sent {header[:100]!r}")
        answer: str = await self._inner.read()
        return answer

    async def _send(self, data: bytes) -> None:
        """Write what is held, then ``data``; errors as ``MultiselectCommunicator.write`` raises them."""
        data, self._held = self._held + data, b""
        try:
            await self.read_writer.write(data)
        except (IOException, AssertionError, ValueError) as error:
            raise MultiselectCommunicatorError("fail to write to multiselect communicator") from error


async def select_one_of(self: Any, protocols: Any, communicator: Any, negotiate_timeout: int = 30) -> Any:
    """Pitfall 35: the library's negotiation, over a communicator that pipelines the header and first proposal."""
    return await _LIBRARY_SELECT_ONE_OF(self, protocols, _Pipelined(communicator), negotiate_timeout)


def _pipelined_negotiation() -> None:
    """Pitfall 35: py-libp2p's multistream-select initiator wrote its header, waited for the peer's, then wrote its
    proposal: two messages (each a yamux frame, a Noise message and a send) and a round trip more than needed, for
    every stream a node opens and for the security and muxer choice of every connection it dials."""
    client = multiselect_client.MultiselectClient
    current = client.__dict__.get("select_one_of")
    if current is not select_one_of and current is not _LIBRARY_SELECT_ONE_OF:
        raise LibraryChangedError(35, "MultiselectClient.select_one_of is not the library's")
    params = ["self", "protocols", "communicator", "negotiate_timeout"]
    _expect_params(35, "MultiselectClient.select_one_of", _LIBRARY_SELECT_ONE_OF, params)
    for name in ("handshake", "try_select"):
        _expect_uses(35, "MultiselectClient.select_one_of", _LIBRARY_SELECT_ONE_OF, name)
    _expect_uses(35, "MultiselectClient.handshake", client.handshake, "MULTISELECT_PROTOCOL_ID")
    header = getattr(multiselect_client, "MULTISELECT_PROTOCOL_ID", None)
    if header != _HEADER:
        raise LibraryChangedError(35, f"the multistream header is {header!r}")
    client.select_one_of = select_one_of  # type: ignore[method-assign]


_LIBRARY_WRITE_FRAME = yamux_module.Yamux._write_frame
_HELD = "_truc_held_flags"  # pitfall 36: a Yamux session's SYN or ACK per stream id, not sent yet
# Held flags per session at most: a stream dropped without a frame (no data, no FIN, no RST) would keep its entry
# until the connection closes. Past this many, the held ones are sent as bare frames, as the library would have.
MAX_HELD = 4096


def _bare_flag(flag: int, stream_id: int) -> bytes:
    """The frame the library sends for a SYN or ACK alone: a WINDOW_UPDATE of 0 with that flag."""
    return _FRAME_HEADER.pack(0, yamux_module.TYPE_WINDOW_UPDATE, flag, stream_id, 0)


async def write_frame(self: Any, data: bytes) -> None:
    """Pitfall 36: ``Yamux._write_frame`` as the library's (one writer at a time on the session, then a checkpoint),
    without building a debug line for every frame, and with a stream's opening SYN, or the ACK that accepts it,
    carried by the stream's next DATA frame (yamux allows both on a DATA frame) instead of sent alone: a bare SYN or
    ACK is held; the next frame of its stream takes the flag if it is DATA without FIN or RST (the library reads
    those flags apart from an ACK), else the held frame is sent first, as the library would have."""
    _, kind, flags, stream_id, length = _FRAME_HEADER.unpack_from(data)
    held: dict[int, int] | None = self.__dict__.get(_HELD)
    bare = kind == yamux_module.TYPE_WINDOW_UPDATE and length == 0 and len(data) == yamux_module.HEADER_SIZE
    first = b""
    if held is not None and len(held) >= MAX_HELD:  # streams dropped without a frame: send what they hold after all
        first = b"".join(_bare_flag(f, sid) for sid, f in held.items())
        held.clear()
    if not first and bare and (flags == yamux_module.FLAG_SYN or flags == yamux_module.FLAG_ACK):
        if held is None:
            held = self.__dict__[_HELD] = {}
        held[stream_id] = flags
        return
    if held:
        flag = held.pop(stream_id, 0)
        if flag and kind == yamux_module.TYPE_DATA and not flags & (yamux_module.FLAG_FIN | yamux_module.FLAG_RST):
            data = _FRAME_HEADER.pack(0, kind, flags | flag, stream_id, length) + data[yamux_module.HEADER_SIZE :]
        elif flag:
            first += _bare_flag(flag, stream_id)
    if yamux_module.logger.isEnabledFor(logging.DEBUG):
        yamux_module.logger.debug("YAMUX TX: type=%d flags=%#x stream=%d length=%d", kind, flags, stream_id, length)
    async with self._write_lock:
        await self.secured_conn.write(first + data)
    await trio.lowlevel.checkpoint()


def _flags_ride_on_frames() -> None:
    """Pitfall 36: py-libp2p's yamux sends a stream's SYN as a frame of its own when the stream opens, and the ACK
    that accepts it as another, each a Noise message and a send, right before the stream's first DATA frame; and it
    builds a debug line for every frame it writes (a dict, a list, an f-string) whether or not it logs it."""
    session = yamux_module.Yamux
    current = session.__dict__.get("_write_frame")
    if current is not write_frame and current is not _LIBRARY_WRITE_FRAME:
        raise LibraryChangedError(36, "Yamux._write_frame is not the library's")
    _expect_params(36, "Yamux._write_frame", _LIBRARY_WRITE_FRAME, ["self", "data"])
    for name in ("_write_lock", "secured_conn", "checkpoint"):
        _expect_uses(36, "Yamux._write_frame", _LIBRARY_WRITE_FRAME, name)
    _expect_uses(36, "Yamux.open_stream", session.open_stream, "FLAG_SYN")
    _expect_uses(36, "Yamux.handle_incoming", session.handle_incoming, "FLAG_ACK")
    for name in ("logger", "FLAG_FIN", "FLAG_RST", "TYPE_WINDOW_UPDATE"):
        if not hasattr(yamux_module, name):
            raise LibraryChangedError(36, f"libp2p.stream_muxer.yamux.yamux.{name} is gone")
    session._write_frame = write_frame  # type: ignore[method-assign]


# --- per host ------------------------------------------------------------------------


def patch_swarm(
    swarm: Any,
    *,
    gate: Callable[[Any, str], Awaitable[None]],
    protector: object | None,
) -> None:
    """The swarm of one host: no auto-connector (14), the membership gate (ours), a dial block we can lift (19), our pnet (17),
    no retries inside a dial (22).

    ``gate(muxed_conn, direction)`` raises to refuse a connection once Noise
    authenticated the remote peer id, before the swarm registers it.
    """
    connector = getattr(swarm, "auto_connector", None)
    _expect_params(14, "Swarm.auto_connector.maybe_connect", getattr(connector, "maybe_connect", None), [])

    async def no_auto_connect() -> None:
        return None

    connector.maybe_connect = no_auto_connect  # type: ignore[union-attr]

    _expect_params(19, "Swarm.unblock_peer", getattr(swarm, "unblock_peer", None), ["peer_id"])

    if not isinstance(getattr(swarm, "retry_config", None), RetryConfig):
        raise LibraryChangedError(22, "Swarm.retry_config is not a RetryConfig")
    # 22: one attempt per dial; our dialer's backoff decides when to try again. The library's 3 retries made every
    # dial of a peer that is not up yet 4 connection attempts and held one of our dial slots for ~0.7 s.
    swarm.retry_config = RetryConfig(max_retries=0)

    original = getattr(swarm, "add_conn", None)
    _expect_params("the membership gate", "Swarm.add_conn", original, ["muxed_conn", "direction"])

    async def gated_add_conn(muxed_conn: object, direction: str = "unknown") -> object:
        await gate(muxed_conn, direction)
        return await original(muxed_conn, direction)  # type: ignore[misc]

    swarm.add_conn = gated_add_conn

    if protector is not None:
        if getattr(swarm, "psk", "missing") is not None:
            raise LibraryChangedError(17, "the swarm has no psk attribute")
        swarm.psk = protector


def patch_host(host: Any) -> None:
    """Pitfall 24: the host identifies every peer it connects to (a stream each way, a signed peer record made and
    checked) and keeps what it learns in the peerstore; nothing of ours reads it (addresses come from the directory,
    protocols from the version). The node still answers identify (tests/node/test_identify.py, the js peer)."""
    schedule = getattr(host, "_schedule_identify", None)
    _expect_params(24, "BasicHost._schedule_identify", schedule, ["peer_id", "reason"])

    def no_outbound_identify(peer_id: Any, *, reason: str) -> None:
        return None

    host._schedule_identify = no_outbound_identify


def patch_pubsub_spawns(pubsub: Any, router: Any) -> None:
    """Pitfall 25: for every topic a peer subscribes to, pubsub spawns three service tasks (flush what waited for
    this peer, replay recent messages of the topic, graft the peer if the topic's mesh is short), ~290 spawns per
    peer with 96 topics; nearly all return at once. Called once pubsub runs: its manager's ``run_task`` skips those
    three when the check they start with would return (same conditions, read before the spawn instead of after).
    A replay is also skipped when the topic has nothing in the message cache's window: the task would send
    nothing, only mark the topic as replayed to that peer, which matters to no later step (pubsub's own replay
    when the peer's stream registers checks the cache again)."""
    manager = getattr(pubsub, "manager", None)
    spawn = getattr(manager, "run_task", None)
    _expect_uses(25, "Pubsub.handle_subscription", type(pubsub).handle_subscription, "_replay_recent_messages")
    for name in ("flush_pending_messages", "on_peer_subscribed", "_pending_messages", "mesh", "degree_low", "mcache"):
        if not hasattr(router, name):
            raise LibraryChangedError(25, f"GossipSub.{name} is gone")
    if not callable(spawn) or not hasattr(pubsub, "_replay_recent_messages") or not hasattr(pubsub, "peers"):
        raise LibraryChangedError(25, "Pubsub.manager.run_task or Pubsub._replay_recent_messages is gone")
    if getattr(router, "adaptive_gossip_enabled", True):
        raise LibraryChangedError(25, "adaptive gossip is on: the mesh's lower bound is not degree_low")
    flush, replay, subscribed = router.flush_pending_messages, pubsub._replay_recent_messages, router.on_peer_subscribed
    if not callable(getattr(router.mcache, "window", None)):
        raise LibraryChangedError(25, "GossipSub.mcache.window is gone")

    def run_task(async_fn: Any, *args: Any, **kwargs: Any) -> None:
        if async_fn == flush and args and args[0] not in router._pending_messages:
            return
        if async_fn == replay and len(args) == 2 and (args[0] not in pubsub.peers or not router.mcache.window(args[1])):
            return
        if async_fn == subscribed and len(args) == 2:
            mesh = router.mesh.get(args[1])
            if mesh is None or (args[0] not in mesh and len(mesh) >= router.degree_low):
                return
        spawn(async_fn, *args, **kwargs)

    manager.run_task = run_task  # type: ignore[union-attr]


def coalesce_rpc_writes(pubsub: Any) -> None:
    """Pitfall 31: pubsub's sending loop for a peer writes each queued RPC with a stream write of its own, so a
    burst (the GRAFTs for every short mesh a new peer's subscriptions fill, ~19 per connection end in a 96-topic
    mesh) costs a yamux frame, a Noise message and a socket send each, and as many reads at the peer. Called on
    one Pubsub before it runs: its loop takes the first RPC as the library does, then whatever else is already
    queued (up to ``RPC_WRITE_BYTES``), and writes them, each length-prefixed as the library does, in one write.
    The stream's bytes are the library's, in the library's order; only how they are cut into writes differs."""
    loop = getattr(type(pubsub), "handle_sending_messages", None)
    _expect_params(31, "Pubsub.handle_sending_messages", loop, ["self", "peer_id", "stream", "queue"])
    _expect_uses(31, "Pubsub.handle_sending_messages", loop, "write_msg")
    _expect_uses(31, "Pubsub.write_msg", getattr(type(pubsub), "write_msg", None), "encode_uvarint")
    _expect_params(31, "Pubsub._handle_dead_peer", getattr(pubsub, "_handle_dead_peer", None), ["peer_id"])
    _expect_uses(31, "RpcQueue.pop", rpc_queue.RpcQueue.pop, "_queue")
    _expect_params(31, "PriorityQueue.pop", getattr(rpc_queue.PriorityQueue, "pop", None), ["self"])

    async def handle_sending_messages(peer_id: Any, stream: Any, queue: Any) -> None:
        try:
            while True:
                rpc = await queue.pop()
                if rpc is None:  # closed: the peer is gone
                    return
                parts = [encode_varint_prefixed(rpc.SerializeToString())]
                size = len(parts[0])
                while size < RPC_WRITE_BYTES and (more := queue._queue.pop()) is not None:
                    parts.append(encode_varint_prefixed(more.SerializeToString()))
                    size += len(parts[-1])
                try:
                    await stream.write(b"".join(parts))
                except (StreamClosed, StreamReset):
                    pubsub._handle_dead_peer(peer_id)
                    return
        except Exception:  # as the library's loop: any failure ends the peer
            pubsub._handle_dead_peer(peer_id)

    pubsub.handle_sending_messages = handle_sending_messages


def patch_router(router: Any) -> None:
    """The gossipsub router of one host: no equivocation cache (4), no opportunistic grafting (15), no idle scoring (21),
    no gossip work for quiet topics (29)."""
    _expect_params(4, "GossipSub._check_equivocation", getattr(router, "_check_equivocation", None), ["msg"])
    router._check_equivocation = lambda msg: True
    graft = getattr(router, "_perform_opportunistic_grafting", None)
    _expect_params(15, "GossipSub._perform_opportunistic_grafting", graft, ["topic", "peers_to_graft"])
    router._perform_opportunistic_grafting = lambda topic, peers_to_graft: 0
    _skip_neutral_scoring(router)
    _gossip_only_what_is_recent(router)


def _gossip_only_what_is_recent(router: Any) -> None:
    """Pitfall 29: every heartbeat, ``gossip_heartbeat`` runs ``_handle_topic_heartbeat`` for every topic, and that
    first picks peers to top the topic's peer set up to D (filtering every subscriber of the topic through the
    backoff table) then throws the pick away (the heartbeat keeps only the IHAVE targets), before it looks whether
    the message cache has anything to gossip. With 96 topics and 94 peers that wasted pick was the largest part of
    an idle node's CPU. The same result, made only for topics with something in the cache's window."""
    heartbeat = getattr(router, "gossip_heartbeat", None)
    _expect_params(29, "GossipSub.gossip_heartbeat", heartbeat, [])
    _expect_uses(29, "GossipSub.gossip_heartbeat", heartbeat, "_handle_topic_heartbeat")
    params = ["topic", "current_peers", "is_fanout", "peers_to_gossip"]
    _expect_params(29, "GossipSub._handle_topic_heartbeat", getattr(router, "_handle_topic_heartbeat", None), params)
    for name in ("mesh", "fanout", "mcache"):
        if not hasattr(router, name):
            raise LibraryChangedError(29, f"GossipSub.{name} is gone")

    def gossip_heartbeat() -> defaultdict[Any, dict[str, list[bytes]]]:
        peers_to_gossip: defaultdict[Any, dict[str, list[bytes]]] = defaultdict(dict)
        window = router.mcache.window
        for topic, peers in router.mesh.items():
            if window(topic):
                router._handle_topic_heartbeat(topic, peers, peers_to_gossip=peers_to_gossip)
        for topic, peers in router.fanout.items():
            if topic not in router.mesh and window(topic):
                router._handle_topic_heartbeat(topic, peers, peers_to_gossip=peers_to_gossip)
        return peers_to_gossip

    router.gossip_heartbeat = gossip_heartbeat


def _skip_neutral_scoring(router: Any) -> None:
    """Pitfall 21: with the default (neutral) score parameters every peer scores 0 and no counter decays, yet each
    heartbeat scores every peer of every topic (``_maintain_mesh_quality``: can a better-scored peer replace the
    worst mesh peer? never, all are 0) and multiplies every counter by 1.0 (``on_heartbeat``). With 96 topics and
    94 peers that was the largest part of a heartbeat. Both are skipped only while the parameters are neutral."""
    scorer = getattr(router, "scorer", None)
    params = getattr(scorer, "params", None)
    if not isinstance(params, ScoreParams):
        raise LibraryChangedError(21, "GossipSub.scorer.params is not a ScoreParams")
    if not _neutral(params):
        raise LibraryChangedError(21, "the router was given score parameters: skipping the scoring would change behaviour")
    _expect_params(21, "GossipSub._maintain_mesh_quality", getattr(router, "_maintain_mesh_quality", None), ["topic"])
    _expect_params(21, "PeerScorer.on_heartbeat", getattr(scorer, "on_heartbeat", None), ["dt_seconds"])

    async def no_mesh_quality(topic: str) -> None:
        return None

    router._maintain_mesh_quality = no_mesh_quality
    scorer.on_heartbeat = lambda dt_seconds=1.0: None  # type: ignore[union-attr]


def _neutral(p: ScoreParams) -> bool:
    """Every score is 0 whatever happens, and decay multiplies by 1: the library's defaults."""
    topics = (p.p1_time_in_mesh, p.p2_first_message_deliveries, p.p3_mesh_message_deliveries, p.p4_invalid_messages)
    weights = (p.p5_behavior_penalty_weight, p.p6_appl_slack_weight, p.p7_ip_colocation_weight)
    decays = (p.p5_behavior_penalty_decay, p.p6_appl_slack_decay)
    return (
        all(t.weight == 0 and t.decay == 1 for t in topics)
        and all(w == 0 for w in weights)
        and all(d == 1 for d in decays)
        and p.app_specific_score_fn is None
    )
