"""A second signal ends a draining daemon at once, and a restart still finishes the work.

The first SIGTERM stops new work and waits for the jobs in flight, up to
`daemon.shutdown_grace`; the second (SIGTERM or SIGINT) must not wait for them. For the first
shutdown to be still busy when the second signal comes, the grace here is long and every
platform call hangs: the sandboxes' timeout fault holds each answer past the client's timeout,
and the call is retried, so a job caught in one stays in flight for about a minute. Were the
second signal ignored, the daemon would go on draining and the test would time out waiting
for it (or see it exit 0 once the jobs gave up).

Exiting at once loses nothing: every order placed is in the database once after a restarted
daemon has run, with one reservation per line."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (  # type: ignore[import-not-found]
    SHOPS,
    free_port,
    place,
    post,
    sandbox_calls,
    seed_database,
    start_daemon,
    start_sandboxes,
    wait_for,
    wait_ready,
    write_config,
)
from sqlalchemy import func, select

from core.config import load
from core.db import create_engine, session_factory
from core.model import Order, OrderLine, Reservation, Shop

pytestmark = pytest.mark.slow
GRACE = timedelta(minutes=2)
CODES = ("TEE-001-M", "SOCK-004-BLK", "SOCK-004-WHT")  # plenty in stock for every order


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Whatever a test starts is killed when it ends, passed or not."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def with_long_grace(config: Path) -> Path:
    text, count = re.subn(r'shutdown_grace = "[^"]*"',
                          f'shutdown_grace = "{int(GRACE.total_seconds())}s"', config.read_text())
    assert count == 1, text
    config.write_text(text)
    assert load(config, check_env=False).daemon.shutdown_grace == GRACE
    return config


def hang_every_call(port: int, on: bool) -> None:
    for shop in SHOPS:
        assert post(f"http://127.0.0.1:{port}/{shop}/_sandbox/faults",
                    {"rates": {"timeout": 1.0} if on else {}}) == {"ok": True}


def hanging_calls(port: int) -> int:
    return sum(call["status"] == 504 for calls in sandbox_calls(port).values() for call in calls)


def readiness(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


def keep_output(process: subprocess.Popen[str]) -> list[str]:
    """Read the daemon's log as it comes, so a full pipe never blocks it."""
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def draining(port: int, daemon: subprocess.Popen[str], log: list[str]) -> bool:
    """Still running after the first signal, and saying it takes no new work."""
    if daemon.poll() is not None:
        raise AssertionError(f"the daemon exited ({daemon.returncode}) after one signal while "
                             f"its jobs were in flight:\n{''.join(log[-30:])}")
    answer = readiness(port)
    return answer is not None and answer[0] == 503 and answer[1]["scheduler"] == "stopped"


async def book(db_url: str) -> dict[str, Any]:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            orders = (await session.execute(select(Shop.name, Order.platform_order_id)
                                            .join(Shop, Shop.id == Order.shop_id))).all()
            return {
                "orders": [(shop, order_id) for shop, order_id in orders],
                "lines": await session.scalar(select(func.count()).select_from(OrderLine)),
                "reservations": await session.scalar(
                    select(func.count()).select_from(Reservation)),
                "reserved_lines": await session.scalar(
                    select(func.count(func.distinct(Reservation.order_line_id)))),
            }
    finally:
        await engine.dispose()


def finished(db_url: str, placed: list[tuple[str, str]]) -> bool:
    counts = asyncio.run(book(db_url))
    return len(counts["orders"]) >= len(placed) and counts["reservations"] == counts["lines"]


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_while_draining_exits_at_once_and_a_restart_loses_nothing(
        tmp_path: Path, db_url: str, second: signal.Signals,
        processes: list[subprocess.Popen[str]]) -> None:
    sandbox_port, http_port = free_port(), free_port()
    config = with_long_grace(write_config(tmp_path, db_url, sandbox_port, http_port))
    processes.append(start_sandboxes(config, sandbox_port))
    seed_database(config)
    rng = random.Random(5)
    placed = place(sandbox_port, rng, codes=CODES, count=8)
    daemon = start_daemon(config)
    processes.append(daemon)
    log = keep_output(daemon)
    wait_ready(http_port, daemon)
    placed += place(sandbox_port, rng, codes=CODES, count=8)

    # every platform call now hangs: wait until the daemon's jobs are caught in one
    hang_every_call(sandbox_port, on=True)
    wait_for(lambda: hanging_calls(sandbox_port) > 0, "a platform call in flight")
    first = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    wait_for(lambda: draining(http_port, daemon, log), "the daemon draining", 30)
    placed += place(sandbox_port, rng, codes=CODES, count=4)  # buyers do not wait for us

    signalled = time.monotonic()
    daemon.send_signal(second)
    try:
        code = daemon.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the daemon went on draining after a second {second.name}:\n"
                             + "".join(log[-30:])) from None
    took, drained = time.monotonic() - signalled, time.monotonic() - first
    assert code != 0, "".join(log[-30:])
    assert took < 10, took
    assert drained < GRACE.total_seconds() / 4, drained

    # a restarted daemon, with the platforms answering again, finishes what was left
    hang_every_call(sandbox_port, on=False)
    restarted = start_daemon(config)
    processes.append(restarted)
    restarted_log = keep_output(restarted)
    wait_ready(http_port, restarted)
    placed += place(sandbox_port, rng, codes=CODES, count=4)
    wait_for(lambda: finished(db_url, placed), "every order in the database", 90)
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=60) == 0, "".join(restarted_log[-30:])

    counts = asyncio.run(book(db_url))
    assert len(placed) >= 10
    assert sorted(counts["orders"]) == sorted(placed)  # every order, once
    assert counts["lines"] == len(placed)  # one line each
    assert counts["reservations"] == counts["reserved_lines"] == counts["lines"]
