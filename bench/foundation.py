"""Foundation costs: sealing, opening, durable commits, against raw library baselines.

    python -m bench.foundation [--seconds S]

Rows (per-operation rates, measured in this run):
* seal+sign a 16 KiB document for 3 recipients, verify+open it (one recipient);
* durable store commit of envelopes in group batches (sync=True);
* baselines measured beside them: raw PyNaCl Ed25519 verify, raw plyvel synced
  batch of the same shape; the ratio column compares each row to its baseline.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import nacl.signing
import plyvel

from bench.common import rate, report
from identity.keys import AgencyKeys, verify_signature
from identity.provision import DeterministicRng
from identity.sealing import FileSource, Recipient, read_document, seal_document
from protocol.agency import AgencyCode
from protocol.document import DocumentMeta
from protocol.envelope import Envelope, MessageHeader
from protocol.ids import Digest
from store.store import Store

DOC_BYTES = 16 << 10
BATCH = 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = ap.parse_args()
    t = args.seconds
    rng = DeterministicRng(b"bench")
    sender = AgencyKeys.generate(AgencyCode.parse("G22"), rng)
    recips = [AgencyKeys.generate(AgencyCode.parse(c), rng) for c in ("H01", "H29", "H31")]
    payload = os.urandom(DOC_BYTES)
    meta = DocumentMeta(subject="Bench")
    files = [FileSource("a.bin", "application/octet-stream", data=payload)]

    def seal() -> Envelope:
        env, _ = seal_document(
            meta,
            files,
            net="bench",
            sender=sender,
            recipients=[Recipient(r.code, r.encryption.public) for r in recips],
            at=1,
            rng=os.urandom,
        )
        return env

    env = seal()
    wire = env.encode()

    def verify_open() -> None:
        e = Envelope.decode(wire)
        verify_signature(sender.signing.public, e.signed_bytes, e.signature)
        assert isinstance(e.header, MessageHeader)
        for _ in read_document(e.header, recips[0], e.inline):
            pass

    vk = nacl.signing.VerifyKey(sender.signing.public)
    signed = env.signed_bytes

    seal_rate = rate(seal, min_seconds=t)
    open_rate = rate(verify_open, min_seconds=t)
    raw_verify = rate(lambda: vk.verify(signed, env.signature), min_seconds=t)

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        counter = iter(range(1 << 62))

        def store_commit() -> None:
            batches = []
            for _ in range(BATCH):
                i = next(counter).to_bytes(8, "big")
                b = store.batch()
                eid = Digest.of(i)
                b.put_envelope(eid, wire)
                b.append_log("H01", eid)
                batches.append(b)
            store.write(*batches, sync=True)

        commit_rate = rate(store_commit, min_seconds=t, per_call=BATCH)
        store.close()
        db = plyvel.DB(str(Path(tmp) / "raw"), create_if_missing=True)
        raw_counter = iter(range(1 << 62))

        def raw_commit() -> None:
            with db.write_batch(transaction=True, sync=True) as wb:
                for _ in range(BATCH):
                    i = next(raw_counter).to_bytes(8, "big")
                    wb.put(b"E" + i * 4, wire)
                    wb.put(b"L" + i, i * 4)

        raw_commit_rate = rate(raw_commit, min_seconds=t, per_call=BATCH)
        db.close()

    rows = [
        {
            "operation": f"seal+sign {DOC_BYTES >> 10} KiB doc, 3 recipients",
            "per_s": seal_rate,
            "baseline": "raw Ed25519 verify",
            "ratio": seal_rate / raw_verify,
        },
        {
            "operation": "decode+verify+open (1 recipient)",
            "per_s": open_rate,
            "baseline": "raw Ed25519 verify",
            "ratio": open_rate / raw_verify,
        },
        {"operation": "raw PyNaCl Ed25519 verify", "per_s": raw_verify, "baseline": "-", "ratio": 1.0},
        {
            "operation": f"store: durable commit, {BATCH} envelopes/fsync",
            "per_s": commit_rate,
            "baseline": "raw plyvel synced batch",
            "ratio": commit_rate / raw_commit_rate,
        },
        {"operation": f"raw plyvel synced batch, {BATCH}x2 puts", "per_s": raw_commit_rate, "baseline": "-", "ratio": 1.0},
    ]
    report("foundation", rows)


if __name__ == "__main__":
    main()
