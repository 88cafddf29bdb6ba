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


def test_split_window() -> None:
    start = datetime(2026, 11, 11, tzinfo=BEIJING)
    parts = list(split_window(start, start + timedelta(minutes=70), timedelta(minutes=30)))
    assert [(b - a).total_seconds() / 60 for a, b in parts] == [30, 30, 10]
