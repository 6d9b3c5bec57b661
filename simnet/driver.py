"""How the flow reaches the nodes: one :class:`Driver` protocol, two implementations.

* inprocess.py: the nodes run in this process (virtual and libp2p modes);
  the driver calls each node's engine, as an integrator's call would reach it.
* ipcdriver.py: one `truc run` per agency (processes mode); the driver
  talks to each through the IPC client (cli.client), as an integrator does.

The flow (sim.py) sees agencies, never nodes: each simulated node hosts one
agency. Everything a driver answers is plain data (below), so the flow, the
agent and the verdict are the same in every mode. A call to an agency whose
node is down, or goes down during the call, raises :class:`NodeDown`; an
error the node raised reaches the caller as it is (a ``TrucError``).

The network faults that only a node in this process can undergo (a
partition, link delay and loss, a re-keyed agency, a joining one, a rogue
member) are the separate :class:`Wire` protocol: ``Driver.wire`` is None
where the mode cannot inject them, and the fault registry (injection.py)
says which mode supports which.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from identity.sealing import FileSource
from protocol.agency import AgencyCode
from protocol.document import BusinessType, DocumentMeta
from protocol.ids import Digest
from protocol.status import HistoryItem, StatusCode, ThreadState
from store.records import DeliveryState

from .config import Mode


def node_name(code: AgencyCode) -> str:
    """The node hosting ``code`` (one agency per node): its directory under the run's root, and its name in reports."""
    return code.short().lower()


class NodeDown(Exception):
    """The node hosting this agency is down (or stopped during the call)."""


@dataclass(frozen=True)
class InboxItem:
    seq: int
    doc: Digest
    business: BusinessType  # as the recipient's node recorded it


@dataclass(frozen=True)
class Delivery:
    """The sender's record of one document to one recipient."""

    state: DeliveryState
    delivered_at: int | None  # ms, when the recipient's 01 came back


@dataclass(frozen=True)
class Pace:
    """How often the flow looks, and how long it waits for the network to settle.

    Virtual time is free and real time is not: the process mode polls more
    often and settles for at most ten minutes.
    """

    poll_s: float  # the agencies' systems look at their inboxes and threads this often
    settle_poll_s: float  # while settling, whether everything is done is checked this often
    settle_cap_s: float | None = None  # at most this long to settle, whatever the configuration says


@dataclass(frozen=True)
class Forgeries:
    """What became of the envelopes a rogue member injected."""

    stored: list[str]  # "<doc>@<node>" for every node that stored one
    rejections: int  # envelopes and gossip messages the nodes refused, in all


class Wire(Protocol):
    """The network faults a mode with the nodes in this process can inject."""

    async def partition(self, a: set[AgencyCode], b: set[AgencyCode]) -> None: ...

    async def heal(self) -> None: ...

    def crossing(self) -> int:
        """Connections across the current partition, as the nodes themselves see them."""
        ...

    def set_delay(self, ms: float) -> None: ...

    def set_loss(self, fraction: float) -> None: ...

    async def revoke(self, code: AgencyCode) -> None:
        """The authority revokes ``code``'s signing key and lists a new one."""
        ...

    async def install_key(self, code: AgencyCode) -> tuple[int, int]:
        """``code``'s operator installs the new key; returns (directory serial, documents re-issued)."""
        ...

    async def join(self, code: AgencyCode) -> int:
        """Add ``code`` and its node through a directory delta and start it; returns the serial."""
        ...

    async def forge(self) -> tuple[AgencyCode, list[Digest]]:
        """A member turns rogue and injects forged envelopes; returns it and their ids."""
        ...

    def forgeries(self, forged: set[Digest]) -> Forgeries: ...


class Driver(Protocol):
    mode: Mode
    pace: Pace
    wire: Wire | None
    clock: trio.abc.Clock | None  # for trio.run: a virtual clock, or None for real time

    def session(self) -> AbstractContextManager[None]:
        """Around the trio run: whatever the mode changes in this process (or starts outside it), undone on exit."""
        ...

    def describe(self) -> str:
        """How the nodes run, for the first line of the run."""
        ...

    def stats(self) -> dict[str, Any]:
        """What the mode itself counted (the virtual wire's messages), for the report."""
        ...

    async def start(self, nursery: trio.Nursery) -> int:
        """Start every node that belongs to the network from the start; returns how many."""
        ...

    async def restore(self) -> None:
        """After the workload: heal, clear link faults, restart every node that is down."""
        ...

    async def submit(
        self, sender: AgencyCode, recipients: Sequence[AgencyCode], meta: DocumentMeta, files: Sequence[FileSource], key: str
    ) -> Digest: ...

    async def submit_edxml(self, agency: AgencyCode, package: bytes) -> Digest:
        """``agency``'s software sends an edXML package (edoc or status); returns the document it made or is about."""
        ...

    async def export_edxml(self, doc: Digest, code: AgencyCode) -> bytes:
        """``code``'s software collects ``doc`` as an edXML package (attachments as they were sent)."""
        ...

    async def inbox(self, code: AgencyCode, *, after: int = 0) -> list[InboxItem]: ...

    async def thread_state(self, doc: Digest, recipient: AgencyCode) -> ThreadState:
        """The thread's state at the recipient's node."""
        ...

    async def send_status(
        self, doc: Digest, author: AgencyCode, code: StatusCode, *, note: str, to: AgencyCode | None = None
    ) -> None: ...

    async def deliveries(self, sender: AgencyCode, doc: Digest, recipients: Sequence[AgencyCode]) -> dict[AgencyCode, Delivery]:
        """The sender's delivery records for ``recipients`` (those it has)."""
        ...

    async def created_at(self, sender: AgencyCode, doc: Digest) -> int | None:
        """When the sender's node sealed ``doc`` (ms), if it has it."""
        ...

    async def history(self, doc: Digest, *, at: AgencyCode, thread: AgencyCode) -> list[HistoryItem]:
        """The statuses of ``thread``'s thread about ``doc`` as the node hosting ``at`` holds them."""
        ...

    async def pending(self) -> int:
        """Deliveries not yet receipted, in all running nodes' outboxes."""
        ...

    async def kill(self, code: AgencyCode) -> dict[str, str]:
        """Stop the node hosting ``code`` abruptly; returns how, for the timeline."""
        ...

    async def restart(self, code: AgencyCode) -> None: ...
