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
                         page_size: int, *, first: int = 1) -> AsyncIterator[T]:
    """Every entry of a time window whose list is sorted by modified time, read from the
    last page back to the first, then any pages the window grew by meanwhile.

    `fetch(page)` returns (total count, entries of that page). Why backwards: an order
    modified while we read leaves its place, and the orders after it move up one slot. Read
    forwards, the one sliding onto a page already read is lost; read backwards, it slides
    onto a page still to come. Orders that entered the window meanwhile sit after the old
    last page: the total seen on the first page tells how far to read on. Duplicates are
    possible (an order may be seen twice); misses are not."""
    total, entries = await fetch(first)
    pages = page_count(total, page_size)
    if pages == 1:
        for entry in entries:
            yield entry
        return
    grown = total
    for page in range(first + pages - 1, first - 1, -1):
        seen_total, entries = await fetch(page)
        for entry in entries:
            yield entry
        if page == first:
            grown = seen_total
    for page in range(first + pages, first + page_count(grown, page_size)):
        _, entries = await fetch(page)
        for entry in entries:
            yield entry
