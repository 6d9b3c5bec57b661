from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.agency import _CODE_SLOTS, _PARSED, AgencyCode, interned_codes, parse_agency_list, parse_shard
from protocol.errors import AgencyCodeError

DATA = Path(__file__).resolve().parents[2] / "simnet" / "data" / "agencies-level1.csv"


@pytest.mark.parametrize(
    ("text", "canonical", "short", "level", "parent"),
    [
        ("000.00.00.G22", "000.00.00.G22", "G22", 1, None),
        ("G22", "000.00.00.G22", "G22", 1, None),
        ("G09.01", "000.00.01.G09", "G09.01", 2, "000.00.00.G09"),
        ("000.00.01.G09", "000.00.01.G09", "G09.01", 2, "000.00.00.G09"),
        ("H29.05.12", "000.12.05.H29", "H29.05.12", 3, "000.00.05.H29"),
        ("001.02.03.H05", "001.02.03.H05", "H05.03.02.001", 4, "000.02.03.H05"),
    ],
)
def test_both_forms_parse_to_one_value(text: str, canonical: str, short: str, level: int, parent: str | None) -> None:
    code = AgencyCode.parse(text)
    assert str(code) == canonical
    assert code.short() == short
    assert code.level == level
    assert (str(code.parent) if code.parent else None) == parent
    assert AgencyCode.parse(canonical) == AgencyCode.parse(short) == code
    assert code.shard == canonical[-3:]
    assert len(code.key()) == 13


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("g22", "upper case"),
        ("000.00.00.G00", "01..99"),
        ("001.00.00.G01", "higher one is 0"),
        ("000.05.00.G01", "higher one is 0"),
        ("G09.00", "no group may be zero"),
        ("G9", ""),
        ("00.00.00.G22", ""),
        ("000.00.00.22", ""),
        ("", ""),
        ("000.00.00.G22 ", ""),
    ],
)
def test_bad_codes_get_a_clear_error(text: str, hint: str) -> None:
    with pytest.raises(AgencyCodeError) as err:
        AgencyCode.parse(text)
    assert repr(text) in str(err.value)
    assert hint in str(err.value)
    assert "000.00.00.G22" in str(err.value)  # the message shows the expected form


def test_non_text_is_an_agency_code_error() -> None:
    with pytest.raises(AgencyCodeError):
        AgencyCode.parse(22)  # type: ignore[arg-type]


def test_hierarchy_and_order() -> None:
    g22 = AgencyCode.parse("G22")
    sub = AgencyCode.parse("G22.01.02")
    assert sub.parent == AgencyCode.parse("G22.01") and sub.parent.parent == g22 and g22.parent is None
    assert sub.root == g22
    assert sorted([AgencyCode.parse(c) for c in ["H01", "G22.01", "G22", "G01"]]) == [
        AgencyCode.parse(c) for c in ["G01", "G22", "G22.01", "H01"]
    ]
    assert parse_shard("G22") == "G22"
    with pytest.raises(AgencyCodeError):
        parse_shard("G22.01")


def test_the_95_agencies_of_2019_parse() -> None:
    rows = parse_agency_list(DATA.read_text("utf-8"))
    assert len(rows) == 95
    assert all(r.code.level == 1 for r in rows)
    assert len({r.code.shard for r in rows}) == 95
    groups = {g: sum(1 for r in rows if r.group == g) for g in ("government", "province", "party")}
    assert groups == {"government": 31, "province": 63, "party": 1}
    assert {r.evidence for r in rows} == {"verified", "secondary", "assumed"}
    by_code = {str(r.code): r.name for r in rows}
    # A name with an unquoted comma, and Vietnamese diacritics kept as UTF-8.
    assert by_code["000.00.00.G16"] == "Bộ Văn hóa, Thể thao và Du lịch"
    assert by_code["000.00.00.G01"] == "Bộ Công an"


def test_agency_list_errors_name_the_line() -> None:
    with pytest.raises(AgencyCodeError, match="header"):
        parse_agency_list("a,b\n")
    with pytest.raises(AgencyCodeError, match="line 3"):
        parse_agency_list("code,name,group,evidence\n000.00.00.G01,X,government,verified\nG1,Y,government,verified\n")


codes = st.builds(
    lambda letter, num, l2, l3, l4: AgencyCode(letter, num, l2, l3 if l2 else 0, l4 if (l2 and l3) else 0),
    st.sampled_from("ABGHK"),
    st.integers(1, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 999),
)


@given(codes)
def test_round_trip_both_forms(code: AgencyCode) -> None:
    assert AgencyCode.parse(str(code)) == code
    assert AgencyCode.parse(code.short()) == code


@given(st.text(max_size=20))
def test_arbitrary_text_parses_or_raises_agency_code_error(text: str) -> None:
    try:
        code = AgencyCode.parse(text)
    except AgencyCodeError:
        return
    assert str(code) == text or code.short() == text


def _columns(given: list[AgencyCode]) -> tuple[str, list[int], list[int], list[int], list[int]]:
    return (
        "".join(c.letter for c in given),
        [c.number for c in given],
        [c.l2 for c in given],
        [c.l3 for c in given],
        [c.l4 for c in given],
    )


@given(st.lists(codes, max_size=20))
def test_interned_codes_are_what_parse_returns(given_codes: list[AgencyCode]) -> None:
    interned = interned_codes(*_columns(given_codes))
    assert interned == given_codes
    for code, expected in zip(interned, given_codes, strict=True):
        assert AgencyCode.parse(str(code)) is code  # the identity a dict lookup short-cuts on
        assert hash(code) == hash(expected) and repr(code) == repr(expected) and code.short() == expected.short()


def test_interning_keeps_what_parse_already_returned() -> None:
    before = AgencyCode.parse("000.00.07.G22")
    (after,) = interned_codes("G", [22], [7], [0], [0])
    assert after is before


def test_codes_made_from_columns_set_every_field() -> None:
    """interned_codes sets the slots itself: a field added to AgencyCode must be added there too."""
    assert tuple(f.name for f in dataclasses.fields(AgencyCode)) == _CODE_SLOTS
    _PARSED.pop("996.97.98.H99", None)  # made here, whatever an earlier test parsed
    (code,) = interned_codes("H", [99], [98], [97], [996])
    assert code == AgencyCode("H", 99, 98, 97, 996) and str(code) == "996.97.98.H99"
    assert code._text == "996.97.98.H99"  # the canonical text comes made
