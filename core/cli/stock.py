"""The stock pool: show, set, import, history, push, reconcile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.cli.common import ConfigOption, ShopOption, console, err, in_runtime, load_config
from core.config import DEFAULT_CONFIG

app = typer.Typer(no_args_is_help=True, help="The stock pool.")


@app.command("show")
def stock_show(sku: str, config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Levels, reservations, and what each channel was last sent and when."""
    from core.stocktake import StockCommandError, show

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        try:
            view = await show(rt, sku)
        except StockCommandError as exc:
            err.print(f"[red]error[/red] {exc}")
            return 2
        console.print(f"[bold]{view.code}[/bold]: {view.available} available online")
        levels = Table("warehouse", "on hand", "reserved", "safety")
        for row in view.levels:
            levels.add_row(*(str(v) for v in row))
        console.print(levels)
        console.print(f"{len(view.reservations)} open reservations "
                      f"({sum(q for _, q, _ in view.reservations)} units)")
        channels = Table("shop", "item", "sku", "should show", "last sent", "sent at",
                         "platform showed", "outbox")
        for ch in view.channels:
            channels.add_row(ch["shop"], ch["item"], ch["sku"], str(ch["queued"]),
                             str(ch["last_sent"]), str(ch["sent_at"] or "-"),
                             str(ch["platform_seen"]), ch["outbox"])
        console.print(channels)
        return 0

    in_runtime(cfg, go)


@app.command("set")
def stock_set(sku: str, quantity: int,
              reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")],
              warehouse: Annotated[str, typer.Option()] = "MAIN",
              config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Set the counted on-hand quantity of a SKU in a warehouse."""
    from core.stocktake import StockCommandError, set_stock

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        try:
            queued = await set_stock(rt, sku, quantity, reason=reason, warehouse=warehouse)
        except StockCommandError as exc:
            err.print(f"[red]error[/red] {exc}")
            return 2
        console.print(f"{sku} in {warehouse}: {quantity} on hand, {queued} channel updates queued")
        return 0

    in_runtime(cfg, go)


@app.command("import")
def stock_import(file: Path, config: ConfigOption = DEFAULT_CONFIG,
                 skip_bad: Annotated[bool, typer.Option("--skip-bad",
                                                        help="Apply the good rows.")] = False) -> None:
    """A warehouse stocktake (CSV: sku,quantity[,warehouse]); all rows are checked first."""
    from core.stocktake import import_stocktake

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        report = await import_stocktake(rt, file, skip_bad=skip_bad)
        for problem in report.problems:
            err.print(f"[red]{file}[/red] {problem}", highlight=False)
        if report.problems and not skip_bad:
            err.print(f"nothing applied: {len(report.problems)} bad rows (use --skip-bad to "
                      "apply the others)")
            return 2
        console.print(f"{report.applied} rows applied, {report.queued} channel updates queued")
        return 0

    in_runtime(cfg, go)


@app.command("history")
def stock_history(sku: str, config: ConfigOption = DEFAULT_CONFIG,
                  limit: Annotated[int, typer.Option()] = 50) -> None:
    """The ledger of a SKU, newest first."""
    from core.stocktake import StockCommandError, history, movements_table

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        try:
            rows = await history(rt, sku, limit)
        except StockCommandError as exc:
            err.print(f"[red]error[/red] {exc}")
            return 2
        table = Table("at", "kind", "on hand", "reserved", "reason", "reference")
        for row in movements_table(rows):
            table.add_row(*row)
        console.print(table)
        return 0

    in_runtime(cfg, go)


@app.command("push")
def stock_push(config: ConfigOption = DEFAULT_CONFIG,
               dry_run: Annotated[bool, typer.Option("--dry-run")] = False) -> None:
    """Send queued stock quantities to the platforms."""
    from sqlalchemy import select

    from core.model import Listing, OutboxTask
    from core.senders import OutboxWorker

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        if dry_run:
            async with rt.sessions() as session:
                tasks = (await session.scalars(select(OutboxTask).where(
                    OutboxTask.kind == "stock",
                    OutboxTask.state.in_(["pending", "failed"])))).all()
                listings = {row.id: row for row in (await session.scalars(select(Listing).where(
                    Listing.id.in_([int(t.target) for t in tasks])))).all()}
            table = Table("shop", "item", "sku", "code", "quantity", "version", "state")
            for task in tasks:
                listing = listings[int(task.target)]
                table.add_row(rt.shop_name(task.shop_id), listing.platform_item_id,
                              listing.platform_sku_id, listing.merchant_code,
                              str(task.payload["quantity"]), str(task.version), task.state)
            console.print(table)
            return 0
        stats = await OutboxWorker(rt).drain(kinds=["stock"])
        console.print(f"sent {stats.sent}, retrying {stats.retried}, failed {stats.failed}")
        return 1 if stats.failed else 0

    in_runtime(cfg, go)


@app.command("reconcile")
def stock_reconcile(config: ConfigOption = DEFAULT_CONFIG, shop: ShopOption = None,
                    fix: Annotated[bool, typer.Option("--fix",
                                                      help="Queue corrections.")] = False) -> None:
    """Compare what each platform shows with what it should show."""
    from core.listings import pull_listings

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        table = Table("shop", "item", "sku", "code", "platform", "should be", "drift", "note")
        drifting = 0
        for item in rt.enabled_shops():
            if shop not in (None, item.name):
                continue
            stats = await pull_listings(rt, item.name, correct=fix)
            for d in stats.drift:
                drifting += 1
                table.add_row(item.name, d.item, d.sku, d.merchant_code,
                              str(d.platform_quantity), str(d.expected), f"{d.delta:+d}",
                              "push in flight" if d.in_flight else
                              ("correction queued" if fix else ""))
        console.print(table if drifting else "no drift: every platform shows what it should")
        return 0

    in_runtime(cfg, go)
