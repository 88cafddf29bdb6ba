"""One `pull_orders` run in its own process, for the crash test (test_pull_crash.py).

    python pull_crash_worker.py CONFIG SHOP BASE_URL NOW_ISO NODE

The shop is served by a Douyin sandbox at BASE_URL (built with default credentials, as this
side's copy is). With ERPSYNC_TEST_PAUSE=inside:N the run stops inside the transaction of
batch N+1 — its orders ingested, not committed — with ERPSYNC_TEST_PAUSE=after:N right
after batch N committed; either way it prints "paused" and waits to be killed. Without
it, the pull runs to the end and prints its stats as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.douyin.sandbox import DouyinSandbox
from core import logs
from core.clock import ManualClock
from core.config import load
from core.pull import pull_orders
from core.runtime import Runtime, SandboxBinding


async def main(config_file: str, shop: str, base_url: str, now: str, node: str) -> None:
    logs.configure(json=True, level=logging.WARNING)  # stdout carries only our lines
    config = load(Path(config_file), check_env=False)
    clock = ManualClock(datetime.fromisoformat(now))
    rt = Runtime(config, clock=clock, node=node,
                 sandboxes={shop: SandboxBinding(DouyinSandbox(clock=clock), base_url)})
    rt.http.rate_limits = False
    await rt.sync_shops()
    where, _, count = os.environ.get("ERPSYNC_TEST_PAUSE", "").partition(":")
    pause_at = int(count) if count else None
    ingests = 0
    ingest = rt.book.ingest

    async def pausing_ingest(*args: Any, **kwargs: Any) -> Any:
        nonlocal ingests
        result = await ingest(*args, **kwargs)
        ingests += 1
        if where == "inside" and ingests == (pause_at or 0) + 1:
            await wait_for_the_kill()
        return result

    def on_batch(_: int) -> None:
        if where == "after" and ingests == pause_at:
            print("paused", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)  # frozen right after the commit

    rt.book.ingest = pausing_ingest  # type: ignore[method-assign]
    try:
        stats = await pull_orders(rt, shop, on_batch=on_batch)
    finally:
        await rt.close()
    print(json.dumps({"new": stats.new, "seen": stats.orders_seen, "windows": stats.windows,
                      "skipped_locked": stats.skipped_locked}), flush=True)


async def wait_for_the_kill() -> None:
    print("paused", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
