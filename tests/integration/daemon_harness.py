"""Real processes for daemon tests: a sandbox server, daemons, and the checks that compare
the database with the sandboxes. Polling here waits for another process to reach a state;
no time-dependent logic is waited out."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHOPS = ("tb-a", "tb-b", "dy-c")
PLATFORMS = {"tb-a": "taobao", "tb-b": "taobao", "dy-c": "douyin"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(folder: Path, db_url: str, sandbox_port: int, http_port: int,
                 node: str = "") -> Path:
    shutil.copy(ROOT / "config" / "rules.toml", folder / "rules.toml")
    text = [f'rules = "rules.toml"\nsecrets = "secrets.json"\n[database]\nurl = "{db_url}"\n'
            f'[daemon]\nlisten = "127.0.0.1:{http_port}"\nlease = "5s"\nshutdown_grace = "5s"\n'
            + (f'node_name = "{node}"\n' if node else "")]
    for shop in SHOPS:
        text.append(f'[[shops]]\nname = "{shop}"\nplatform = "{PLATFORMS[shop]}"\nsandbox = true\n'
                    f'base_url = "http://127.0.0.1:{sandbox_port}/{shop}"\n'
                    # sandboxes commit at once: orders are pulled a second after they arrive
                    'modified_lag = "1s"\n'
                    'intervals = { orders = "1s", outbox = "1s", reconcile = "1h" }\n')
    path = folder / (f"erpsync-{node}.toml" if node else "erpsync.toml")
    path.write_text("\n".join(text))
    return path


def start_sandboxes(config: Path, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "sandbox", "serve", "-c", str(config), "--port",
         str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/{SHOPS[0]}/_sandbox/state") is not None,
             "sandbox server")
    return process


def start_daemon(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "core.cli", "--json-logs", "run", "-c",
                             str(config)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_ready(port: int, process: subprocess.Popen[str]) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited: {process.stdout.read() if process.stdout else ''}")
        return _get(f"http://127.0.0.1:{port}/healthz") is not None
    wait_for(ready, "daemon")


def wait_for(check: Any, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready within {limit} s")


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def post(url: str, payload: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def place(port: int, rng: Any, count: int,
          codes: tuple[str, ...] = ("TEE-001-M", "MUG-002", "SOCK-004-BLK", "SOCK-004-WHT"),
          ) -> list[tuple[str, str]]:
    """Buyers order one unit each through the sandboxes' operator API: (shop, platform order
    id). A shop refuses what it does not list (sold out there)."""
    placed = []
    for _ in range(count):
        shop = rng.choice(SHOPS)
        answer = post(f"http://127.0.0.1:{port}/{shop}/_sandbox/orders",
                      {"lines": [[rng.choice(codes), 1]]})
        if "order_id" in answer:
            placed.append((shop, str(answer["order_id"])))
        else:
            assert answer["error"].startswith("SoldOut"), answer
    return placed


def sandbox_state(port: int) -> dict[str, Any]:
    return {shop: _get(f"http://127.0.0.1:{port}/{shop}/_sandbox/state") for shop in SHOPS}


def seed_database(config: Path) -> None:
    """Migrate and load the demo catalogue and opening stock (what an operator imports)."""
    from core.config import load
    from core.db import upgrade
    from core.demo import seed_catalogue
    from core.runtime import Runtime

    async def go() -> None:
        cfg = load(config, check_env=False)
        rt = Runtime(cfg)
        try:
            await upgrade(rt.engine, cfg.database_url)
            await rt.sync_shops()
            await seed_catalogue(rt)
        finally:
            await rt.close()

    asyncio.run(go())


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM,
         timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.stdout:
            process.stdout.close()


def sandbox_calls(port: int) -> dict[str, list[dict[str, Any]]]:
    """Every API call each shop's sandbox answered, with the node and work it was made for."""
    return {shop: _get(f"http://127.0.0.1:{port}/{shop}/_sandbox/calls") for shop in SHOPS}


def sent_twice(calls: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """Outbox task versions that went out in more than one send (`node outbox#n id@v,...`;
    one send may take several calls, a version must appear in one send only)."""
    sends: dict[str, set[str]] = {}
    for shop_calls in calls.values():
        for call in shop_calls:
            node, _, work = call["work"].partition(" ")
            kind, _, items = work.partition(" ")
            if not kind.startswith("outbox#"):
                continue
            for item in items.split(","):
                sends.setdefault(item, set()).add(f"{node} {kind}")
    return {item: where for item, where in sends.items() if len(where) > 1}


def concurrent_pulls(calls: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Pull windows of one shop read by two nodes at overlapping times."""
    found = []
    for shop, shop_calls in calls.items():
        spans: dict[tuple[str, str], list[str]] = {}
        for call in shop_calls:
            node, _, work = call["work"].partition(" ")
            if work.startswith("pull "):
                span = spans.setdefault((node, work), [call["at"], call["at"]])
                span[0], span[1] = min(span[0], call["at"]), max(span[1], call["at"])
        ordered = sorted(spans.items(), key=lambda entry: entry[1][0])
        for i, ((node_a, window_a), (start_a, end_a)) in enumerate(ordered):
            for (node_b, window_b), (start_b, _end_b) in ordered[i + 1:]:
                if start_b > end_a:
                    break
                if node_b != node_a:
                    found.append(f"{shop}: {node_a} {window_a} [{start_a}..{end_a}] and "
                                 f"{node_b} {window_b} from {start_b}")
    return found


def ship_some(config: Path, count: int, first_waybill: int) -> list[tuple[str, str, str]]:
    """What the warehouse does while the daemon runs: ship up to `count` orders that wait,
    through the same path as `erpsync ship --queue-only`. Returns (shop, order, waybill)."""
    from sqlalchemy import select

    from core.config import load
    from core.db import transaction
    from core.logistics import SHIPPABLE, ShippingError, ship
    from core.model import Order
    from core.runtime import Runtime

    async def go() -> list[tuple[str, str, str]]:
        rt = Runtime(load(config, check_env=False))
        shipped: list[tuple[str, str, str]] = []
        try:
            await rt.sync_shops()
            async with rt.sessions() as session:
                waiting = (await session.execute(
                    select(Order.id, Order.shop_id, Order.platform_order_id)
                    .where(Order.status.in_([str(s) for s in SHIPPABLE]),
                           Order.backorder.is_(False)).order_by(Order.id))).all()
            for order_id, shop_id, platform_order_id in waiting[:count]:
                waybill = f"75{first_waybill + len(shipped):012d}"
                shop = rt.shop_name(shop_id)
                try:
                    async with transaction(rt.sessions) as session:
                        await ship(session, order_id=order_id, carrier="ZTO",
                                   tracking_number=waybill,
                                   carriers=rt.connector(shop).carrier_table(), pool=rt.pool,
                                   publisher=rt.publisher, now=rt.now())
                except ShippingError:
                    continue
                shipped.append((shop, platform_order_id, waybill))
        finally:
            await rt.close()
        return shipped

    return asyncio.run(go())
