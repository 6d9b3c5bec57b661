"""Who is calling the SDK's HTTP API, and may they: the signature, and what the SDK lacks.

The SDK signs each call with the system's secret (protocol/sdk.py) and has
no replay protection of its own. This gate adds, in order: the system must
be listed in ``[[sdk.systems]]``; the MAC must match (constant time); the
signed timestamp must be within ``window_s`` of the node's clock; the same
signature must not have been seen within the window (a bounded cache: when
it is full the oldest entries leave first, and a call whose timestamp is
older than the oldest remembered one is refused, so nothing can be replayed
past the cache); the system must be under its rate (a token bucket per
system). A system acts only for its own agencies (:meth:`System.require`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from protocol import sdk
from protocol.agency import AgencyCode
from protocol.config import SdkSettings
from protocol.errors import AccessDeniedError, SdkErrorCode, SdkRequestError

REPLAY_CACHE = 100_000  # signatures remembered (about 10 MB); a full cache narrows the window, never opens it


@dataclass(frozen=True)
class System:
    system_id: str
    secret: bytes
    agencies: tuple[AgencyCode, ...]

    def may_act_for(self, code: AgencyCode) -> bool:
        return code in self.agencies

    def require(self, code: AgencyCode) -> None:
        """Raise AccessDeniedError unless this system acts for ``code``."""
        if code not in self.agencies:
            allowed = ", ".join(str(c) for c in self.agencies)
            raise AccessDeniedError(f"system {self.system_id} acts for {allowed}, not {code}")


class SdkGate:
    def __init__(self, settings: SdkSettings, systems: list[System], clock: Callable[[], float]) -> None:
        """``clock``: seconds, monotonic enough for rates (tests give their own)."""
        self.settings = settings
        self.systems = {s.system_id: s for s in systems}
        self.clock = clock
        self._seen: OrderedDict[str, int] = OrderedDict()  # MAC -> signed time (ms), oldest first
        self._floor_ms = 0  # a signed time at or below this may have been forgotten: refused
        self._buckets: dict[str, tuple[float, float]] = {}  # system -> (tokens, when)

    def authenticate(self, headers: Mapping[str, str], now_ms: int) -> tuple[System, sdk.SignedCall]:
        """The calling system and its signed entries; raises SdkRequestError with the ErrorCode that says why."""
        call = sdk.read_signed(headers, self.settings.utc_offset_min)
        system = self.systems.get(call.system_id)
        if system is None:
            raise SdkRequestError(SdkErrorCode.UNKNOWN_SYSTEM, f"system {call.system_id!r:.70} is not allowed on this node")
        if not sdk.verify(call, system.secret):
            raise SdkRequestError(SdkErrorCode.BAD_SIGNATURE, f"the signature of system {system.system_id} does not match")
        window_ms = int(self.settings.window_s * 1000)
        if abs(now_ms - call.at_ms) > window_ms:
            raise SdkRequestError(
                SdkErrorCode.STALE_TIMESTAMP,
                f"timestamp {call.get('timestamp')} is {abs(now_ms - call.at_ms) // 1000} s from the node's clock "
                f"(allowed: {self.settings.window_s:g} s; the SDK writes UTC{self.settings.utc_offset_min / 60:+g} wall time)",
            )
        self._remember(call, now_ms - window_ms)
        self._rate(system)
        return system, call

    def _remember(self, call: sdk.SignedCall, expired_ms: int) -> None:
        seen = self._seen
        while seen and next(iter(seen.values())) < expired_ms:
            seen.popitem(last=False)
        if call.mac in seen:
            raise SdkRequestError(SdkErrorCode.REPLAY, "this exact signed call was made before: sign each call anew")
        if call.at_ms <= self._floor_ms:
            raise SdkRequestError(SdkErrorCode.REPLAY, "the node is under load and cannot tell this call from a replay: retry")
        seen[call.mac] = call.at_ms
        while len(seen) > REPLAY_CACHE:
            _, at = seen.popitem(last=False)
            self._floor_ms = max(self._floor_ms, at)

    def _rate(self, system: System) -> None:
        now = self.clock()
        rate, burst = self.settings.rate_per_s, float(self.settings.burst)
        tokens, when = self._buckets.get(system.system_id, (burst, now))
        tokens = min(burst, tokens + (now - when) * rate)
        if tokens < 1:
            self._buckets[system.system_id] = (tokens, now)
            raise SdkRequestError(
                SdkErrorCode.RATE_LIMITED,
                f"system {system.system_id} calls more than {rate:g}/s: retry in {(1 - tokens) / rate:.1f} s",
            )
        self._buckets[system.system_id] = (tokens - 1, now)
