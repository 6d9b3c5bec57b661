"""Agency codes (mã định danh), QCVN 102:2016.

Canonical text form ``DDD.DD.DD.LDD``, e.g. ``000.00.00.G22``: the rightmost
group is level 1 (a letter and two digits), then level 2, level 3 and level 4
(three digits) leftwards; a zero group means the level is not used. The
short form used by newer directories reads left to right from level 1:
``G22``, ``G09.01``, ``G09.01.02``, ``G09.01.02.003``.

Both forms parse to the same value; ``str()`` is always the canonical form,
``short()`` the left-to-right one. Codes are data: never derive them from
names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import AgencyCodeError

_QCVN = re.compile(r"^(\d{3})\.(\d{2})\.(\d{2})\.([A-Z])(\d{2})$")
_SHORT = re.compile(r"^([A-Z])(\d{2})(?:\.(\d{2})(?:\.(\d{2})(?:\.(\d{3}))?)?)?$")
# Parsing is hot (store keys, headers, directory records) and codes are few and immutable.
_PARSED: dict[str, AgencyCode] = {}
_PARSED_MAX = 1 << 18
CODE_TEXT_BYTES = 13  # len("000.00.00.G22"): fixed width, used in store keys
SHARD_BYTES = 3  # len("G22")


@dataclass(frozen=True, order=True, slots=True)
class AgencyCode:
    """A validated agency code. Ordering is hierarchical (level 1 first)."""

    letter: str
    number: int  # level 1 number, 1..99
    l2: int = 0  # 0..99, 0 = not used
    l3: int = 0  # 0..99
    l4: int = 0  # 0..999
    # The canonical text, made at first use and kept: codes are printed and keyed on every envelope, record
    # and log line (not at construction: a national directory builds 111,000 codes, most never printed).
    _text: str = field(default="", init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not (len(self.letter) == 1 and "A" <= self.letter <= "Z"):
            raise AgencyCodeError(f"level-1 group letter must be A-Z, got {self.letter!r}")
        if not 1 <= self.number <= 99:
            raise AgencyCodeError(f"level-1 number must be 01..99, got {self.number}")
        if not (0 <= self.l2 <= 99 and 0 <= self.l3 <= 99 and 0 <= self.l4 <= 999):
            raise AgencyCodeError("level 2/3 must be 00..99 and level 4 000..999")
        # A level can only be used when every level above it is used.
        if (self.l3 and not self.l2) or (self.l4 and not self.l3):
            raise AgencyCodeError("a lower level is set while a higher one is 0")

    @classmethod
    def parse(cls, text: str) -> AgencyCode:
        """Parse either form; raises AgencyCodeError naming the input."""
        cached = _PARSED.get(text) if isinstance(text, str) else None
        if cached is not None:
            return cached
        code = cls._parse(text)
        if len(_PARSED) < _PARSED_MAX:
            _PARSED[text] = code
        return code

    @classmethod
    def _parse(cls, text: str) -> AgencyCode:
        if not isinstance(text, str):
            raise AgencyCodeError(f"expected text, got {type(text).__name__}")
        m = _QCVN.match(text)
        if m:
            l4, l3, l2, letter, num = m.groups()
            return cls._make(text, letter, int(num), int(l2), int(l3), int(l4))
        m = _SHORT.match(text)
        if m:
            letter, num, l2, l3, l4 = m.groups()
            if (l2 is not None and int(l2) == 0) or (l3 is not None and int(l3) == 0) or (l4 is not None and int(l4) == 0):
                raise AgencyCodeError(f"{text!r}: the short form lists used levels only, so no group may be zero")
            return cls._make(text, letter, int(num), int(l2 or 0), int(l3 or 0), int(l4 or 0))
        hint = (
            " (letters are upper case)"
            if text.upper() != text and (_QCVN.match(text.upper()) or _SHORT.match(text.upper()))
            else ""
        )
        raise AgencyCodeError(f"{text!r}{hint}")

    @classmethod
    def _make(cls, text: str, letter: str, num: int, l2: int, l3: int, l4: int) -> AgencyCode:
        try:
            return cls(letter, num, l2, l3, l4)
        except AgencyCodeError as exc:
            raise AgencyCodeError(f"{text!r}: {exc.detail}") from None

    def __str__(self) -> str:
        text = self._text
        if not text:
            text = f"{self.l4:03d}.{self.l3:02d}.{self.l2:02d}.{self.letter}{self.number:02d}"
            object.__setattr__(self, "_text", text)
        return text

    def __repr__(self) -> str:
        return f"AgencyCode({str(self)!r})"

    def short(self) -> str:
        parts = [f"{self.letter}{self.number:02d}"]
        if self.l2:
            parts.append(f"{self.l2:02d}")
        if self.l3:
            parts.append(f"{self.l3:02d}")
        if self.l4:
            parts.append(f"{self.l4:03d}")
        return ".".join(parts)

    @property
    def level(self) -> int:
        """1 for a level-1 agency (a ministry, a province), up to 4."""
        return 4 if self.l4 else 3 if self.l3 else 2 if self.l2 else 1

    @property
    def shard(self) -> str:
        """The level-1 code, e.g. ``G22``: the gossip topic and replication unit."""
        return f"{self.letter}{self.number:02d}"

    @property
    def root(self) -> AgencyCode:
        return AgencyCode(self.letter, self.number)

    @property
    def parent(self) -> AgencyCode | None:
        if self.l4:
            return AgencyCode(self.letter, self.number, self.l2, self.l3)
        if self.l3:
            return AgencyCode(self.letter, self.number, self.l2)
        if self.l2:
            return AgencyCode(self.letter, self.number)
        return None

    def key(self) -> bytes:
        """Fixed-width bytes for store keys (the canonical text, 13 ASCII bytes)."""
        return str(self).encode("ascii")


_TWO = tuple(f"{i:02d}" for i in range(100))
_THREE = tuple(f"{i:03d}" for i in range(1000))
_CODE_SLOTS = ("letter", "number", "l2", "l3", "l4", "_text")  # every field, in order


def interned_codes(
    letters: Iterable[str], numbers: Iterable[int], l2s: Iterable[int], l3s: Iterable[int], l4s: Iterable[int]
) -> list[AgencyCode]:
    """The codes given as columns, as the objects :meth:`AgencyCode.parse` returns for their canonical text.

    Where ``parse`` has already made one, that object; otherwise a new code,
    remembered so that ``parse`` returns it from now on (within its cache's
    bound). A dict keyed by codes answers fastest when asked with its own key
    object (no ``__eq__`` call), and codes from envelope headers come from
    ``parse``: a directory built without parsing text (from its verified
    form) gets the lookup rate of one that parsed.

    The values are **not validated**: only for columns of codes that were
    validated before and come back authenticated (a node's verified form of
    its directory, identity/directory_cache.py). A new code is made without
    its ``__init__`` (setting the slots directly, the canonical text too):
    at 111,000 codes per start that is 35 ms instead of 75.
    """
    out = []
    new = object.__new__
    letter_, number_, l2_, l3_, l4_, text_ = (getattr(AgencyCode, f).__set__ for f in _CODE_SLOTS)
    for letter, number, l2, l3, l4 in zip(letters, numbers, l2s, l3s, l4s, strict=True):
        # The canonical text through tables: str() would format each group.
        text = f"{_THREE[l4]}.{_TWO[l3]}.{_TWO[l2]}.{letter}{_TWO[number]}"
        known = _PARSED.get(text)
        if known is None:
            known = new(AgencyCode)
            letter_(known, letter)
            number_(known, number)
            l2_(known, l2)
            l3_(known, l3)
            l4_(known, l4)
            text_(known, text)
            if len(_PARSED) < _PARSED_MAX:
                _PARSED[text] = known
        out.append(known)
    return out


def parse_shard(text: str) -> str:
    """Validate a shard name (a level-1 code such as ``G22``)."""
    code = AgencyCode.parse(text)
    if code.level != 1:
        raise AgencyCodeError(f"{text!r} is not a level-1 code, so it is not a shard")
    return code.shard


@dataclass(frozen=True, slots=True)
class AgencyListing:
    """One row of an agency list such as ``agencies-level1.csv``."""

    code: AgencyCode
    name: str
    group: str  # government, province, party
    evidence: str  # verified, secondary, assumed


def parse_agency_list(text: str) -> list[AgencyListing]:
    """Parse ``code,name,group,evidence`` rows (with a header row).

    Names may contain unquoted commas (the shared list has
    ``Bộ Văn hóa, Thể thao và Du lịch``), so the code is the first field, group
    and evidence the last two, and the name everything between. Raises
    AgencyCodeError naming the line for a bad row.
    """
    rows = []
    lines = text.splitlines()
    if not lines or [f.strip() for f in lines[0].split(",")] != ["code", "name", "group", "evidence"]:
        raise AgencyCodeError("agency list: the first line must be the header code,name,group,evidence")
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) < 4:
            raise AgencyCodeError(f"agency list line {lineno}: expected code,name,group,evidence")
        try:
            code = AgencyCode.parse(fields[0].strip())
        except AgencyCodeError as exc:
            raise AgencyCodeError(f"agency list line {lineno}: {exc.detail}") from None
        name = ",".join(fields[1:-2]).strip().strip('"')
        rows.append(AgencyListing(code, name, fields[-2].strip(), fields[-1].strip()))
    return rows
