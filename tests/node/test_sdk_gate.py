"""node/sdk_gate.py without a network: the window, the bounded replay cache and the rate, with given clocks."""

from __future__ import annotations

import pytest

from node import sdk_gate
from node.sdk_gate import SdkGate, System
from protocol import sdk
from protocol.agency import AgencyCode
from protocol.config import SdkSettings
from protocol.errors import AccessDeniedError, SdkErrorCode, SdkRequestError

SECRET = b"s3cret-s3cret-s3cret"
G22 = AgencyCode.parse("000.00.00.G22")
NOW = 1_764_571_353_000


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def call(at_ms: int, **extra: str) -> dict[str, str]:
    entries = {"systemid": "iofice", "timestamp": sdk.format_timestamp(at_ms, 420), **extra}
    return {k.lower(): v for k, v in sdk.signed_headers(SECRET, entries).items()}


def gate(clock: Clock, **kw: float) -> SdkGate:
    settings = SdkSettings(rate_per_s=kw.get("rate", 10.0), burst=int(kw.get("burst", 5)), window_s=300.0)
    return SdkGate(settings, [System("iofice", SECRET, (G22,))], clock)


def refused(g: SdkGate, headers: dict[str, str], now: int) -> SdkErrorCode:
    with pytest.raises(SdkRequestError) as e:
        g.authenticate(headers, now)
    return e.value.error


def test_the_window_is_both_ways_and_a_replay_is_refused() -> None:
    g = gate(Clock(), burst=100)
    assert refused(g, call(NOW - 301_000), NOW) is SdkErrorCode.STALE_TIMESTAMP
    assert refused(g, call(NOW + 301_000), NOW) is SdkErrorCode.STALE_TIMESTAMP
    once = call(NOW - 1000, n="1")
    system, signed = g.authenticate(once, NOW)
    assert system.system_id == "iofice" and signed.get("n") == "1"
    assert refused(g, once, NOW + 5000) is SdkErrorCode.REPLAY


def test_a_full_replay_cache_narrows_the_window_and_never_forgets_into_acceptance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk_gate, "REPLAY_CACHE", 3)
    g = gate(Clock(), burst=100)
    first = call(NOW - 10, n="0")
    g.authenticate(first, NOW)
    for i in range(1, 4):
        g.authenticate(call(NOW - 10 + i, n=str(i)), NOW)
    assert len(g._seen) == 3  # the oldest was forgotten...
    assert refused(g, first, NOW) is SdkErrorCode.REPLAY  # ...and is still refused: at or below the floor


def test_each_system_has_its_own_rate() -> None:
    clock = Clock()
    g = gate(clock, rate=10.0, burst=3)
    for i in range(3):
        g.authenticate(call(NOW + i), NOW)
    assert refused(g, call(NOW + 10), NOW) is SdkErrorCode.RATE_LIMITED
    clock.t += 0.1  # one token back
    g.authenticate(call(NOW + 11), NOW)


def test_a_system_acts_only_for_its_agencies() -> None:
    s = System("iofice", SECRET, (G22,))
    s.require(G22)
    with pytest.raises(AccessDeniedError):
        s.require(AgencyCode.parse("000.00.00.H29"))
