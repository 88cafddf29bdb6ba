"""Orders: pulls."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any

import typer

from core.cli.common import (
    ConfigOption,
    ShopOption,
    console,
    err,
    in_runtime,
    load_config,
    parse_when,
)
from core.config import DEFAULT_CONFIG

app = typer.Typer(no_args_is_help=True, help="Orders.")


def _advance(progress: Any, task: Any, _start: datetime, _end: datetime, count: int) -> None:
    progress.advance(task, count)


@app.command("pull")
def orders_pull(
    config: ConfigOption = DEFAULT_CONFIG,
    shop: ShopOption = None,
    since: Annotated[str | None, typer.Option(help="Start (ISO time, Beijing if no zone).")] = None,
    until: Annotated[str | None, typer.Option(help="End (ISO time).")] = None,
) -> None:
    """Pull orders incrementally (from each shop's cursor, or --since)."""
    from rich.progress import Progress

    from core.pull import pull_orders

    cfg = load_config(config)
    start, end = parse_when(since), parse_when(until)

    async def go(rt: Any) -> int:
        failures = 0
        shops = [s.name for s in rt.enabled_shops() if shop in (None, s.name)]
        with Progress(console=err) as progress:
            for name in shops:
                task = progress.add_task(name, total=None)
                try:
                    stats = await pull_orders(rt, name, since=start, until=end,
                                              on_window=partial(_advance, progress, task))
                except Exception as exc:
                    failures += 1
                    err.print(f"[red]{name}[/red]: {type(exc).__name__}: {exc}")
                    continue
                progress.update(task, total=stats.orders_seen, completed=stats.orders_seen)
                console.print(f"{name}: {stats.orders_seen} seen, {stats.new} new, "
                              f"{stats.updated} updated, {stats.backordered} backordered"
                              + (" (another node holds the pull lease)" if stats.skipped_locked
                                 else ""))
        return 1 if failures else 0

    in_runtime(cfg, go)
