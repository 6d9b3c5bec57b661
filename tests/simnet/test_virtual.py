"""The simulated wire's view of who is connected, against a brute-force model.

The network keeps links incrementally (a full recomputation per event made
starting 1,000 nodes O(N^3)); this checks, after every step of a seeded run
of starts, stops, downs, partitions and heals, that each node's connected set
is exactly what the rules say, and that the up/down events each node received
add up to that set.
"""

from __future__ import annotations

import random

import trio
import trio.testing

from simnet.virtual import VirtualNetwork, VirtualOverlay


def expected(net: VirtualNetwork, a: str) -> set[str]:
    def up(p: str) -> bool:
        return net.nodes[p].running and p not in net.down

    if not up(a):
        return set()
    side = [g for g in net.groups if a in g] if net.groups is not None else None
    return {b for b in net.nodes if b != a and up(b) and (side is None or any(b in g for g in side))}


def test_links_match_the_rules_through_starts_stops_downs_partitions_and_heals() -> None:
    names = [f"p{i:02d}" for i in range(12)]
    rng = random.Random(5)

    async def main() -> None:
        with trio.fail_after(60):
            await scenario()

    async def scenario() -> None:
        net = VirtualNetwork(seed=1)
        events: dict[str, dict[str, int]] = {n: {} for n in names}
        scopes: dict[str, trio.CancelScope] = {}

        def attach(name: str) -> VirtualOverlay:
            ov = net.overlay(name)

            async def up(peer: str) -> None:
                events[name][peer] = events[name].get(peer, 0) + 1

            async def down(peer: str) -> None:
                events[name][peer] = events[name].get(peer, 0) - 1

            ov.on_connected, ov.on_disconnected = up, down
            return ov

        overlays = {n: attach(n) for n in names}

        async def run(name: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                scopes[name] = scope
                await overlays[name].run(task_status=task_status)

        def check() -> None:
            for n in names:
                want = expected(net, n)
                assert overlays[n].connected_peers() == want, n
                assert all(net.reachable(n, q) == (q in want) for q in names)
                if overlays[n].running:  # a stopped node's handlers are gone with it
                    assert {p for p, c in events[n].items() if c} == want, n
                    assert all(c in (0, 1) for c in events[n].values()), n

        async with trio.open_nursery() as nursery:
            for n in names[:8]:
                await nursery.start(run, n)
            await trio.sleep(0.1)
            check()
            for _ in range(60):
                op = rng.choice(["start", "stop", "down", "up", "partition", "heal"])
                name = rng.choice(names)
                if op == "start" and not overlays[name].running:
                    events[name].clear()  # a restarted node starts with no view
                    await nursery.start(run, name)
                elif op == "stop" and overlays[name].running:
                    scopes[name].cancel()
                elif op == "down":
                    await net.set_down(name, True)
                elif op == "up":
                    await net.set_down(name, False)
                elif op == "partition":
                    cut = rng.randrange(1, len(names))
                    shuffled = rng.sample(names, len(names))
                    await net.partition(set(shuffled[:cut]), set(shuffled[cut:]))
                elif op == "heal":
                    await net.heal()
                await trio.sleep(0.1)  # let the notifications run
                check()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
