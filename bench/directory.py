"""Directory at national scale: 111,000 agencies.

    python -m bench.directory [--agencies N]

Measures: build + sign a snapshot, encode size, load + verify it (what a node
does at start), code lookup rate, key-id lookup, and a delta (10 agencies
changed) signed and applied. Baseline in the same run: raw SHA-256 + Ed25519
verify of the snapshot bytes (the least any verifier must do), and a plain
dict lookup.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import time

from bench.common import rate, report
from identity.directory import DirectoryDelta, apply_link, sign_delta, sign_snapshot
from identity.keys import AgencyKeys, AuthorityPublic, NodeKey, SigningKey, verify_signature
from identity.provision import DeterministicRng, ProvisionedNode, build_directory
from protocol.agency import AgencyCode
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, Envelope


def national_codes(n: int) -> list[AgencyCode]:
    """95 level-1 agencies, then sub-units spread across them down to level 4."""
    roots = [AgencyCode("G", i) for i in range(1, 32)] + [AgencyCode("H", i) for i in range(1, 64)] + [AgencyCode("A", 1)]
    codes = list(roots)
    i = 0
    while len(codes) < n:
        root = roots[i % len(roots)]
        j = i // len(roots)
        l2, l3, l4 = 1 + j % 99, (j // 99) % 100, 0
        code = AgencyCode(root.letter, root.number, l2, 0 if l4 else l3, 0)
        if code.l3 == 0:
            codes.append(AgencyCode(root.letter, root.number, l2))
        else:
            codes.append(AgencyCode(root.letter, root.number, l2, l3))
            if len(codes) < n and j % 3 == 0:
                codes.append(AgencyCode(root.letter, root.number, l2, l3, 1 + j % 999))
        i += 1
    return sorted(set(codes))[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agencies", type=int, default=111_000)
    args = ap.parse_args()
    rng = DeterministicRng(b"national")
    authority = SigningKey.generate(rng)
    codes = national_codes(args.agencies)
    # Parents must be listed: add any missing ancestors.
    full = set(codes)
    for c in list(codes):
        p = c.parent
        while p is not None and p not in full:
            full.add(p)
            p = p.parent
    codes = sorted(full)
    roots = [c for c in codes if c.level == 1]
    nodes = {r: ProvisionedNode(NodeKey(rng(32)), [], (f"/ip4/10.0.{i // 250}.{i % 250}/tcp/4001",)) for i, r in enumerate(roots)}
    t0 = time.perf_counter()
    for c in codes:
        nodes[c.root].agencies.append(AgencyKeys.generate(c, rng))
    keygen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    d = build_directory(net="national", nodes=nodes.values(), names={}, serial=1, at=0, until=1 << 50)
    snap = sign_snapshot(d, authority, at=0)
    wire = snap.encode()
    sign_s = time.perf_counter() - t0
    pub = AuthorityPublic(authority.public, "national")
    t0 = time.perf_counter()
    loaded = apply_link(None, Envelope.decode(wire, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES), pub)
    load_s = time.perf_counter() - t0
    assert len(loaded.agencies) == len(codes)
    t0 = time.perf_counter()
    hashlib.sha256(wire).digest()
    verify_signature(authority.public, snap.signed_bytes, snap.signature)
    raw_s = time.perf_counter() - t0
    sample = codes[:: max(1, len(codes) // 1000)]
    lookups = rate(lambda: [loaded.agency(c) for c in sample], per_call=len(sample))
    plain = {str(c): c for c in codes}
    texts = [str(c) for c in sample]
    plain_lookups = rate(lambda: [plain[t] for t in texts], per_call=len(texts))
    kid = loaded.agencies[codes[-1]].signing_keys[0].kid
    loaded.key_owner(kid)  # build the index once
    kid_lookups = rate(lambda: loaded.key_owner(kid))
    changed = tuple(dataclasses.replace(loaded.agencies[c], name=f"renamed {i}") for i, c in enumerate(codes[:10]))
    t0 = time.perf_counter()
    link = sign_delta(DirectoryDelta(put_agencies=changed), net="national", base=1, serial=2, until=1 << 50, key=authority, at=1)
    delta_wire = link.encode()
    after = apply_link(loaded, Envelope.decode(delta_wire, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES), pub)
    delta_s = time.perf_counter() - t0
    assert after.agencies[codes[0]].name == "renamed 0" and after.serial == 2
    rows = [
        {"measure": f"generate keys for {len(codes):,} agencies", "value": keygen_s, "unit": "s", "vs_baseline": None},
        {"measure": "build + sign snapshot", "value": sign_s, "unit": "s", "vs_baseline": None},
        {"measure": "snapshot size", "value": len(wire) / 1e6, "unit": "MB", "vs_baseline": None},
        {"measure": "load + verify snapshot (node start)", "value": load_s, "unit": "s", "vs_baseline": load_s / raw_s},
        {"measure": "baseline: sha256 + Ed25519 verify of it", "value": raw_s, "unit": "s", "vs_baseline": 1.0},
        {"measure": "agency lookup", "value": lookups, "unit": "/s", "vs_baseline": lookups / plain_lookups},
        {"measure": "baseline: plain dict lookup", "value": plain_lookups, "unit": "/s", "vs_baseline": 1.0},
        {"measure": "key id -> agency lookup", "value": kid_lookups, "unit": "/s", "vs_baseline": None},
        {"measure": "delta of 10 agencies: size", "value": len(delta_wire), "unit": "bytes", "vs_baseline": None},
        {"measure": "delta of 10 agencies: sign + apply", "value": delta_s, "unit": "s", "vs_baseline": delta_s / load_s},
    ]
    report("directory", rows)


if __name__ == "__main__":
    main()
