"""Directory at national scale: 111,000 agencies.

    python -m bench.directory [--agencies N] [--starts 3] [--no-process]

Measures: build + sign a snapshot, encode size; verifying it from scratch
(what every start did before the verified form); a node's start from the
directory file with no cache (verify + write the verified form), with a
valid cache (load it), and with a cache one delta behind; code lookup rates
on the directory loaded from cache and on the one verified from scratch,
with separate code objects and with codes parsed from text (as the node gets
them from envelope headers); key-id lookup; a delta (10 agencies changed, 1
removed) verified and applied, and the hosted-codes index after it; and a
real ``truc run`` process from spawn to ready with that directory, cold and
warm. Baselines in the same run: raw SHA-256 + Ed25519 verify of the
snapshot bytes (the least any verifier must do), a plain dict lookup, and
the same process started with a one-agency directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import rate, report
from identity.directory import (
    Directory,
    DirectoryDelta,
    JoinRequest,
    apply_link,
    sign_delta,
    sign_snapshot,
    write_chain_file,
)
from identity.directory_cache import CacheState, load_directory_cached
from identity.keys import AgencyKeys, AuthorityPublic, NodeKey, SigningKey, save_authority, verify_signature
from identity.provision import DeterministicRng, ProvisionedNode, build_directory, create_node_home
from protocol.agency import AgencyCode
from protocol.envelope import MAX_DIRECTORY_ENVELOPE_BYTES, Envelope
from simnet.processes import NodeProcess, free_port

MAC_KEY = b"bench directory cache mac key..."


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


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def row(measure: str, value: float, unit: str, vs_baseline: float | None = None) -> dict[str, object]:
    return {"measure": measure, "value": value, "unit": unit, "vs_baseline": vs_baseline}


def start_to_ready(node: NodeProcess) -> float:
    """Seconds from spawning ``truc run`` to its IPC socket answering node.info (after node.ready), then stop it."""
    t0 = time.monotonic()
    node.start(wait=False)
    node.wait_ready(timeout=300)
    took = time.monotonic() - t0
    node.stop()
    return took


def process_rows(root: Path, authority: SigningKey, big: Directory, starts: int) -> list[dict[str, object]]:
    """A real node (G22) started with the national directory, and with a directory listing only itself."""
    save_authority(root / "auth", authority, big.net)
    homes = {}
    for name in ("national", "alone"):
        home = root / name
        create_node_home(home, [AgencyCode("G", 22)], {}, root / "auth" / "authority.pub", (f"/ip4/127.0.0.1/tcp/{free_port()}",))
        req = JoinRequest.decode((home / "join-request.cbor").read_bytes())
        (me,) = req.agencies
        listed = big.agencies if name == "national" else {}
        peers = {**(big.nodes if name == "national" else {}), req.node.peer_id: req.node}
        d = Directory(big.net, 1, big.issued_at, big.valid_until, {**listed, me.code: me}, peers, {})
        write_chain_file(home / "directory.cbor", [sign_snapshot(d, authority, at=big.issued_at)])
        homes[name] = NodeProcess(name, home)
    alone = [start_to_ready(homes["alone"]) for _ in range(starts)]
    cold = start_to_ready(homes["national"])
    warm = [start_to_ready(homes["national"]) for _ in range(starts)]
    log = homes["national"].log_path.read_text()
    assert log.count('"cache": "absent"') == 1 and log.count('"cache": "hit"') == starts, log[-2000:]
    base = statistics.median(alone)
    return [
        row(f"node start to ready, {len(big.agencies):,}-agency directory, no cache (truc run)", cold, "s", cold / base),
        row(
            f"node start to ready, same, cache valid (median of {starts})",
            statistics.median(warm),
            "s",
            statistics.median(warm) / base,
        ),
        row(f"baseline: node start to ready, 1-agency directory (median of {starts})", base, "s", 1.0),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agencies", type=int, default=111_000)
    ap.add_argument("--starts", type=int, default=3, help="warm starts to take the median of")
    ap.add_argument("--no-process", action="store_true", help="skip the real truc run rows")
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

    # Baseline: the least any verifier of these bytes must do.
    t0 = time.perf_counter()
    hashlib.sha256(wire).digest()
    verify_signature(authority.public, snap.signed_bytes, snap.signature)
    raw_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    verified = apply_link(None, Envelope.decode(wire, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES), pub)
    verify_s = time.perf_counter() - t0
    assert len(verified.agencies) == len(codes)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_chain_file(root / "directory.cbor", [snap])

        def start(later: tuple[Envelope, ...] = ()) -> tuple[Directory, CacheState, float]:
            t0 = time.perf_counter()
            got, _, rep = load_directory_cached(root / "directory.cbor", pub, root / "cache", mac_key=MAC_KEY, later=later)
            return got, rep.state, time.perf_counter() - t0

        _, state, cold_s = start()
        assert state is CacheState.ABSENT
        warm_runs = [start() for _ in range(args.starts)]
        assert all(s is CacheState.HIT for _, s, _ in warm_runs)
        loaded = warm_runs[-1][0]
        warm_s = statistics.median(t for _, _, t in warm_runs)
        cache_mb = (root / "cache" / "directory.bin").stat().st_size / 1e6

        sample = codes[:: max(1, len(codes) // 1000)]  # objects of their own, as before
        texts = [str(c) for c in sample]
        parsed = [AgencyCode.parse(t) for t in texts]  # as a node gets them from envelope headers
        plain = {str(c): c for c in codes}
        plain_lookups = rate(lambda: [plain[t] for t in texts], per_call=len(texts))
        runs: dict[tuple[str, str], list[float]] = {}
        for _ in range(3):  # alternate, so that drift on a shared machine hits both alike
            for dname, dvalue in (("cache", loaded), ("verified", verified)):
                for kname, keys in (("own", sample), ("parsed", parsed)):
                    runs.setdefault((dname, kname), []).append(
                        rate(lambda d=dvalue, ks=keys: [d.agency(c) for c in ks], min_seconds=0.5, per_call=len(keys))
                    )
        lookup = {k: statistics.median(v) for k, v in runs.items()}
        kid = loaded.agencies[codes[-1]].signing_keys[0].kid
        loaded.key_owner(kid)  # build the index once
        kid_lookups = rate(lambda: loaded.key_owner(kid))

        # Deltas at national scale, on a node whose indexes are built (it has had peers).
        for p in loaded.nodes:
            loaded.hosted_by(p)
        changed = tuple(dataclasses.replace(loaded.agencies[c], name=f"renamed {i}") for i, c in enumerate(codes[100:110]))
        leaf = codes[-1]  # a sub-unit sorts after its parent, so the greatest code is nobody's parent
        t0 = time.perf_counter()
        link = sign_delta(
            DirectoryDelta(put_agencies=changed), net="national", base=1, serial=2, until=1 << 50, key=authority, at=1
        )
        delta_wire = link.encode()
        sign_delta_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        after = apply_link(loaded, Envelope.decode(delta_wire, max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES), pub)
        apply_s = time.perf_counter() - t0
        assert after.agencies[codes[100]].name == "renamed 0" and after.serial == 2
        hosted_after_s = timed(lambda: [after.hosted_by(p) for p in after.nodes])
        removal = sign_delta(
            DirectoryDelta(del_agencies=(leaf,)), net="national", base=2, serial=3, until=1 << 50, key=authority, at=2
        )
        t0 = time.perf_counter()
        after2 = apply_link(after, Envelope.decode(removal.encode(), max_bytes=MAX_DIRECTORY_ENVELOPE_BYTES), pub)
        remove_s = time.perf_counter() - t0
        assert leaf not in after2.agencies
        rebuilt = dataclasses.replace(after, _hosted=None)
        hosted_rebuild_s = timed(lambda: [rebuilt.hosted_by(p) for p in rebuilt.nodes])

        # A start with the delta in the store: the cache covers a prefix.
        _, state, extended_s = start((link,))
        assert state is CacheState.EXTENDED
        process = [] if args.no_process else process_rows(root / "procs", authority, verified, args.starts)

    n = f"{len(codes):,}"
    rows = [
        row(f"generate keys for {n} agencies", keygen_s, "s"),
        row("build + sign snapshot", sign_s, "s"),
        row("snapshot size", len(wire) / 1e6, "MB"),
        row("baseline: sha256 + Ed25519 verify of it", 1e3 * raw_s, "ms", 1.0),
        row("verify snapshot from scratch (every start before the cache)", verify_s, "s", verify_s / raw_s),
        row("cold start (no cache): read file + verify + write cache", cold_s, "s", cold_s / raw_s),
        row(f"warm start (cache valid): read file + load cache (median of {args.starts})", warm_s, "s", warm_s / raw_s),
        row("start with 1 stored delta (cache 1 link behind): load + apply + rewrite", extended_s, "s", extended_s / raw_s),
        row("verified form (cache file) size", cache_mb, "MB"),
        *(
            row(f"agency lookup, directory {label}, {how} (median of 3)", lookup[d, k], "/s", lookup[d, k] / plain_lookups)
            for d, label in (("cache", "loaded from cache"), ("verified", "verified from scratch"))
            for k, how in (("own", "separate code objects"), ("parsed", "codes parsed from text"))
        ),
        row("baseline: plain dict lookup", plain_lookups, "/s", 1.0),
        row("key id -> agency lookup", kid_lookups, "/s"),
        row("delta of 10 agencies: size", len(delta_wire), "bytes"),
        row("delta of 10 agencies: sign", 1e3 * sign_delta_s, "ms"),
        row("delta of 10 agencies: decode + verify + apply", 1e3 * apply_s, "ms", apply_s / raw_s),
        row("... then hosted-codes lookups for every node (index carried)", 1e3 * hosted_after_s, "ms"),
        row("... the same index rebuilt from scratch (before: after every delta)", 1e3 * hosted_rebuild_s, "ms"),
        row("delta removing 1 agency: decode + verify + apply", 1e3 * remove_s, "ms", remove_s / raw_s),
        *process,
    ]
    report("directory", rows)


if __name__ == "__main__":
    main()
