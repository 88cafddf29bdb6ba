"""The sale-day simulator: `erpsync simulate [options]` (core.simulate runs it,
core.simulate_report reports it)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=False, help="A seeded sale day against every sandbox.")


@app.callback(invoke_without_command=True)
def simulate(
    seed: int = typer.Option(11, help="Same seed, same day: orders, faults, journeys."),
    shops: int = typer.Option(9, help="Shops, spread round-robin over the 9 platforms."),
    skus: int = typer.Option(100, help="SKUs in the catalogue, each listed in every shop."),
    orders: int = typer.Option(0, help="Buyer carts in the day (0: 40 per shop)."),
    hours: float = typer.Option(24.0, help="Simulated hours during which orders arrive "
                                           "(from 23:30 on 11-10)."),
    tail_hours: float = typer.Option(48.0, "--tail-hours",
                                     help="Simulated hours after that: parcels travel, "
                                          "alerts come due."),
    tick: float = typer.Option(60.0, help="Simulated seconds per step while orders arrive."),
    tail_tick: float = typer.Option(1800.0, "--tail-tick", help="... and in the tail."),
    mode: str = typer.Option("both", help="shared, strict, or both (one run each)."),
    faults: list[str] | None = typer.Option(  # noqa: B008 (typer reads defaults this way)
        None, help="Fault mix: none, api, push, heavy, or name=rate,... Repeat for "
                        "several mixes (each runs in every mode). Default: heavy."),
    database: str | None = typer.Option(None, help="sqlite:///path or postgresql://… (a fresh "
                                            "database per run). Default: a temp SQLite file."),
    out: Path = typer.Option(  # noqa: B008 (typer reads defaults this way)
        "simulate-report", help="Folder for report.json and report.html."),
) -> None:
    """Run a Double-11 day against every sandbox platform with the daemon's own jobs, and
    report the figures (terminal table, report.json, report.html)."""
    from core.simulate import FaultMix, RunFigures, SimulationSpec, run_all
    from core.simulate_report import table, write_html, write_json

    if mode not in ("shared", "strict", "both"):
        raise typer.BadParameter("shared, strict or both", param_hint="--mode")
    try:
        mixes = [FaultMix.parse(text) for text in faults or ["heavy"]]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from None
    modes = ["shared", "strict"] if mode == "both" else [mode]
    specs = [SimulationSpec(seed=seed, shops=shops, skus=skus, orders=orders or None,
                            hours=hours, tail_hours=tail_hours, tick=tick, tail_tick=tail_tick,
                            mode=m, faults=mix, database_url=database)
             for mix in mixes for m in modes]
    out.mkdir(parents=True, exist_ok=True)

    def progress(run: RunFigures) -> None:
        typer.echo(f"finished {run.mode}/{run.faults} in "
                   f"{run.wall_seconds:.0f} s", err=True)

    results = run_all(specs, out / "work", on_run=progress)
    typer.echo(table(results))
    write_json(results, out / "report.json")
    write_html(results, out / "report.html")
    typer.echo(f"\nreport: {out / 'report.json'}, {out / 'report.html'}")
