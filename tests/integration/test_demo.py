"""`erpsync demo --once` on a fresh machine: sandbox shops over real HTTP, SQLite, a summary
table; a second run over the same sandbox data ingests no order twice."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_demo(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "core.cli", "demo", "--once", "--config",
                           str(config)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def figure(output: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\s*│\s*(\d+)", output)
    assert match, (label, output)
    return int(match.group(1))


def test_demo_twice_ingests_each_order_once(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    first = run_demo(config_dir / "demo.toml")
    assert figure(first, "orders ingested (new)") > 0
    assert figure(first, "stock pushes") > 0
    assert figure(first, "tracking pushes") > 0
    assert (tmp_path / "var" / "demo.db").exists()
    second = run_demo(config_dir / "demo.toml")
    assert figure(second, "orders ingested (new)") == 0
    assert figure(second, "orders updated") == figure(first, "orders ingested (new)")
