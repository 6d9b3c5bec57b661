"""The verdict of a simulation, from plain observations (however they were gathered).

The in-process modes read the nodes' stores; the process mode reads the same
facts over IPC. Both hand an :class:`Observed` to :func:`verdict`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from protocol.agency import AgencyCode
from protocol.document import BusinessType
from protocol.ids import Digest
from protocol.status import HistoryItem, replay

Pair = tuple[Digest, AgencyCode]


@dataclass
class Observed:
    inbox: dict[AgencyCode, Counter[Digest]]  # documents in each recipient agency's inbox
    receipted: set[Pair]  # the sender holds the recipient's 01
    threads: dict[Pair, tuple[list[HistoryItem], list[HistoryItem], BusinessType]] = field(
        default_factory=dict
    )  # sender, recipient
    forged: set[Digest] = field(default_factory=set)
    forged_stored: list[str] = field(default_factory=list)
    rejections: int = 0
    crashes: list[tuple[str, set[Digest], set[Digest]]] = field(
        default_factory=list
    )  # node, inbox at the crash, inbox at the end
    forge_exercised: bool = True
    edxml: dict[str, list[str]] = field(default_factory=dict)  # "doc->recipient": how its export differs from what went in


def verdict(expected: list[Pair], excused: set[Pair], obs: Observed) -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    counted = [p for p in expected if p not in excused]
    missing = [(d, r) for d, r in counted if obs.inbox.get(r, Counter())[d] == 0]
    dupes = [(c, d) for c, ids in obs.inbox.items() for d, n in ids.items() if n > 1]
    refused_yet_delivered = [(d, r) for d, r in excused if obs.inbox.get(r, Counter())[d] > 0]
    checks["delivered exactly once to every recipient"] = {
        "ok": not missing and not dupes and not refused_yet_delivered,
        "deliveries": len(counted),
        "missing": [f"{d.short()}->{r.short()}" for d, r in missing[:20]],
        "duplicates": [f"{d.short()}@{c.short()}" for c, d in dupes[:20]],
        "refused_as_expected_after_rekey": len(excused),
        "refused_yet_delivered": [f"{d.short()}->{r.short()}" for d, r in refused_yet_delivered[:20]],
    }
    unreceipted = [(d, r) for d, r in counted if (d, r) not in obs.receipted]
    checks["every 01 receipt back at its sender"] = {
        "ok": not unreceipted,
        "missing": [f"{d.short()}->{r.short()}" for d, r in unreceipted[:20]],
    }
    illegal, disagree = [], []
    for (doc, r), (at_sender, at_recipient, business) in obs.threads.items():
        sender_state = replay(business, at_sender)
        recipient_state = replay(business, at_recipient)
        for result, where in ((sender_state, "sender"), (recipient_state, "recipient")):
            if result.illegal:
                illegal.append(f"{doc.short()}->{r.short()} at the {where}: {[str(i.code) for i in result.illegal]}")
        if sender_state.state != recipient_state.state:
            phases = f"sender {sender_state.state.phase.value}, recipient {recipient_state.state.phase.value}"
            disagree.append(f"{doc.short()}->{r.short()}: {phases}")
    checks["statuses in legal order, the same at both ends"] = {
        "ok": not illegal and not disagree,
        "threads": len(obs.threads),
        "illegal": illegal[:20],
        "disagree": disagree[:20],
    }
    checks["no invalid envelope stored or forwarded"] = {
        # trivially true when not exercised; the report then says SKIP
        "ok": not obs.forged_stored and (not obs.forged or obs.rejections > 0),
        "exercised": obs.forge_exercised,
        "injected": len(obs.forged),
        "stored": obs.forged_stored[:20],
        "rejections_counted": obs.rejections,
    }
    changed = {pair: diff for pair, diff in obs.edxml.items() if diff}
    checks["every edXML package comes out at each recipient as it went in"] = {
        "ok": not changed,
        "exported": len(obs.edxml),
        "differ": [f"{pair}: {'; '.join(diff)}" for pair, diff in list(changed.items())[:20]],
    }
    lost = [f"{d.short()}@{name}" for name, before, after in obs.crashes for d in before - after]
    checks["nothing lost at crashed nodes"] = {"ok": not lost, "crashes": len(obs.crashes), "lost": lost[:20]}
    return checks
