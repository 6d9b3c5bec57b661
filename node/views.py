"""Read-only views of a running node, for the IPC socket (and so the CLI).

Results are plain CBOR/JSON-friendly values: text ids, times in ms since the
Unix epoch (UTC), agency codes in canonical text.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from identity.directory_view import directory_view
from protocol.agency import AgencyCode
from protocol.errors import NotFoundError, UnknownAgencyError
from protocol.ids import Digest
from protocol.status import StatusCode
from store.records import DeliveryKind, DeliveryState, DocRole

if TYPE_CHECKING:
    from .engine import Engine


def truc_version() -> str:
    try:
        return version("truc")
    except PackageNotFoundError:
        return "0+unknown"


def info(e: Engine) -> dict[str, Any]:
    d = e.trust.directory
    now = e.clock()
    return {
        "version": truc_version(),
        "python": platform.python_version(),
        "peer_id": e.peer_id,
        "network": e.trust.net,
        "codes": [str(c) for c in sorted(e.hosted)],
        "names": {str(c): d.agencies[c].name for c in sorted(e.hosted) if c in d.agencies},
        "directory": {
            "serial": d.serial,
            "valid_until": d.valid_until,
            "expired": now > d.valid_until,
            "agencies": len(d.agencies),
            "nodes": len(d.nodes),
        },
        "started_at": e.n.started_at,
        "uptime_s": (now - e.n.started_at) // 1000,
        "peers_connected": len(e.overlay.connected_peers()),
        # how the overlay port is protected: "psk_file", "psk" (the older inline key) or "off" (no private network)
        "private_network": "psk_file" if e.config.psk_file else "psk" if e.config.psk else "off",
        "store_bytes": e.store.disk_bytes(),
        "store_path": str(e.store.path),
        **_garbage(e),
        "shards": sorted(e.n.interested_shards()),
        "pending_deliveries": sum(1 for _ in e.store.pending()),
        "awaiting_blocks": len(e.store.awaiting()),
    }


def _garbage(e: Engine) -> dict[str, Any]:
    """Blocks no document refers to: counted by the last ``truc store check`` (the node keeps none of its own)."""
    audit = e.store.audit()
    return {
        "garbage_blocks": audit.garbage_blocks if audit else None,
        "garbage_bytes": audit.garbage_bytes if audit else None,
        "garbage_checked_at": audit.at if audit else None,
        "dead_blocks_removed": e.store.dead_blocks_removed,
        "dead_bytes_removed": e.store.dead_bytes_removed,
    }


def peers(e: Engine) -> list[dict[str, Any]]:
    d = e.trust.directory
    connected = e.overlay.connected_peers()
    out = []
    for peer_id, rec in sorted(d.nodes.items()):
        if peer_id == e.peer_id:
            continue
        codes = d.hosted_by(peer_id)
        out.append(
            {
                "peer_id": peer_id,
                "codes": [str(c) for c in codes],
                "names": [d.agencies[c].name for c in codes],
                "addrs": list(rec.addrs),
                "connected": peer_id in connected,
                "last_seen": e.clock() if peer_id in connected else e.membership.last_seen.get(peer_id),
            }
        )
    return out


def _queue(recipient: AgencyCode) -> dict[str, Any]:
    return {
        "recipient": str(recipient),
        "pending": 0,
        "documents": 0,
        "statuses": 0,
        "oldest_first_sent": None,
        "next_retry": None,
        "last_error": "",
        "waiting_for_receipt": 0,
        "refused": 0,
        "refused_reason": "",
    }


def queues(e: Engine) -> list[dict[str, Any]]:
    """Outbox per recipient: what is pending, since when, and why it is not delivered yet.

    ``refused`` counts what the recipient refused for good in the last 7
    days (failed, not retried); ``refused_reason`` is the latest reason.
    """
    now = e.clock()
    by: dict[AgencyCode, dict[str, Any]] = {}
    connected = e.overlay.connected_peers()
    for recipient, eid, sender in e.store.pending():
        rec = e.store.delivery(sender, eid, recipient)
        if rec is None or rec.state is not DeliveryState.PENDING:
            continue
        q = by.setdefault(recipient, _queue(recipient))
        q["pending"] += 1
        q["documents" if rec.kind is DeliveryKind.DOCUMENT else "statuses"] += 1
        if q["oldest_first_sent"] is None or rec.first_at < q["oldest_first_sent"]:
            q["oldest_first_sent"] = rec.first_at
            q["last_error"] = rec.last_error
        if q["next_retry"] is None or rec.next_at < q["next_retry"]:
            q["next_retry"] = rec.next_at
        if rec.kind is DeliveryKind.DOCUMENT and not rec.failures and rec.attempts:
            q["waiting_for_receipt"] += 1
    from .outbox import REFUSALS_SHOWN_MS

    latest: dict[AgencyCode, int] = {}
    for key, at in sorted(e.outbox.refusals.items(), key=lambda kv: kv[1]):
        sender, env_id, recipient = key
        refused = e.delivery_record(sender, env_id, recipient)
        if now - at > REFUSALS_SHOWN_MS or refused is None or refused.state is not DeliveryState.FAILED:
            del e.outbox.refusals[key]  # old, or delivered after all (a receipt can still come)
            continue
        q = by.setdefault(recipient, _queue(recipient))
        q["refused"] += 1
        if at >= latest.get(recipient, 0):
            latest[recipient] = at
            q["refused_reason"] = refused.last_error
    out = []
    for recipient, q in sorted(by.items()):
        q["oldest_age_s"] = (now - q["oldest_first_sent"]) // 1000 if q["oldest_first_sent"] else 0
        try:
            host = e.n.host_peer(recipient)
            q["node"] = host
            q["node_connected"] = host in connected
        except Exception:
            q["node"] = None
            q["node_connected"] = False
        q["reason"] = _reason(q)
        out.append(q)
    return out


def _reason(q: dict[str, Any]) -> str:
    if not q["pending"] and q["refused"]:
        return str(q["refused_reason"])  # "refused by the recipient: <its reason>"
    if q["node"] is None:
        return "the recipient is not in the directory"
    if not q["node_connected"]:
        extra = q["last_error"] if q["last_error"] and "not connected" not in q["last_error"] else ""
        return "the recipient's node is not connected" + (f" ({extra})" if extra else "")
    if q.get("waiting_for_receipt") == q["pending"]:
        return "stored at the recipient's node, waiting for its signed receipt (01)"
    return q["last_error"] or "being sent"


INBOX_SCAN = 10_000  # entries one inbox.list call examines at most (unacked filtering), so a call stays short


def inbox(e: Engine, code: AgencyCode, *, after: int, limit: int, unacked: bool) -> dict[str, Any]:
    """One agency's inbox after seq ``after``: up to ``limit`` items, the cursor for the next call, whether to call again now."""
    items: list[dict[str, Any]] = []
    cursor = after
    more = False
    want = (INBOX_SCAN if unacked else limit) + 1  # one more than can be used: tells whether there is more
    for examined, (seq, entry) in enumerate(e.store.inbox(code, after=after, limit=want)):
        if len(items) == limit or examined == INBOX_SCAN:
            more = True
            break
        cursor = seq
        if unacked and entry.acked_at:
            continue
        rec = e.store.doc(entry.id)
        ref = e.store.edxml_ref(entry.id)
        items.append(
            {
                "seq": seq,
                "id": str(Digest(entry.id)),
                "from": entry.sender,
                "to": str(code),
                "subject": rec.subject if rec else "",
                "size": rec.size if rec else 0,
                "received_at": entry.received_at,
                "acked_at": entry.acked_at or None,
                "business": rec.business if rec else "new",
                "document_id": ref.document_id if ref else "",
                "number": ref.number if ref else "",
                "notation": ref.notation if ref else "",
            }
        )
    return {"items": items, "next_after": cursor, "more": more}


def documents(
    e: Engine, *, role: str | None, limit: int, allowed: Callable[[AgencyCode], bool] | None = None
) -> list[dict[str, Any]]:
    """Documents newest first; with ``allowed``, only those an allowed agency sent or received."""
    out = []
    for doc_id, rec in e.store.docs():
        if role is not None and rec.role.value != role:
            continue
        if allowed is not None and not any(allowed(AgencyCode.parse(c)) for c in (rec.sender, *rec.to)):
            continue
        if rec.role is DocRole.RELAYED and role is None:
            continue
        out.append(
            {
                "id": str(doc_id),
                "role": rec.role.value,
                "from": rec.sender,
                "to": list(rec.to),
                "subject": rec.subject,
                "created_at": rec.created_at,
                "received_at": rec.received_at,
                "size": rec.size,
                "complete": rec.complete,
                "problem": rec.problem,
            }
        )
    out.sort(key=lambda d: d["created_at"], reverse=True)
    return out[:limit]


def lookup(e: Engine, code: AgencyCode) -> dict[str, Any]:
    d = e.trust.directory
    rec = d.agencies.get(code)
    if rec is None:
        raise UnknownAgencyError(f"{code} (directory serial {d.serial})")
    node = d.nodes.get(rec.node)
    return {
        "code": str(rec.code),
        "short": rec.code.short(),
        "name": rec.name,
        "parent": str(rec.parent) if rec.parent else None,
        "node": rec.node,
        "node_addrs": list(node.addrs) if node else [],
        "hosted_here": code in e.hosted,
        "signing_keys": [
            {"kid": k.kid.hex(), "not_before": k.not_before, "not_after": k.not_after, "revoked": k.kid in d.revoked}
            for k in rec.signing_keys
        ],
        "encryption_key": rec.encryption_key.hex(),
        "sub_units": [str(c) for c in sorted(d.agencies) if c.parent == code],
    }


def directory(e: Engine) -> dict[str, Any]:
    return directory_view(e.trust.directory, now=e.clock())


def stats(e: Engine, *, since: int) -> dict[str, Any]:
    """Documents sent and received per agency and status counts since ``since`` (ms)."""
    sent: Counter[str] = Counter()
    received: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    delivered = failed = pending = 0
    latencies: list[int] = []
    for doc_id, rec in e.store.docs():
        if rec.created_at < since:
            continue
        if rec.role is DocRole.SENT:
            sent[rec.sender] += 1
            for d in e.store.deliveries(AgencyCode.parse(rec.sender), doc_id).values():
                if d.state is DeliveryState.DELIVERED:
                    delivered += 1
                    latencies.append(d.delivered_at - rec.created_at)
                elif d.state is DeliveryState.FAILED:
                    failed += 1
                else:
                    pending += 1
        elif rec.role is DocRole.RECEIVED:
            for code in rec.to:
                if AgencyCode.parse(code) in e.hosted:
                    received[code] += 1
        if rec.role is not DocRole.RELAYED:
            for _, _, h in e.store.history(doc_id):
                statuses[f"{h.code:02d}"] += 1
    latencies.sort()

    def pct(p: float) -> int | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

    return {
        "since": since,
        "sent": dict(sorted(sent.items())),
        "received": dict(sorted(received.items())),
        "statuses": dict(sorted(statuses.items())),
        "deliveries": {"delivered": delivered, "pending": pending, "failed": failed},
        "receipt_latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": latencies[-1] if latencies else None},
    }


def track(e: Engine, doc_id: Digest) -> dict[str, Any]:
    """Where a document is: per recipient, its delivery, its processing phase and every status."""
    rec = e.store.doc(doc_id)
    doc = e.n.doc_header(doc_id)
    if rec is None or doc is None:
        raise NotFoundError(f"document {doc_id}")
    recipients = []
    for code in doc.to:
        # what is written, as the history below: a change still in a batch would show ahead of its status
        delivery = e.store.delivery(doc.sender, bytes(doc_id), code) if doc.sender in e.hosted else None
        state, _, _ = e.statuses.thread_state(doc_id, code)
        history = sorted(e.store.history(doc_id, code), key=lambda x: (x[2].seq, x[2].at))
        if delivery is not None:
            dstate = delivery.state.value
        else:
            dstate = "delivered" if any(r.code == StatusCode.ARRIVED for _, _, r in history) else "pending"
        recipients.append(
            {
                "code": str(code),
                "state": dstate,
                "phase": state.phase.value,
                "waiting_for": state.pending.value if state.pending.value != "none" else "",
                "statuses": [
                    {
                        "code": f"{r.code:02d}",
                        "at": r.at,
                        "received_at": r.received_at,
                        "author": r.author,
                        "note": r.note,
                        "seq": r.seq,
                        "id": str(sid),
                    }
                    for _, sid, r in history
                ],
                "attempts": delivery.attempts if delivery else 0,
                "last_error": delivery.last_error if delivery else "",
                "next_retry": delivery.next_at if delivery and delivery.state is DeliveryState.PENDING else None,
                "first_sent": delivery.first_at if delivery else None,
                "delivered_at": delivery.delivered_at if delivery and delivery.delivered_at else None,
            }
        )
    ref = e.store.edxml_ref(doc_id)
    return {
        "id": str(doc_id),
        "from": str(doc.sender),
        "subject": rec.subject,
        "document_id": ref.document_id if ref else "",
        "created_at": doc.at,
        "size": rec.size,
        "role": rec.role.value,
        "complete": rec.complete,
        "problem": rec.problem,
        "recipients": recipients,
    }


def block_progress(e: Engine, doc_id: Digest) -> tuple[int, int]:
    """(blocks here, blocks in all) of a document."""
    h = e.n.doc_header(doc_id)
    if h is None:
        return 0, 0
    return sum(1 for d in h.body.blocks if e.store.has_block(d)), len(h.body.blocks)
