"""The agencies a simulation runs: the 95 of 2019, or more, synthesized."""

from __future__ import annotations

from pathlib import Path

from protocol.agency import AgencyCode, AgencyListing, parse_agency_list

DATA = Path(__file__).resolve().parent / "data" / "agencies-level1.csv"


def embedded_agencies() -> list[AgencyListing]:
    """The 95 level-1 agencies of the 2019 national axis (31 central, 63 provinces, the Party Central Office)."""
    return parse_agency_list(DATA.read_text("utf-8"))


def national_set(listing: list[AgencyListing], n: int) -> list[AgencyListing]:
    """``n`` agencies: G22 first, then the list in order; beyond the list, synthetic level-1 codes.

    Synthetic agencies use letters the 2019 list does not (B, C, D, ...), so
    a 1,000-node run has 95 real agencies and 905 invented ones, named so.
    """
    if n < 2:
        raise ValueError("a network needs at least two agencies")
    g22 = [a for a in listing if a.code == AgencyCode.parse("G22")]
    rest = [a for a in listing if a.code != AgencyCode.parse("G22")]
    chosen = (g22 + rest)[:n]
    used = {a.code for a in listing}
    letters = [chr(c) for c in range(ord("B"), ord("Z") + 1) if chr(c) not in {a.code.letter for a in listing}]
    k = 0
    while len(chosen) < n:
        letter, number = letters[k // 99], k % 99 + 1
        code = AgencyCode(letter, number)
        if code not in used:
            chosen.append(AgencyListing(code, f"Cơ quan mô phỏng {code.short()}", "synthetic", "synthetic"))
        k += 1
    return chosen
