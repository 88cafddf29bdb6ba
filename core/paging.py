"""Time windows and paging shapes shared by connectors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta


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
