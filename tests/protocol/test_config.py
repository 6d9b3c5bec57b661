from __future__ import annotations

import dataclasses

import pytest

from protocol.agency import AgencyCode
from protocol.config import NodeConfig, RetryPolicy, parse_config, render_config
from protocol.errors import ConfigError

BASE = NodeConfig(network="truc-test", codes=(AgencyCode.parse("G22"), AgencyCode.parse("G22.01")))


def test_rendered_config_parses_back_to_the_same_value() -> None:
    for cfg in (
        BASE,
        dataclasses.replace(BASE, relay_shards=("G22", "H29"), psk="ab" * 32, metrics_listen="127.0.0.1:9464", direct_push=False),
        dataclasses.replace(BASE, psk_file="swarm.key", psk_also_accept=("swarm.old.key",)),
        dataclasses.replace(BASE, retry=RetryPolicy(initial_s=0.5, cap_s=10, jitter=0, receipt_timeout_s=60, give_up_days=2)),
    ):
        assert parse_config(render_config(cfg), "config.toml") == cfg


def test_minimal_config() -> None:
    cfg = parse_config('[node]\nnetwork = "n"\ncodes = ["H29"]\n', "c.toml")
    assert cfg.codes == (AgencyCode.parse("000.00.00.H29"),) and cfg.retry.cap_s == 300 and cfg.relay_shards is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[node]\ncodes = ['G22']\n", "c.toml: [node] network: missing"),
        ("[node]\nnetwork = 'n'\n", "[node] codes: a node hosts at least one agency code"),
        ("[node]\nnetwork = 'n'\ncodes = ['g22']\n", "[node] codes: 'g22'"),
        ("[node]\nnetwork = 'N!'\ncodes = ['G22']\n", "[node] network:"),
        ("[node]\nnetwork = 'n'\ncodes = ['G22']\nlisten = ['tcp://x']\n", "[node] listen: 'tcp://x': expected a TCP multiaddr"),
        ("[node]\nnetwork = 'n'\ncodes = ['G22']\npsk = 'abc'\n", "[node] psk: a private-network key is 64"),
        (
            f"[node]\nnetwork = 'n'\ncodes = ['G22']\npsk = '{'ab' * 32}'\npsk_file = 'swarm.key'\n",
            "[node] psk: set psk_file or psk, not both",
        ),
        ("[node]\nnetwork = 'n'\ncodes = ['G22']\npsk_also_accept = ['old.key']\n", "[node] psk_also_accept: keys to also"),
        ("[node]\nnetwork = 'n'\ncodes = ['G22']\ncolour = 1\n", "[node] colour: unknown key"),
        ("[nodes]\nnetwork = 'n'\n", "unknown section [nodes]"),
        ("[node]\nnetwork = 'n'\ncodes = ['G22']\n[retry]\ncap_s = 'soon'\n", "[retry] cap_s: expected a number, got 'soon'"),
        ("[node]\nnetwork = 'n'\ncodes = ['G22']\n[retry]\ncap_s = 0.5\n", "[retry] cap_s: 0.5 is below initial_s 1.0"),
        ("[node]\nnetwork = 'n'\ncodes = ['G22']\n[relay]\nshards = ['G22.01']\n", "[relay] shards: 'G22.01'"),
        (
            "[node]\nnetwork = 'n'\ncodes = ['G22']\n[gossip]\ndirect_push = 'yes'\n",
            "[gossip] direct_push: expected true or false",
        ),
        ("[node]\nnetwork = 'n'\ncodes = ['G22']\n[node", "not valid TOML"),
        ("[node]\nnetwork = 'n'\ncodes = ['G22', 'G22']\n", "a code is listed twice"),
    ],
)
def test_errors_name_file_section_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.toml")
    assert message in str(err.value) and "c.toml" in str(err.value)
