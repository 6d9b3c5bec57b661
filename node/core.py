"""What every part of a node shares: its configuration, store, trust, keys, clock, and its lifecycle.

One ``NodeCore`` per node, built first by ``node/assemble.py`` and handed
to each part. It owns the state more than one part reads or writes:

* ``trust`` — the directory in use; replaced (never mutated) when a newer
  serial applies (node/membership.py), so every reader sees the new one;
* the header cache and the documents of batches not yet written
  (``pending_docs``), and the envelopes being ingested (``inflight``), so
  that building a batch sees what the batches before it will write;
* the lifecycle: work in flight and ``stopping`` (SIGTERM's grace, node/daemon.py).

Everything else is owned by exactly one part: delivery records by the outbox,
inbox and statuses by node/statuses.py, and so on (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import trio

from identity.keys import AgencyKeys, Rng
from identity.trust import Trust
from protocol.agency import AgencyCode
from protocol.config import NodeConfig
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, Envelope, Kind, MessageHeader
from protocol.errors import NotFoundError, NotHostedError, ShuttingDownError
from protocol.ids import Digest
from store.store import Store

from .committer import GroupCommitter, Offload
from .events import Event, EventHub
from .log import Log
from .metrics import Metrics

Clock = Callable[[], int]
Post = list[Callable[[], None]]  # actions to run once a batch is durable
HEADER_CACHE = 4096
P = ParamSpec("P")
R = TypeVar("R")


class HasCore(Protocol):
    n: NodeCore


S = TypeVar("S", bound=HasCore)


def in_flight(fn: Callable[Concatenate[S, P], Coroutine[Any, Any, R]]) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Count a method as in-flight work: on SIGTERM the node lets it finish (within the grace) before stopping.

    For work that peers and the node itself start (ingest, completing a
    document); integrators' requests are counted whole, answer included, by
    the IPC server (node/ipc.py), so submit and the like are not counted twice.
    """

    async def counted(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.n.work():
            return await fn(self, *args, **kwargs)

    functools.update_wrapper(counted, fn)
    return counted


class NodeCore:
    def __init__(
        self,
        *,
        config: NodeConfig,
        store: Store,
        trust: Trust,
        chain: list[Envelope],
        hosted: dict[AgencyCode, AgencyKeys],
        peer_id: str,
        clock: Clock,
        rng: Rng,
        offload: Offload,
        log: Log,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.store = store
        self.trust = trust
        self.chain = list(chain)  # the directory links, served to peers that ask (sync ``dir``)
        self.hosted = hosted
        self.peer_id = peer_id
        self.clock = clock
        self.rng = rng
        self.random = random.Random(rng(16))
        self.offload = offload
        self.log = log
        self.metrics = metrics
        self.events = EventHub()
        self.committer = GroupCommitter(store, offload)
        self.started_at = clock()
        self.inflight: dict[Digest, trio.Event] = {}  # envelopes being ingested: set once durable
        self.pending_docs: dict[Digest, MessageHeader] = {}  # documents in batches not yet written
        self._headers: OrderedDict[Digest, MessageHeader] = OrderedDict()
        self._nursery: trio.Nursery | None = None
        self.stopping = False
        self.in_flight = 0
        self._idle = trio.Event()

    # --- lifecycle --------------------------------------------------------------------

    def attach(self, nursery: trio.Nursery) -> None:
        """The nursery background work is spawned in (the engine's, once it runs)."""
        self._nursery = nursery

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        assert self._nursery is not None, "node not running"
        self._nursery.start_soon(fn, *args)

    @contextlib.contextmanager
    def work(self) -> Iterator[None]:
        """Count the block as in-flight work: on SIGTERM the node lets it finish within the grace."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.stopping and not self.in_flight:
                self._idle.set()

    def check_accepting(self) -> None:
        """Raise ShuttingDownError once the node is stopping (new IPC requests are refused)."""
        if self.stopping:
            raise ShuttingDownError()

    def begin_shutdown(self) -> None:
        self.stopping = True
        if not self.in_flight:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no work is in flight (after :meth:`begin_shutdown`)."""
        await self._idle.wait()

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.publish(Event(kind, self.clock(), fields))

    # --- shared reads -----------------------------------------------------------------

    def keys(self, code: AgencyCode) -> AgencyKeys:
        """The secret keys of a hosted agency; raises NotHostedError naming the hosted ones."""
        try:
            return self.hosted[code]
        except KeyError:
            raise NotHostedError(f"{code} (this node hosts {', '.join(str(c) for c in sorted(self.hosted))})") from None

    def check_own_key(self, code: AgencyCode) -> None:
        """Raise unless the directory accepts ``code``'s current key now (revoked, unknown, outside its window)."""
        self.trust.signing_key(code, self.keys(code).signing.kid, self.clock())

    def host_peer(self, code: AgencyCode) -> str:
        return self.trust.host_of(code).peer_id

    def interested_shards(self) -> set[str]:
        hosted = {c.shard for c in self.hosted}
        if self.config.relay_shards is None:
            return hosted | self.trust.directory.shards()
        return hosted | set(self.config.relay_shards)

    def known(self, env_id: Digest) -> bool:
        """Stored, being stored, or stored once and dropped."""
        return env_id in self.inflight or self.store.known(env_id)

    def doc_header(self, doc_id: Digest) -> MessageHeader | None:
        h = self.pending_docs.get(doc_id) or self._headers.get(doc_id)
        if h is not None:
            return h
        raw = self.store.get_envelope(doc_id)
        if raw is None:
            return None
        env = Envelope.decode(raw)
        if not isinstance(env.header, MessageHeader) or env.kind is not Kind.DOCUMENT:
            return None
        self.remember_header(doc_id, env.header)
        return env.header

    def remember_header(self, doc_id: Digest, h: MessageHeader) -> None:
        """Keep a stored document's header at hand: its receipt and statuses need it (decoding it again from the
        stored envelope, 16 KiB and more, was ~6 % of a sending node's busy time)."""
        self._headers[doc_id] = h
        if len(self._headers) > HEADER_CACHE:
            self._headers.popitem(last=False)

    def envelope(self, env_id: Digest) -> Envelope | None:
        raw = self.store.get_envelope(env_id)
        return Envelope.decode(raw, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES) if raw is not None else None

    def blocks_from(self, h: MessageHeader) -> Iterator[bytes]:
        """A document's sealed blocks from the store, in order (NotFoundError for a missing one)."""
        for digest in h.body.blocks:
            block = self.store.get_block(digest)
            if block is None:
                raise NotFoundError(f"block {digest.short()}")
            yield block

    def blocks_missing(self, h: MessageHeader) -> list[int]:
        """Blocks not here, or not whole (a file a power cut left short before its document completed): one stat each."""
        return [i for i, d in enumerate(h.body.blocks) if self.store.block_size(d) != h.body.sealed_size(i)]


class Part:
    """A part of a node built on its core: the names every part reads, given once.

    ``trust`` is not among them: it is replaced when a newer directory serial
    applies, so parts read ``self.n.trust`` each time.
    """

    def __init__(self, n: NodeCore) -> None:
        self.n = n
        self.store = n.store
        self.committer = n.committer
        self.config = n.config
        self.hosted = n.hosted
        self.clock = n.clock
        self.log = n.log
        self.metrics = n.metrics
