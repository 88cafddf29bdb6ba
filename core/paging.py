"""Time windows and paging shapes shared by connectors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

T = TypeVar("T")


def split_window(start: datetime, end: datetime, max_window: timedelta) -> Iterator[
        tuple[datetime, datetime]]:
    """Cut [start, end) into consecutive windows no longer than the platform allows."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("windows need timezone-aware bounds")
    cursor = start
    while cursor < end:
        stop = min(cursor + max_window, end)
        yield cursor, stop
        cursor = stop


def page_count(total: int, page_size: int) -> int:
    return max(1, -(-total // page_size))


async def read_backwards(fetch: Callable[[int], Awaitable[tuple[int, Sequence[T]]]],
                         page_size: int, *, first: int = 1,
                         probe: tuple[int, Sequence[T]] | None = None,
                         total_is_pages: bool = False,
                         yield_probe: bool = False) -> AsyncIterator[T]:
    """Every entry of a time window whose list is sorted by modified time, read from the
    last page back to the first, then any pages the window grew by meanwhile.

    `fetch(page)` returns (total count, entries of that page). Why backwards: an order
    modified while we read leaves its place, and the orders after it move up one slot. Read
    forwards, the one sliding onto a page already read is lost; read backwards, it slides
    onto a page still to come. Orders that entered the window meanwhile sit after the old
    last page: the total seen on the first page tells how far to read on. Duplicates are
    possible (an order may be seen twice); misses are not.

    Platforms differ in the details, not in the walk: `first` is the number of the first
    page (0 or 1); `total_is_pages` when the platform counts pages, not entries; `probe` is
    fetch(first)'s answer when the caller has read it already (to decide whether the window
    must be split), so it is not asked for again; `yield_probe` yields that first read of
    the first page too, not only its re-read at the end, so an order that leaves the window
    meanwhile is also seen in this window, not only in the next."""
    total, entries = probe if probe is not None else await fetch(first)

    def pages_of(count: int) -> int:
        return max(1, count) if total_is_pages else page_count(count, page_size)

    pages = pages_of(total)
    if pages == 1 or yield_probe:
        for entry in entries:
            yield entry
        if pages == 1:
            return
    grown = total
    for page in range(first + pages - 1, first - 1, -1):
        seen_total, entries = await fetch(page)
        for entry in entries:
            yield entry
        if page == first:
            grown = seen_total
    for page in range(first + pages, first + pages_of(grown)):
        _, entries = await fetch(page)
        for entry in entries:
            yield entry
