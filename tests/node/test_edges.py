"""Wrong answers at the edges: junk floods.

Real engines, stores and crypto on the virtual wire, in virtual time.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import trio

from identity.provision import DeterministicRng
from identity.sealing import FileSource, seal_document
from node.log import Log
from protocol import messages as m
from protocol.envelope import Envelope
from tests.node.helpers import G22, H01, C, cluster, meta, run_virtual

HOUR_MS = 3_600_000


def log_lines(stream: io.StringIO, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [x for x in lines if x["event"] == event]


def test_a_push_of_50000_junk_envelopes_logs_one_line_per_reason_and_counts_each(tmp_path: Path) -> None:
    streams: dict[str, io.StringIO] = {}

    def make_log(name: str) -> Log:
        streams[name] = io.StringIO()
        return Log(stream=streams[name], fmt="json")

    c = cluster(tmp_path, {"g22": [G22], "h01": [H01]}, log=make_log)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await c.start_all(n)
            h01 = c.node("h01").e()
            good, _ = seal_document(
                meta(),
                [FileSource("a.txt", "text/plain", data=b"x")],
                net=h01.trust.net,
                sender=c.keys[C(G22)],
                recipients=[h01.trust.recipient(C(H01))],
                at=h01.clock(),
                rng=DeterministicRng(b"junk"),
            )
            forged = Envelope(good.header, good.header_bytes, bytes(64), good.inline).encode()
            junk = [i.to_bytes(4, "big") for i in range(50_000)] + [forged] * 3
            before = len(log_lines(streams["h01"], "envelope.rejected"))
            assert len(m.EnvelopeBatch(tuple(junk)).encode()) < m.MAX_PUSH_BYTES, "one push request can carry it"
            results = await h01.ingest(junk, peer=c.node("g22").peer_id, path="push")
            assert len(results) == 50_003 and {r.status for r in results} == {"malformed", "bad_signature"}
            lines = log_lines(streams["h01"], "envelope.rejected")[before:]
            assert len(lines) == 2, f"{len(lines)} lines for one push"
            by_reason = {x["reason"]: x for x in lines}
            assert by_reason["malformed"]["count"] == 50_000 and by_reason["bad_signature"]["count"] == 3
            assert by_reason["malformed"]["path"] == "push" and by_reason["malformed"]["detail"]
            # Metrics stay per envelope.
            assert h01.metrics.get("envelopes_rejected", reason="malformed", path="push") == 50_000
            assert h01.metrics.get("envelopes_rejected", reason="bad_signature", path="push") == 3
            n.cancel_scope.cancel()

    run_virtual(main)
