"""Time: one settable clock for everything time-dependent, and Beijing-time helpers.

Platform timestamps are usually Beijing time (UTC+8, no daylight saving), so a fixed offset
is exact and needs no tz database.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when told to; `sleep` advances it instead of waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 11, 0, 0, tzinfo=BEIJING)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._mono = 0.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, delta: timedelta | float) -> None:
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock.set needs a timezone-aware datetime")
        self._mono += (moment - self._now).total_seconds()
        self._now = moment

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


def beijing(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: platform times must carry a timezone")
    return moment.astimezone(BEIJING)


def parse_beijing(text: str) -> datetime:
    """Parse `yyyy-MM-dd HH:mm:ss` (the common Chinese platform format) as Beijing time."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)


def format_beijing(moment: datetime) -> str:
    return beijing(moment).strftime("%Y-%m-%d %H:%M:%S")


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
