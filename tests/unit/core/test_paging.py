"""Backward reading of a window: an order modified while the pages are read is never lost."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.clock import BEIJING
from core.paging import read_backwards, split_window


class Window:
    """A platform list of one time window, sorted by modified time. An order modified
    during the read leaves the window (its new time is past the window's end; the next
    window reads it) and the orders after it move up one place."""

    def __init__(self, count: int, size: int) -> None:
        self.ids = [f"o{i}" for i in range(count)]
        self.size = size
        self.calls: list[int] = []
        self.on_call: dict[int, str] = {}

    async def fetch(self, page: int) -> tuple[int, list[str]]:
        self.calls.append(page)
        if len(self.calls) in self.on_call:  # modified between two page reads
            self.ids.remove(self.on_call[len(self.calls)])
        start = (page - 1) * self.size
        return len(self.ids), self.ids[start:start + self.size]


async def test_every_entry_once_when_nothing_moves() -> None:
    window = Window(250, 100)
    seen = [x async for x in read_backwards(window.fetch, 100)]
    assert sorted(seen) == sorted(window.ids) and len(seen) == 250
    assert window.calls == [1, 3, 2, 1]


async def test_an_order_modified_mid_read_is_not_lost() -> None:
    window = Window(250, 100)
    window.on_call[3] = "o150"  # o150 leaves before page 2 is read: o200 slides to page 2
    seen = {x async for x in read_backwards(window.fetch, 100)}
    assert seen >= set(window.ids)  # every order still in the window was read


async def test_forward_reading_would_lose_it() -> None:
    """The reason for reading backwards, shown on the same window."""
    window = Window(250, 100)
    window.on_call[2] = "o50"  # o50 leaves after page 1 was read: o100 slides onto page 1
    seen = set()
    for page in (1, 2, 3):
        _, entries = await window.fetch(page)
        seen |= set(entries)
    assert "o100" not in seen


async def test_pages_that_grew_meanwhile_are_read() -> None:
    window = Window(200, 100)
    original = window.fetch

    async def growing(page: int) -> tuple[int, list[str]]:
        if page == 1 and window.calls:  # new orders arrived during the read
            window.ids += ["n1", "n2"]
        return await original(page)

    seen = {x async for x in read_backwards(growing, 100)}
    assert {"n1", "n2"} <= seen


async def test_zero_based_pages() -> None:
    window = Window(150, 100)

    async def zero_based(page: int) -> tuple[int, list[str]]:
        return await window.fetch(page + 1)

    seen = [x async for x in read_backwards(zero_based, 100, first=0)]
    assert sorted(seen) == sorted(window.ids)


async def test_a_probe_the_caller_read_is_not_asked_for_again() -> None:
    window = Window(250, 100)
    probe = await window.fetch(1)  # e.g. read to decide whether to halve the window
    seen = [x async for x in read_backwards(window.fetch, 100, probe=probe)]
    assert sorted(seen) == sorted(window.ids) and len(seen) == 250
    assert window.calls == [1, 3, 2, 1]


async def test_a_single_page_probe_is_the_whole_read() -> None:
    window = Window(40, 100)
    probe = await window.fetch(1)
    seen = [x async for x in read_backwards(window.fetch, 100, probe=probe)]
    assert seen == window.ids and window.calls == [1]


async def test_a_total_counted_in_pages() -> None:
    window = Window(200, 100)

    async def page_counts(page: int) -> tuple[int, list[str]]:
        if page == 1 and window.calls:  # new orders arrived during the read
            window.ids += ["n1"]
        total, entries = await window.fetch(page)
        return -(-total // window.size), entries

    seen = [x async for x in read_backwards(page_counts, 100, total_is_pages=True)]
    assert sorted(seen) == sorted(window.ids)
    assert window.calls == [1, 2, 1, 3]


async def test_no_pages_counted_is_one_page() -> None:
    async def empty(page: int) -> tuple[int, list[str]]:
        return 0, []

    assert [x async for x in read_backwards(empty, 100, total_is_pages=True)] == []


async def test_the_probe_can_be_yielded_too() -> None:
    """An order leaving after the first read of page 1 is then seen in this window, not
    only in the next one."""
    kept, dropped = Window(250, 100), Window(250, 100)
    for window in (kept, dropped):
        window.on_call[2] = "o0"  # leaves once page 1 was read for its total
    with_probe = [x async for x in read_backwards(kept.fetch, 100, yield_probe=True)]
    without = [x async for x in read_backwards(dropped.fetch, 100)]
    assert "o0" in with_probe and "o0" not in without
    assert kept.calls == dropped.calls == [1, 3, 2, 1]
    single = Window(40, 100)
    assert [x async for x in read_backwards(single.fetch, 100, yield_probe=True)] == single.ids


def test_split_window() -> None:
    start = datetime(2026, 11, 11, tzinfo=BEIJING)
    parts = list(split_window(start, start + timedelta(minutes=70), timedelta(minutes=30)))
    assert [(b - a).total_seconds() / 60 for a, b in parts] == [30, 30, 10]
