"""Idle cost: CPU and memory of a node at rest with 94 connected peers.

    python -m bench.idle [--peers 94] [--mesh-nodes 20] [--seconds 60]

Three real-process networks, no traffic, each measured over the same window
(CPU time from /proc, heap = anonymous RSS, total RSS):

* baseline: one node alone (no peers);
* star: the measured node (G22, listed in the directory with its address)
  and 94 peers listed without addresses, so each peer dials G22 and nobody
  else. G22 sees exactly what a node of the full 95-node mesh sees (94
  connected peers, each subscribed to every shard, the default relay), while
  the 94 peers cost little, so the measurement fits a 2-core machine;
* mesh: a full mesh of N nodes (default 20), every node connected to every
  other, to show the whole network's idle load and how it grows with peers.
  Its nodes all start at once by default (``--stagger 0``): the handshake
  storm of a network restarted together, the hardest way for it to form.

A full mesh of 95 processes completes on 2 cores: 673 s, then 507 s
re-measured, before issue 16 (started 1.5 s apart); 157 s started so, and
93-120 s started all at once, at its ninth pass, with no connection lost
(95 start-ups, 4,465 Noise handshakes and their sync rounds share the two
cores). Before py-libp2p pitfall 16 was handled it never did (see
docs/performance.md, "Forming the full mesh", and docs/overlay.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import report
from simnet.agencies import AgencyListing, embedded_agencies, national_set
from simnet.processes import NodeProcess, ProcessNetwork, wait_for


def measure(nodes: list[NodeProcess], seconds: float) -> tuple[list[float], list[float], list[float]]:
    """Per node: CPU % of one core over the window, anonymous MiB, total RSS MiB."""
    start = {n.name: n.cpu_seconds() for n in nodes}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    cpu = [100 * (n.cpu_seconds() - start[n.name]) / elapsed for n in nodes]
    return cpu, [n.anon_mib() for n in nodes], [n.rss_mib() for n in nodes]


def row(measure: str, value: str, unit: str, vs_baseline: float | None) -> dict[str, object]:
    return {"measure": measure, "value": value, "unit": unit, "vs_baseline": vs_baseline}


def _pct(cpu: float, base: float) -> float:
    return cpu / max(base, 0.01)


def _network(root: Path, agencies: list[AgencyListing], unlisted: frozenset[str] = frozenset()) -> ProcessNetwork:
    nodes = {a.code.short().lower(): [str(a.code)] for a in agencies}
    return ProcessNetwork(root, nodes, network="idle", names={a.code: a.name for a in agencies}, unlisted=unlisted)


def _start(net: ProcessNetwork, stagger: float = 0.0) -> list[NodeProcess]:
    for n in net.nodes.values():
        n.start(wait=False)
        time.sleep(stagger)
    for n in net.nodes.values():
        n.wait_ready(timeout=300)
    return list(net.nodes.values())


def _star(
    root: Path, agencies: list[AgencyListing], args: argparse.Namespace, base_cpu: float, base_anon: float
) -> list[dict[str, object]]:
    """The measured node (listed first) and peers listed without addresses: each dials it, nobody else."""
    peers = frozenset(a.code.short().lower() for a in agencies[1:])
    star = _network(root, agencies, peers)
    try:
        t0 = time.monotonic()
        hub, *others = _start(star)  # the hub (G22) is listed first
        wait_for(lambda: hub.call("node.info")["peers_connected"] >= args.peers, 600, f"{args.peers} peers at {hub.name}")
        connected_s = time.monotonic() - t0
        time.sleep(args.settle)
        cpu, anon, rss = measure([hub, *others], args.seconds)
        still = hub.call("node.info")["peers_connected"]
    finally:
        star.stop_all()
    peer_cpu = statistics.median(cpu[1:])
    return [
        row(f"node with {args.peers} peers, idle: CPU", f"{cpu[0]:.2f}", "% of a core", _pct(cpu[0], base_cpu)),
        row("  heap / total RSS", f"{anon[0]:.0f} / {rss[0]:.0f}", "MiB", anon[0] / base_anon),
        row("  peers still connected at the end", f"{still}", "", None),
        row("  time from start to all peers connected", f"{connected_s:.0f}", "s", None),
        row("  each of its peers (1 connection): CPU median", f"{peer_cpu:.2f}", "% of a core", _pct(peer_cpu, base_cpu)),
    ]


def _mesh(
    root: Path, agencies: list[AgencyListing], args: argparse.Namespace, base_cpu: float, base_anon: float
) -> list[dict[str, object]]:
    """A full mesh: every node connected to every other, or, if that never happens, how far it got."""
    mesh = _network(root, agencies)
    want = len(agencies) - 1
    try:
        t0 = time.monotonic()
        nodes = _start(mesh, args.stagger)
        try:
            wait_for(lambda: all(n.call("node.info")["peers_connected"] >= want for n in nodes), args.mesh_timeout, "full mesh")
        except TimeoutError:
            peers = sorted(n.call("node.info")["peers_connected"] for n in nodes)
            cpu, anon, _ = measure(nodes, args.seconds)
            return [
                row(f"full mesh of {len(agencies)}: NOT reached in {args.mesh_timeout:.0f} s; peers per node, min / median / max",
                    f"{peers[0]} / {peers[len(peers) // 2]} / {peers[-1]} of {want}", "", None),
                row("  CPU per node meanwhile, median / sum", f"{statistics.median(cpu):.2f} / {sum(cpu):.0f}", "% core", None),
            ]  # fmt: skip
        connected_s = time.monotonic() - t0
        forming_cpu = sum(n.cpu_seconds() for n in nodes)  # start-ups, handshakes, sync rounds: all the work it took
        made, lost = _connections(nodes)
        time.sleep(args.settle)
        cpu, anon, _ = measure(nodes, args.seconds)
    finally:
        mesh.stop_all()
    med = statistics.median(cpu)
    return [
        row(f"full mesh of {len(agencies)}: CPU per node ({want} peers), median / max", f"{med:.2f} / {max(cpu):.2f}",
            "% of a core", _pct(med, base_cpu)),
        row("  heap per node, median / max", f"{statistics.median(anon):.0f} / {max(anon):.0f}", "MiB",
            statistics.median(anon) / base_anon),
        row("  whole network, idle: CPU sum", f"{sum(cpu):.1f}", "% of a core", None),
        row("  time from start to full mesh", f"{connected_s:.0f}", "s", None),
        row("  CPU of all nodes from start to full mesh", f"{forming_cpu:.0f}", "core-seconds", None),
        row(f"  connection ends made / lost while forming ({len(nodes) * want} make the mesh)", f"{made} / {lost}", "",
            None),
    ]  # fmt: skip


def _connections(nodes: list[NodeProcess]) -> tuple[int, int]:
    """Connection ends made and lost so far, from the nodes' logs (``peer.connected``, ``peer.disconnected``)."""
    made = lost = 0
    for n in nodes:
        text = n.log_path.read_text(errors="replace")
        made += text.count('"peer.connected"')
        lost += text.count('"peer.disconnected"')
    return made, lost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=94, help="peers of the measured node (star; 0: skip)")
    ap.add_argument("--mesh-nodes", type=int, default=20, help="nodes of the full mesh (0: skip)")
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    ap.add_argument("--stagger", type=float, default=0.0, help="seconds between mesh node starts (0: all at once)")
    ap.add_argument("--mesh-timeout", type=float, default=600.0, help="give up on the full mesh after this long")
    ap.add_argument("--settle", type=float, default=30.0, help="wait after the network is connected, before measuring")
    args = ap.parse_args()
    agencies = national_set(embedded_agencies(), max(args.peers + 1, args.mesh_nodes))
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="truc-idle-") as tmp:
        alone = _network(Path(tmp) / "alone", agencies[:1])
        try:
            nodes = _start(alone)
            time.sleep(args.settle)
            base_cpu, base_anon, base_rss = (v[0] for v in measure(nodes, args.seconds))
        finally:
            alone.stop_all()
        rows += [
            row("baseline: a node alone, idle: CPU", f"{base_cpu:.2f}", "% of a core", 1.0),
            row("baseline: heap / total RSS", f"{base_anon:.0f} / {base_rss:.0f}", "MiB", 1.0),
        ]

        if args.peers:
            rows += _star(Path(tmp) / "star", agencies[: args.peers + 1], args, base_cpu, base_anon)
        if args.mesh_nodes:
            rows += _mesh(Path(tmp) / "mesh", agencies[: args.mesh_nodes], args, base_cpu, base_anon)
    report("idle", rows)


if __name__ == "__main__":
    main()
