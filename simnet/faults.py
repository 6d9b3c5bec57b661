"""Fault schedules for simnet: parsed from ``--faults`` and seeded.

    SPEC   := "none" | "default" | ITEM ("," ITEM)*
    ITEM   := KIND [ "=" ARG ] "@" START [ "+" LENGTH ]
    START, LENGTH := seconds, or a percentage of the run ("30%")

    kill=CODE|random@T+D      kill -9 the node hosting CODE at T, restart it after D
    partition=A|B@T+D         split the network in two: "gov" (A, G codes) | "prov" (H, K codes),
                              "half" (a seeded random half), or codes "H29|H17" (those against the rest)
    delay=MS@T+D              add MS milliseconds to every link
    loss=P@T+D                lose a fraction P of messages and requests on every link
    rekey=CODE|random@T       the authority revokes CODE's signing key and issues a new one
                              (a stolen key): envelopes signed with the old key are refused from then on
    join=CODE@T               a new agency and its node join through a directory update
    forge@T                   a member node turns rogue: it gossips and pushes envelopes with
                              forged signatures and from unknown agencies

"default" is a mix of all of them over the run.
"""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass

from protocol.agency import AgencyCode
from protocol.errors import AgencyCodeError, SchemaError


class FaultKind(enum.StrEnum):
    KILL = "kill"
    PARTITION = "partition"
    DELAY = "delay"
    LOSS = "loss"
    REKEY = "rekey"
    JOIN = "join"
    FORGE = "forge"


WINDOWED = {FaultKind.KILL, FaultKind.PARTITION, FaultKind.DELAY, FaultKind.LOSS}  # last a while (10 % of the run unless said)
NAMING_AN_AGENCY = {FaultKind.KILL, FaultKind.REKEY, FaultKind.JOIN}
DEFAULT = (
    "kill=random@20%+10%,partition=gov|prov@40%+12%,delay=300@60%+8%,loss=0.2@70%+8%,rekey=random@50%,join=H99@30%,forge@35%"
)
_ITEM = re.compile(r"^(?P<kind>[a-z]+)(=(?P<arg>[^@]+))?@(?P<start>[0-9.]+%?)(\+(?P<length>[0-9.]+%?))?$")


class FaultSpecError(SchemaError):
    """The fault specification is not valid (see truc simnet run --help)"""


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    arg: str
    start_s: float
    length_s: float

    def label(self) -> str:
        return f"{self.kind}{'=' + self.arg if self.arg else ''}"


def _time(text: str, duration_s: float) -> float:
    return float(text[:-1]) / 100 * duration_s if text.endswith("%") else float(text)


def parse_faults(spec: str, *, duration_s: float, agencies: list[AgencyCode], rng: random.Random) -> list[Fault]:
    """Resolve a spec into concrete faults; ``random`` picks among ``agencies`` (never G22)."""
    spec = spec.strip()
    if spec in ("", "none"):
        return []
    if spec == "default":
        spec = DEFAULT
    faults = []
    candidates = sorted((a for a in agencies if a.shard != "G22"), key=str)
    for item in spec.split(","):
        m = _ITEM.match(item.strip())
        if not m:
            raise FaultSpecError(f"{item!r}: expected KIND[=ARG]@START[+LENGTH], e.g. kill=H29@30%+10%")
        arg = (m["arg"] or "").strip()
        try:
            kind = FaultKind(m["kind"])
        except ValueError:
            raise FaultSpecError(f"{item!r}: unknown fault {m['kind']!r}; known: {', '.join(FaultKind)}") from None
        start = _time(m["start"], duration_s)
        length = _time(m["length"], duration_s) if m["length"] else (0.1 * duration_s if kind in WINDOWED else 0.0)
        if arg == "random" and kind in (FaultKind.KILL, FaultKind.REKEY):
            if not candidates:
                raise FaultSpecError(f"{item!r}: no agency to pick at random")
            arg = str(rng.choice(candidates))
        if kind in NAMING_AN_AGENCY:
            try:
                arg = str(AgencyCode.parse(arg))
            except AgencyCodeError as exc:
                raise FaultSpecError(f"{item!r}: {exc.message}") from None
            if kind is not FaultKind.JOIN and AgencyCode.parse(arg) not in agencies:
                raise FaultSpecError(f"{item!r}: {arg} is not an agency of this network")
        if kind in (FaultKind.DELAY, FaultKind.LOSS):
            try:
                value = float(arg)
            except ValueError:
                raise FaultSpecError(f"{item!r}: {kind} needs a number") from None
            if kind is FaultKind.LOSS and not 0 <= value < 1:
                raise FaultSpecError(f"{item!r}: loss is a fraction below 1")
        if kind is FaultKind.PARTITION and not arg:
            raise FaultSpecError(f"{item!r}: say how to split: gov|prov, half, or codes like H29|H17")
        faults.append(Fault(kind, arg, start, length))
    return sorted(faults, key=lambda f: f.start_s)


def partition_groups(arg: str, agencies: list[AgencyCode], rng: random.Random) -> tuple[set[AgencyCode], set[AgencyCode]]:
    if arg in ("gov|prov", "gov"):
        a = {c for c in agencies if c.letter in "GA"}
    elif arg == "half":
        shuffled = sorted(agencies, key=str)
        rng.shuffle(shuffled)
        a = set(shuffled[: len(shuffled) // 2])
    else:
        try:
            a = {AgencyCode.parse(c) for c in arg.split("|")}
        except AgencyCodeError as exc:
            raise FaultSpecError(f"partition={arg}: {exc.message}") from None
    if not a or a >= set(agencies):  # e.g. gov|prov on a network of ministries only: split in halves instead
        return partition_groups("half", agencies, rng)
    return a, set(agencies) - a
