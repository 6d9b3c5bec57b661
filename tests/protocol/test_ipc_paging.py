"""Paging by time (``edxml.statuses``): a client that asks again with ``since`` = the last time it got misses nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.ipc import page_by_time


def read_all(times: list[int], limit: int) -> list[tuple[int, int]]:
    """What a client looping on ``since`` collects from items (time, index), sorted by time as the node sorts them."""
    items = sorted((t, i) for i, t in enumerate(times))
    got: list[tuple[int, int]] = []
    since = -1
    while True:
        page, more = page_by_time([x for x in items if x[0] > since], limit, lambda x: x[0])
        assert page or not more
        got += page
        if not more:
            return got
        since = page[-1][0]


@given(st.lists(st.integers(0, 6), max_size=40), st.integers(1, 5))
def test_looping_on_since_reads_every_item_once_in_order(times: list[int], limit: int) -> None:
    assert read_all(times, limit) == sorted((t, i) for i, t in enumerate(times))


def test_a_page_stops_before_a_run_of_equal_times_or_holds_the_whole_run() -> None:
    at = lambda x: x  # noqa: E731
    assert page_by_time([1, 2, 2, 2, 3], 2, at) == ([1], True)
    assert page_by_time([2, 2, 2, 3], 2, at) == ([2, 2, 2], True)
    assert page_by_time([1, 2], 2, at) == ([1, 2], False)
    assert page_by_time([], 3, at) == ([], False)
