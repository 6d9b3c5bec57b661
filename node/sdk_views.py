"""What the SDK's list calls answer, read from the node (docs/sdk.md §4): rows in the SDK's field names.

Read-only, like node/views.py (whose inbox and track views these reuse).
Ids are Trục's: a document's id (64 hex digits) is its ``docId`` at both
ends; a status's ``docId`` is the id of its signed status envelope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from identity.directory import Directory
from protocol.agency import AgencyCode
from protocol.ids import Digest
from protocol.sdk import wall_time
from protocol.status import StatusCode
from store.records import DocRole

from . import views

if TYPE_CHECKING:
    from .engine import Engine

MAX_ROWS = 1000  # rows one list call answers; the system calls again after acknowledging them
PAGE = 1000  # inbox entries read from the store at a time
STATUS_TEXT = {
    StatusCode.ARRIVED: "Đã đến (01)",
    StatusCode.REJECTED: "Từ chối (02)",
    StatusCode.ACCEPTED: "Đã tiếp nhận (03)",
    StatusCode.ASSIGNED: "Đã phân công (04)",
    StatusCode.PROCESSING: "Đang xử lý (05)",
    StatusCode.FINISHED: "Đã hoàn thành (06)",
    StatusCode.TAKEBACK_REQUESTED: "Đề nghị thu hồi (13)",
    StatusCode.AGREED: "Đồng ý (15)",
    StatusCode.REFUSED: "Không đồng ý (16)",
}
SEND_STATUS = {"pending": ("processing", "đang gửi"), "delivered": ("done", "đã gửi đến"), "failed": ("fail", "gửi lỗi")}


@dataclass(frozen=True)
class Pending:
    """One row of getReceivedEdocList: a document or status for ``to`` not yet acknowledged."""

    id: Digest
    kind: str  # "edoc" | "status"
    sender: str
    to: AgencyCode
    at: int
    doc: Digest  # the document (a status's: the one it is about)


class Inboxes:
    """Unacknowledged documents per agency; remembers where each inbox's acknowledged head ends (a scan hint)."""

    def __init__(self, e: Engine) -> None:
        self.e = e
        self._head: dict[AgencyCode, int] = {}

    def documents(self, codes: Iterable[AgencyCode], limit: int = MAX_ROWS) -> list[Pending]:
        """Documents in the inboxes of ``codes`` not acknowledged yet, oldest first per agency."""
        out: list[Pending] = []
        for code in codes:
            after = self._head.get(code, 0)
            head = True  # everything before ``after`` is acknowledged
            while len(out) < limit:
                page = self.e.store.inbox(code, after=after, limit=PAGE)
                for seq, entry in page:
                    if entry.acked_at:
                        if head:
                            self._head[code] = seq
                        continue
                    head = False
                    doc = Digest(entry.id)
                    out.append(Pending(doc, "edoc", entry.sender, code, entry.received_at, doc))
                    if len(out) == limit:
                        break
                if len(page) < PAGE:
                    break
                after = page[-1][0]
        return out

    def statuses(self, codes: Iterable[AgencyCode], limit: int = MAX_ROWS) -> list[Pending]:
        """Statuses addressed to ``codes`` (their documents' recipients', a sender's 13s) not yet acknowledged."""
        mine = set(codes)
        out: list[Pending] = []
        for doc_id, rec in self.e.store.docs():
            if rec.role is DocRole.RELAYED:
                continue
            parties = [c for c in (AgencyCode.parse(rec.sender), *(AgencyCode.parse(t) for t in rec.to)) if c in mine]
            for code in dict.fromkeys(parties):
                for sid, author, r in self.e.edxml.status_items(doc_id, code):
                    if not self.e.store.status_acked(code, sid):
                        out.append(Pending(sid, "status", str(author), code, r.received_at or r.at, doc_id))
        out.sort(key=lambda p: p.at)
        return out[:limit]


def row(p: Pending, offset_min: int) -> dict[str, Any]:
    when = wall_time(p.at, offset_min)
    return {
        "docId": str(p.id),
        "serviceType": "eDoc",
        "messageType": p.kind,
        "created_time": when,
        "updated_time": when,
        "from": p.sender,
        "to": str(p.to),
        "status": "initial",
        "status_desc": "chờ nhận: gọi updateStatus(done) khi đã lưu",
    }


def sent_rows(e: Engine, doc_id: Digest, offset_min: int) -> list[dict[str, Any]]:
    """getSentEdocList: one row per recipient of a document sent from this node (its delivery and latest status)."""
    track = views.track(e, doc_id)
    ref = e.store.edxml_ref(doc_id)
    notation = f"{ref.number}/{ref.notation}" if ref is not None and ref.notation else (ref.number if ref else "")
    rows = []
    for r in track["recipients"]:
        send, send_desc = SEND_STATUS.get(r["state"], ("processing", r["state"]))
        latest = r["statuses"][-1] if r["statuses"] else None
        arrived = next((s for s in r["statuses"] if s["code"] == "01"), None)
        code = StatusCode(int(latest["code"])) if latest else None
        rows.append(
            {
                "serviceType": "eDoc",
                "senderDocId": str(doc_id),
                "receiverDocId": str(doc_id),
                "fromCode": track["from"],
                "toCode": r["code"],
                "title": track["subject"],
                "notation": notation,
                "messageType": "edoc",
                "sentTime": wall_time(track["created_at"], offset_min),
                "receivedTime": wall_time(arrived["received_at"] or arrived["at"], offset_min) if arrived else "",
                "sendStatus": send,
                "sendStatusDesc": send_desc if not r["last_error"] or send == "done" else f"{send_desc}: {r['last_error']}",
                "receiveStatus": latest["code"] if latest else "",
                "receiveStatusDesc": STATUS_TEXT[code] if code else "",
            }
        )
    return rows


def sent_documents(e: Engine, codes: Iterable[AgencyCode], limit: int = 100) -> list[Digest]:
    """The newest documents ``codes`` sent from this node."""
    mine = {str(c) for c in codes}
    found = [(rec.created_at, doc_id) for doc_id, rec in e.store.docs() if rec.role is DocRole.SENT and rec.sender in mine]
    found.sort(reverse=True)
    return [d for _, d in found[:limit]]


def agencies(d: Directory, call: str, offset_min: int) -> list[dict[str, Any]]:
    """getAgenciesList, getAgenciesListQD20, getSynchronizeUnit: the signed directory's agencies, codes in both forms."""
    codes = sorted(d.agencies)
    ids = {c: i + 1 for i, c in enumerate(codes)}
    out = []
    for c in codes:
        rec = d.agencies[c]
        pid = ids.get(rec.parent, 0) if rec.parent is not None else 0
        if call == "getAgenciesListQD20":
            out.append({"id": ids[c], "code": str(c), "name": rec.name, "mail": "", "code102": c.short()})
        elif call == "getSynchronizeUnit":
            out.append(
                {
                    "id": ids[c],
                    "pid": pid,
                    "code": str(c),
                    "name": rec.name,
                    "mail": "",
                    "version": d.serial,
                    "centerCode": c.shard,
                    "deleted": False,
                    "modifyDate": wall_time(d.issued_at, offset_min),
                    "isAgency": True,
                }
            )
        else:
            out.append({"id": ids[c], "pid": pid, "code": str(c), "name": rec.name, "mail": "", "oldCode": c.short()})
    return out
