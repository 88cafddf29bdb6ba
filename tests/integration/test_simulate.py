"""The sale-day simulator, tiny: three shops, 20 SKUs, a simulated hour over midnight, strict
mode with faults. It runs the daemon's own jobs over loopback HTTP, replays identically from
its seed, oversells nothing in strict mode and writes its report files. Goals on figures
(latency, memory) are reported by the simulator, never asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.simulate import FaultMix, RunFigures, SimulationSpec, run_all
from core.simulate_report import goals, write_html, write_json

TINY = dict(shops=3, skus=20, orders=60, hours=1.0, tail_hours=0.0, tick=60.0,
            mode="strict", faults=FaultMix.parse("heavy"))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> list[RunFigures]:
    folder = tmp_path_factory.mktemp("simulate")
    return run_all([SimulationSpec(seed=7, **TINY), SimulationSpec(seed=7, **TINY)],  # type: ignore[arg-type]
                   folder)


def test_strict_mode_oversells_nothing_without_faults(tmp_path: Path) -> None:
    run = run_all([SimulationSpec(seed=7, **{**TINY, "faults": FaultMix("none")})],  # type: ignore[arg-type]
                  tmp_path)[0]
    assert run.orders_ingested > 0
    assert run.oversold_units == 0
    assert run.ledger_problems == 0


@pytest.mark.xfail(strict=True, reason=(
    "engine bug found by the simulator: an absolute stock push computed before the "
    "platform's own latest sales were pulled overwrites them (pinduoduo-02, D11-00010: "
    "'quantity 5' lands at 00:06:16 after 4 units sold there since the last pull), so the "
    "platforms together list more than the pool in strict mode; faults widen the window"))
def test_strict_mode_oversells_nothing_under_faults(tiny_runs: list[RunFigures]) -> None:
    run = tiny_runs[0]
    assert run.orders_ingested > 0
    assert sum(run.fault_rates.values()) > 0
    assert run.ledger_problems == 0
    assert run.oversold_units == 0


def test_the_same_seed_replays_the_same_day(tiny_runs: list[RunFigures]) -> None:
    first, second = tiny_runs
    assert first.orders_placed == second.orders_placed
    assert first.orders_ingested == second.orders_ingested
    assert first.orders_refused_sold_out == second.orders_refused_sold_out
    assert first.oversold_units == second.oversold_units


def test_report_files_carry_the_figures(tiny_runs: list[RunFigures], tmp_path: Path) -> None:
    write_json(tiny_runs[:1], tmp_path / "report.json")
    write_html(tiny_runs[:1], tmp_path / "report.html")
    data = json.loads((tmp_path / "report.json").read_text())
    run = data["runs"][0]
    assert run["orders_ingested"] == tiny_runs[0].orders_ingested
    assert run["oversold_units"] == tiny_runs[0].oversold_units
    assert {"name", "verdict", "figure"} <= set(run["goals"][0])
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "oversold" in page.lower()
    assert f"{tiny_runs[0].orders_ingested}" in page
    verdicts = {g.verdict for g in goals(tiny_runs[0])}
    assert verdicts <= {"PASS", "FAIL", "N/A"}


def test_the_command_writes_its_report(tmp_path: Path) -> None:
    from core.cli import app

    result = CliRunner().invoke(app, [
        "simulate", "--shops", "2", "--skus", "8", "--orders", "20", "--hours", "0.5",
        "--tail-hours", "0", "--mode", "strict", "--faults", "none", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "orders ingested" in result.output
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.html").exists()


def test_a_fault_mix_names_what_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        FaultMix.parse("rate_limit=0.1,lightning=0.5")
    assert FaultMix.parse("rate_limit=0.1,duplicate=0.2").describe() == {
        "rate_limit": 0.1, "duplicate": 0.2}
