"""The demo."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from core.cli.common import ConfigOption, console, load_config, run
from core.config import DEFAULT_CONFIG


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(config: ConfigOption = DEFAULT_CONFIG,
         once: Annotated[bool, typer.Option("--once", help="One full cycle, then exit.")] = False,
         seed: Annotated[int, typer.Option(help="Seed of the sandbox data.")] = 11) -> None:
    """Sandbox shops on 127.0.0.1, a seeded catalogue and orders, the real sync on SQLite."""
    from core.demo import DemoSummary, run_demo

    cfg = load_config(config, sections=True)

    def show(summary: DemoSummary) -> None:
        table = Table("erpsync demo", "count", title="demo cycle summary")
        for name, value in summary.rows():
            table.add_row(name, value)
        console.print(table)

    try:
        summary = run(run_demo(cfg, once=once, seed=seed, on_cycle=show))
    except KeyboardInterrupt:
        return
    show(summary)
