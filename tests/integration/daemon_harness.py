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
