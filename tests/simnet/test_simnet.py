"""simnet: the verdict is earned, reproducible, and catches what it claims to catch."""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import cli
from protocol.agency import AgencyCode
from simnet.agencies import embedded_agencies, national_set
from simnet.faults import FaultSpecError, parse_faults
from simnet.inprocess import InProcessDriver
from simnet.report import write_report
from simnet.sim import SimConfig, Simulation, run_simulation
from simnet.workload import PEAKS, plan_documents
from store.records import InboxEntry

AGENCIES = embedded_agencies()


def config(n: int, docs: int, duration: float, faults: str, seed: int) -> SimConfig:
    return SimConfig(
        agencies=national_set(AGENCIES, n), docs=docs, duration_s=duration, faults=faults, seed=seed, max_size=2 << 20
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_kind_of_fault_and_a_passing_verdict_with_its_report(tmp_path: Path) -> None:
    cfg = config(14, 60, 300, "default", seed=2)
    outcome = run_simulation(cfg, tmp_path / "nodes", echo=lambda s: None)
    assert outcome.ok, json.dumps(outcome.checks, indent=1, default=str)
    kinds = {e["event"] for e in outcome.timeline}
    assert {"kill", "restart", "partition", "heal", "delay", "loss", "rekey", "join", "forge"} <= kinds
    assert [e["crossing_connections"] for e in outcome.timeline if e["event"] == "partition.held"] == [0]
    checks = outcome.checks
    assert checks["delivered exactly once to every recipient"]["deliveries"] > 60
    assert checks["no invalid envelope stored or forwarded"]["injected"] == 2
    assert checks["no invalid envelope stored or forwarded"]["rejections_counted"] > 0
    assert checks["nothing lost at crashed nodes"]["crashes"] == 1
    assert {"01", "03", "04", "05", "06"} <= set(outcome.stats["statuses"])
    # A share went in as edXML packages of four producers' styles, statuses back as packages, and came out whole.
    assert outcome.stats["edxml_documents"] >= 10
    assert checks["every edXML package comes out at each recipient as it went in"]["exported"] >= 15
    paths = write_report(outcome, tmp_path / "report", {"seed": 2})
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["verdict"] == "PASS" and summary["samples"]
    for png in ("latency_cdf.png", "deliveries.png", "queues.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert len(paths) == 4


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_same_seed_gives_the_same_run(tmp_path: Path) -> None:
    def run(i: int) -> tuple[object, ...]:
        o = run_simulation(
            config(8, 20, 120, "kill=random@20%+10%,loss=0.3@50%+20%", seed=9), tmp_path / str(i), echo=lambda s: None
        )
        net = o.stats["network"]
        return (
            o.ok,
            o.stats["deliveries"],
            o.stats["statuses"],
            o.stats["latency_ms"],
            net["requests"],
            net["lost"],
            o.stats["simulated_s"],
        )

    assert run(1) == run(2)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_verdict_catches_lost_and_duplicated_deliveries(tmp_path: Path) -> None:
    """Plant the two failures the first check exists for, after the run, and watch it fail."""

    class Sabotaged(Simulation):
        async def _settle(self) -> bool:
            settled = await super()._settle()
            assert isinstance(self.driver, InProcessDriver)
            (doc, plan) = next(iter(self.doc_plan.items()))
            victim = plan.recipients[0]
            e = self.driver.engine_of(victim)
            b = e.store.batch()
            b.add_inbox(victim, InboxEntry(bytes(doc), str(plan.sender), 0))  # a second copy
            other_doc, other_plan = list(self.doc_plan.items())[1]
            loser = other_plan.recipients[0]
            le = self.driver.engine_of(loser)
            seq, _ = le.store.inbox_entry(loser, other_doc)  # type: ignore[misc]
            from store import keys as k

            b2 = le.store.batch()
            b2.delete(k.INBOX + k.code(loser) + k.u64(seq))
            e.store.write(b)
            le.store.write(b2)
            return settled

    outcome = Sabotaged(config(6, 10, 60, "none", seed=4), tmp_path, echo=lambda s: None).execute()
    check = outcome.checks["delivered exactly once to every recipient"]
    assert not outcome.ok and not check["ok"]
    assert check["duplicates"] and check["missing"]


def test_fault_specs() -> None:
    codes = [a.code for a in national_set(AGENCIES, 10)]
    rng = random.Random(1)
    faults = parse_faults("kill=G01@10%+5%,partition=half@50,loss=0.5@0+10,join=H99@20%", duration_s=100, agencies=codes, rng=rng)
    assert [(f.kind, f.start_s, f.length_s) for f in faults] == [
        ("loss", 0, 10),
        ("kill", 10, 5),
        ("join", 20, 0),
        ("partition", 50, 10),
    ]
    assert parse_faults("none", duration_s=100, agencies=codes, rng=rng) == []
    assert len(parse_faults("default", duration_s=100, agencies=codes, rng=rng)) == 7
    for bad, why in [
        ("explode@10", "unknown fault"),
        ("kill=H77@10", "not an agency of this network"),
        ("kill=h01@10", "upper case"),
        ("loss=1.5@10", "fraction below 1"),
        ("kill@", "expected KIND"),
        ("partition@10", "say how to split"),
    ]:
        with pytest.raises(FaultSpecError, match=why):
            parse_faults(bad, duration_s=100, agencies=codes, rng=rng)


def test_workload_looks_like_the_national_axis() -> None:
    codes = [a.code for a in AGENCIES]
    plans = plan_documents(codes, count=5000, duration_s=1000, rng=random.Random(3)).plans
    senders = Counter(p.sender for p in plans)
    assert senders.most_common(1)[0][0] == AgencyCode.parse("G22")
    assert sum(n for _, n in senders.most_common(10)) > 0.4 * len(plans)  # a few send most
    fan = Counter(min(len(p.recipients), 11) for p in plans)
    assert fan[1] > 0.6 * len(plans) and any(p.broadcast and len(p.recipients) == 94 for p in plans)
    sizes = sorted(p.size for p in plans)
    assert sizes[0] >= 2048 and sizes[len(sizes) // 2] < 200 << 10 and sizes[-1] > 5 << 20
    peak = sum(1 for p in plans if any(a * 1000 <= p.at_s < b * 1000 for a, b in PEAKS))
    peak_share = sum(b - a for a, b in PEAKS)
    assert peak / len(plans) > 2 * peak_share  # denser in the morning peaks


def test_synthetic_agencies_beyond_the_list() -> None:
    many = national_set(AGENCIES, 1000)
    assert len({a.code for a in many}) == 1000 and many[0].code == AgencyCode.parse("G22")
    assert sum(1 for a in many if a.group == "synthetic") == 905


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cli_prints_a_verdict() -> None:
    r = CliRunner().invoke(
        cli, ["simnet", "run", "--nodes", "5", "--docs", "8", "--duration", "60", "--faults", "none", "--seed", "3"]
    )
    assert r.exit_code == 0, r.output
    assert "VERDICT: PASS" in r.output and "delivered exactly once" in r.output
    bad = CliRunner().invoke(cli, ["simnet", "run", "--nodes", "5", "--faults", "kill=Q01@1"])
    assert bad.exit_code == 2 and "not an agency of this network" in bad.output


@pytest.mark.timeout(120)
def test_a_virtual_run_puts_trios_scheduler_back(tmp_path: Path) -> None:
    """Virtual mode makes trio's scheduler deterministic and seeds its RNG: for its own run only."""
    core: Any = importlib.import_module("trio._core._run")
    flag, state = core._ALLOW_DETERMINISTIC_SCHEDULING, core._r.getstate()
    outcome = run_simulation(config(3, 2, 20, "none", seed=6), tmp_path, echo=lambda s: None)
    assert outcome.ok
    assert core._ALLOW_DETERMINISTIC_SCHEDULING is flag
    assert core._r.getstate() == state


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_joins_in_a_network_without_g22_are_welcomed_by_its_heaviest_sender_and_settle(tmp_path: Path) -> None:
    """Each join adds its exchange with the workload's hub; the run waits for all of them, however many joins."""
    agencies = [a for a in national_set(AGENCIES, 7) if a.code != AgencyCode.parse("G22")]
    cfg = SimConfig(agencies=agencies, docs=8, duration_s=60, faults="join=H98@20%,join=H99@40%", seed=3, max_size=256 << 10)
    sim = Simulation(cfg, tmp_path, echo=lambda s: None)
    outcome = sim.execute()
    assert outcome.ok, json.dumps(outcome.checks, indent=1, default=str)
    assert sim.hub in {a.code for a in agencies}
    h98, h99 = AgencyCode.parse("H98"), AgencyCode.parse("H99")
    assert [(p.sender, p.recipients) for p in sim.extra] == [
        (sim.hub, (h98,)),
        (h98, (sim.hub,)),
        (sim.hub, (h99,)),
        (h99, (sim.hub,)),
    ]
    indexes = [p.index for p in [*sim.plans, *sim.extra]]
    assert len(set(indexes)) == len(indexes)
    assert outcome.stats["documents"] == 8 + 4 and len(sim.sent) == len(sim.plans) + len(sim.extra)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_verdict_catches_an_edxml_package_that_does_not_come_out_as_it_went_in(tmp_path: Path) -> None:
    """Change what one sender's software is recorded to have sent, after the run: the comparison must see it."""

    class Sabotaged(Simulation):
        async def _settle(self) -> bool:
            settled = await super()._settle()
            doc, (style, package) = next(iter(self.edxml.sent.items()))
            assert package.edoc is not None
            edoc = dataclasses.replace(package.edoc, subject="Một trích yếu khác")
            self.edxml.sent[doc] = (style, dataclasses.replace(package, edoc=edoc))
            return settled

    outcome = Sabotaged(config(8, 40, 120, "none", seed=3), tmp_path, echo=lambda s: None).execute()
    check = outcome.checks["every edXML package comes out at each recipient as it went in"]
    assert not outcome.ok and not check["ok"] and check["exported"] >= 5
    assert len(check["differ"]) >= 1 and all("subject: sent 'Một trích yếu khác'" in d for d in check["differ"])
