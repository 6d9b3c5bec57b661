from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import node  # noqa: F401 - py-libp2p without its unused parts, as the daemon runs it (pitfall 32)
from identity.keys import AgencyKeys, AuthorityPublic, NodeKey, SigningKey
from identity.provision import DeterministicRng, ProvisionedNode, build_directory
from identity.trust import Trust
from protocol.agency import AgencyCode

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

NOW = 1_795_000_000_000  # a fixed "now" (2026-11) in ms
DAY = 86_400_000
NET = "truc-test"


@pytest.fixture
def rng() -> DeterministicRng:
    return DeterministicRng(b"tests")


class Net:
    """Three nodes: G22 (Government Office) with a sub-unit, H01 (An Giang), H29 (TP Hồ Chí Minh)."""

    def __init__(self, rng: DeterministicRng) -> None:
        self.authority = SigningKey.generate(rng)
        self.authority_public = AuthorityPublic(self.authority.public, NET)
        self.keys = {
            c: AgencyKeys.generate(AgencyCode.parse(c), rng)
            for c in ["000.00.00.G22", "000.00.01.G22", "000.00.00.H01", "000.00.00.H29"]
        }
        self.nodes = [
            ProvisionedNode(
                NodeKey(rng(32)), [self.keys["000.00.00.G22"], self.keys["000.00.01.G22"]], ("/ip4/127.0.0.1/tcp/4001",)
            ),
            ProvisionedNode(NodeKey(rng(32)), [self.keys["000.00.00.H01"]], ("/ip4/127.0.0.1/tcp/4002",)),
            ProvisionedNode(NodeKey(rng(32)), [self.keys["000.00.00.H29"]], ("/ip4/127.0.0.1/tcp/4003",)),
        ]
        names = {
            AgencyCode.parse("000.00.00.G22"): "Văn phòng Chính phủ",
            AgencyCode.parse("000.00.01.G22"): "Vụ Hành chính",
            AgencyCode.parse("000.00.00.H01"): "UBND tỉnh An Giang",
            AgencyCode.parse("000.00.00.H29"): "UBND thành phố Hồ Chí Minh",
        }
        self.directory = build_directory(net=NET, nodes=self.nodes, names=names, serial=1, at=NOW - DAY, until=NOW + 30 * DAY)
        self.trust = Trust(self.directory, self.authority_public)

    def k(self, code: str) -> AgencyKeys:
        return self.keys[code]


@pytest.fixture
def net(rng: DeterministicRng) -> Net:
    return Net(rng)


@pytest.fixture(scope="session")
def shared_net() -> Net:
    """For Hypothesis tests: read-only, built once."""
    return Net(DeterministicRng(b"tests"))
