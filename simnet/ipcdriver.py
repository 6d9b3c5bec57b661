"""The IPC driver: one `truc run` per agency (processes mode), reached through its socket.

The same calls an integrator makes (submit, inbox.list, status.send,
document.track, node.info) through the blocking IPC client (cli.client, via
processes.py), each in a worker thread so the flow's trio tasks go on
meanwhile. Kill is a real SIGKILL, and restart a new process on the same
home. There is no :class:`Wire`: delay, loss and partitions would need
network namespaces with netem around each process, which this mode does not
set up (docs/simnet.md says what this machine's kernel lacks), and a
re-key, a join or a rogue member would need the authority's hand inside the
run; the fault registry marks them skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from identity.sealing import FileSource
from protocol.agency import AgencyCode
from protocol.document import BusinessType, DocumentMeta
from protocol.errors import NodeNotRunningError, NotFoundError, TrucError
from protocol.ids import Digest
from protocol.status import HistoryItem, Pending, Phase, Role, StatusCode, ThreadState
from store.records import DeliveryState

from .config import Mode
from .driver import Delivery, InboxItem, NodeDown, Pace, Wire, node_name
from .processes import FAST_SYNC, NodeProcess, ProcessNetwork

T = TypeVar("T")
INBOX_PAGE = 1000


class IpcDriver:
    """Nodes as `truc run` processes on 127.0.0.1 (provisioned when the driver is made)."""

    def __init__(self, root: Path, codes: Sequence[AgencyCode], names: dict[AgencyCode, str]) -> None:
        self.mode = Mode.PROCESSES
        self.pace = Pace(poll_s=1.0, settle_poll_s=2.0, settle_cap_s=600.0)
        self.wire: Wire | None = None
        self.clock: trio.abc.Clock | None = None
        self.codes = list(codes)
        self.root = root
        self.net = ProcessNetwork(root, {node_name(c): [str(c)] for c in codes}, network="simnet", names=names, tune=FAST_SYNC)

    @contextmanager
    def session(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.net.stop_all()

    def describe(self) -> str:
        return f"{len(self.codes)} `truc run` processes"

    def stats(self) -> dict[str, Any]:
        return {}

    def _node(self, code: AgencyCode) -> NodeProcess:
        return self.net[node_name(code)]

    async def _blocking(self, fn: Callable[[], T]) -> T:
        """Starting and stopping processes: finished even if the run is cancelled meanwhile (no orphan process)."""
        return await trio.to_thread.run_sync(fn)

    async def _call(self, agency: AgencyCode, method: str, /, **params: Any) -> Any:
        """One IPC call to the node hosting ``agency``; a node that is down (or dies meanwhile) is NodeDown.

        Abandoned if the run is cancelled: the thread's answer is no longer
        wanted, and the session stops the processes, which ends the call.
        """
        return await self._on(agency, functools.partial(self._node(agency).call, method, **params))

    async def _on(self, agency: AgencyCode, call: Callable[[], T]) -> T:
        """``call`` (IPC to the node hosting ``agency``) in a thread; a node that is down (or dies meanwhile) is NodeDown."""
        try:
            return await trio.to_thread.run_sync(call, abandon_on_cancel=True)  # type: ignore[call-arg]  # stale trio stubs
        except NodeNotRunningError:
            raise NodeDown(agency) from None

    # --- nodes ----------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> int:
        await self._blocking(self.net.start_all)
        return len(self.net.nodes)

    async def restore(self) -> None:
        for node in self.net.nodes.values():
            if not node.running:
                await self._blocking(node.start)

    async def kill(self, code: AgencyCode) -> dict[str, str]:
        await self._blocking(self._node(code).kill)
        return {"signal": "SIGKILL"}

    async def restart(self, code: AgencyCode) -> None:
        await self._blocking(self._node(code).start)

    # --- what an agency's document system does --------------------------------------------

    async def submit(
        self, sender: AgencyCode, recipients: Sequence[AgencyCode], meta: DocumentMeta, files: Sequence[FileSource], key: str
    ) -> Digest:
        result = await self._call(
            sender,
            "submit",
            **{
                "from": str(sender),
                "to": [str(r) for r in recipients],
                "subject": meta.subject,
                "number": meta.number,
                "type": meta.doc_type,
                "files": [{"name": f.name, "mime": f.media_type, "data": f.data} for f in files],
                "idempotency_key": key,
            },
        )
        return Digest.parse(result["id"])

    async def submit_edxml(self, agency: AgencyCode, package: bytes) -> Digest:
        def send() -> dict[str, Any]:
            with self._node(agency).client() as c:
                return c.edxml_submit(package)

        return Digest.parse((await self._on(agency, send))["doc"])

    async def export_edxml(self, doc: Digest, code: AgencyCode) -> bytes:
        out = self.root / "exports" / f"{doc}-{node_name(code)}.edxml"
        out.parent.mkdir(exist_ok=True)

        def collect() -> bytes:
            with self._node(code).client() as c:
                c.edxml_export(str(doc), out, code=str(code))
            try:
                return out.read_bytes()
            finally:
                out.unlink()

        return await self._on(code, collect)

    async def inbox(self, code: AgencyCode, *, after: int = 0) -> list[InboxItem]:
        items = []
        while True:
            page = await self._call(code, "inbox.list", code=str(code), after=after, limit=INBOX_PAGE)
            items += [InboxItem(i["seq"], Digest.parse(i["id"]), BusinessType(i["business"])) for i in page["items"]]
            if not page["more"]:
                return items
            after = page["next_after"]

    async def _view(self, doc: Digest, *, at: AgencyCode, thread: AgencyCode) -> tuple[dict[str, Any], dict[str, Any]]:
        """``document.track`` at the node hosting ``at``: the whole answer, and ``thread``'s part of it."""
        track = await self._call(at, "document.track", id=str(doc))
        for view in track["recipients"]:
            if view["code"] == str(thread):
                return track, view
        raise NotFoundError(f"{doc.short()} is not addressed to {thread} at {at}'s node")

    async def thread_state(self, doc: Digest, recipient: AgencyCode) -> ThreadState:
        _, view = await self._view(doc, at=recipient, thread=recipient)
        return ThreadState(Phase(view["phase"]), Pending(view["waiting_for"] or Pending.NONE.value))

    async def send_status(
        self, doc: Digest, author: AgencyCode, code: StatusCode, *, note: str, to: AgencyCode | None = None
    ) -> None:
        target = {"to": str(to)} if to is not None else {}
        await self._call(author, "status.send", id=str(doc), code=str(code), note=note, **{"as": str(author)}, **target)

    async def deliveries(self, sender: AgencyCode, doc: Digest, recipients: Sequence[AgencyCode]) -> dict[AgencyCode, Delivery]:
        track = await self._call(sender, "document.track", id=str(doc))
        wanted = {str(r): r for r in recipients}
        return {
            wanted[v["code"]]: Delivery(DeliveryState(v["state"]), v["delivered_at"])
            for v in track["recipients"]
            if v["code"] in wanted
        }

    async def created_at(self, sender: AgencyCode, doc: Digest) -> int | None:
        created: int | None = (await self._call(sender, "document.track", id=str(doc)))["created_at"]
        return created

    async def history(self, doc: Digest, *, at: AgencyCode, thread: AgencyCode) -> list[HistoryItem]:
        track, view = await self._view(doc, at=at, thread=thread)
        return [
            HistoryItem(
                s["seq"],
                s["at"],
                bytes.fromhex(s["id"]),
                StatusCode.parse(s["code"]),
                Role.SENDER if s["author"] == track["from"] else Role.RECIPIENT,
            )
            for s in view["statuses"]
        ]

    async def pending(self) -> int:
        total = 0
        for code in self.codes:
            try:
                total += (await self._call(code, "node.info"))["pending_deliveries"]
            except (NodeDown, TrucError):
                pass  # killed or still starting: its outbox is counted again once it answers
        return total
