"""The `erpsync` command line. Every command runs one event loop; exit codes: 0 ok,
1 something failed, 2 bad usage or configuration."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from core import logs
from core.config import DEFAULT_CONFIG, Config, ConfigProblems, load

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="erpsync: many shops, one stock pool, one order book.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration.")
connectors_app = typer.Typer(no_args_is_help=True, help="Installed platform connectors.")
orders_app = typer.Typer(no_args_is_help=True, help="Orders.")
stock_app = typer.Typer(no_args_is_help=True, help="The stock pool.")
listings_app = typer.Typer(no_args_is_help=True, help="Platform listings.")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(connectors_app, name="connectors")
app.add_typer(orders_app, name="orders")
app.add_typer(stock_app, name="stock")
app.add_typer(listings_app, name="listings")

console = Console()
err = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="TOML config file.")]


def _config_path(path: Path) -> Path:
    """The default config is looked up in the working directory, then in the checkout."""
    if path == DEFAULT_CONFIG and not path.exists():
        beside = Path(__file__).resolve().parent.parent / DEFAULT_CONFIG
        if beside.exists():
            return beside
    return path


def _load(path: Path, *, check_env: bool = True) -> Config:
    from core.plugins import Registry

    try:
        return load(_config_path(path), known_platforms=Registry.discover().platforms,
                    check_env=check_env)
    except ConfigProblems as problems:
        for problem in problems.problems:
            err.print(f"[red]error[/red] {problem}")
        raise typer.Exit(2) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _with_runtime(config: Config, body: Callable[[Any], Awaitable[T]]) -> T:
    from core.db import OutOfDate, require_current
    from core.runtime import Runtime

    rt = Runtime(config)
    try:
        try:
            await require_current(rt.engine)
        except OutOfDate as exc:
            err.print(f"[red]error[/red] {exc}")
            raise typer.Exit(2) from None
        await rt.sync_shops()
        return await body(rt)
    finally:
        await rt.close()


@app.callback()
def main_options(
    json_logs: Annotated[bool | None, typer.Option("--json-logs/--console-logs",
                                                   help="Log format (default: by TTY).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    import logging

    logs.configure(json=json_logs, level=logging.DEBUG if verbose else logging.WARNING)


# -- db ----------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Apply pending migrations."""
    from core.db import create_engine, current_revision, head_revision, upgrade

    cfg = _load(config, check_env=False)

    async def go() -> tuple[str | None, str]:
        engine = create_engine(cfg.database_url)
        try:
            before = await current_revision(engine)
            await upgrade(engine, cfg.database_url)
            return before, head_revision()
        finally:
            await engine.dispose()

    before, after = _run(go())
    console.print(f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})"))


# -- config ------------------------------------------------------------------------------------
@config_app.command("check")
def config_check(path: Annotated[Path, typer.Argument()] = DEFAULT_CONFIG) -> None:
    """Report every problem in a config file, one line each."""
    cfg = _load(path)
    console.print(f"[green]ok[/green] {cfg.path}: {len(cfg.shops)} shops, database "
                  f"{cfg.database_url.split('@')[-1]}")


# -- connectors --------------------------------------------------------------------------------
@connectors_app.command("list")
def connectors_list() -> None:
    """Installed connectors, their capabilities and where they came from."""
    from core.plugins import Registry

    registry = Registry.discover()
    table = Table("name", "version", "capabilities", "from")
    for name, found in sorted(registry.plugins.items()):
        caps = ", ".join(sorted(c.value for c in found.plugin.capabilities))
        table.add_row(name, found.version, caps, found.origin)
    console.print(table)
    for broken in registry.broken:
        err.print(f"[red]broken plugin[/red] {broken.name} ({broken.origin}): {broken.error}")


# -- orders ------------------------------------------------------------------------------------
def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    from core.clock import BEIJING

    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)


def _advance(progress: Any, task: Any, _start: datetime, _end: datetime, count: int) -> None:
    progress.advance(task, count)


@orders_app.command("pull")
def orders_pull(
    config: ConfigOption = DEFAULT_CONFIG,
    shop: Annotated[str | None, typer.Option(help="Only this shop.")] = None,
    since: Annotated[str | None, typer.Option(help="Start (ISO time, Beijing if no zone).")] = None,
    until: Annotated[str | None, typer.Option(help="End (ISO time).")] = None,
) -> None:
    """Pull orders incrementally (from each shop's cursor, or --since)."""
    from rich.progress import Progress

    from core.pull import pull_orders

    cfg = _load(config)

    async def go(rt: Any) -> int:
        failures = 0
        shops = [s.name for s in rt.enabled_shops() if shop in (None, s.name)]
        with Progress(console=err) as progress:
            for name in shops:
                task = progress.add_task(name, total=None)
                try:
                    stats = await pull_orders(
                        rt, name, since=_when(since), until=_when(until),
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
        return failures

    if _run(_with_runtime(cfg, go)):
        raise typer.Exit(1)


# -- stock -------------------------------------------------------------------------------------
@stock_app.command("push")
def stock_push(config: ConfigOption = DEFAULT_CONFIG,
               dry_run: Annotated[bool, typer.Option("--dry-run")] = False) -> None:
    """Send queued stock quantities to the platforms."""
    from sqlalchemy import select

    from core.model import Listing, OutboxTask
    from core.senders import OutboxWorker

    cfg = _load(config)

    async def go(rt: Any) -> int:
        if dry_run:
            async with rt.sessions() as session:
                rows = (await session.execute(
                    select(OutboxTask, Listing).join(Listing, Listing.id == OutboxTask.target.cast(
                        Listing.id.type)).where(OutboxTask.kind == "stock",
                                                OutboxTask.state.in_(["pending", "failed"])))).all()
            table = Table("shop", "item", "sku", "code", "quantity", "version", "state")
            for task, listing in rows:
                table.add_row(rt.shop_name(task.shop_id), listing.platform_item_id,
                              listing.platform_sku_id, listing.merchant_code,
                              str(task.payload["quantity"]), str(task.version), task.state)
            console.print(table)
            return 0
        stats = await OutboxWorker(rt).drain(kinds=["stock"])
        console.print(f"sent {stats.sent}, retrying {stats.retried}, failed {stats.failed}")
        return stats.failed

    if _run(_with_runtime(cfg, go)):
        raise typer.Exit(1)


# -- ship --------------------------------------------------------------------------------------
@app.command("ship")
def ship_command(
    order: Annotated[str, typer.Argument(help="Platform order id (or shop:order id).")],
    carrier: Annotated[str, typer.Option(help="Canonical carrier code, e.g. ZTO.")],
    tracking: Annotated[str, typer.Option(help="Waybill number.")],
    lines: Annotated[str | None, typer.Option(help="Comma list of platform line ids.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    push: Annotated[bool, typer.Option("--push/--queue-only",
                                       help="Send the tracking number now.")] = True,
) -> None:
    """Ship an order and push the tracking number to its platform."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from core.db import transaction
    from core.errors import UnmappedCarrier
    from core.logistics import ShippingError, ship
    from core.model import Order, Shipment
    from core.senders import OutboxWorker

    cfg = _load(config)

    async def go(rt: Any) -> int:
        shop_name, _, order_id = order.rpartition(":")
        async with rt.sessions() as session:
            query = select(Order).where(Order.platform_order_id == order_id).options(
                selectinload(Order.lines))
            if shop_name:
                query = query.where(Order.shop_id == rt.shop_ids[shop_name])
            found = list((await session.scalars(query)).all())
        if len(found) != 1:
            err.print(f"[red]error[/red] {len(found)} orders match {order!r}")
            return 2
        target = found[0]
        wanted = [x.strip() for x in lines.split(",")] if lines else []
        line_ids = [line.id for line in target.lines if line.platform_line_id in wanted]
        if len(line_ids) != len(wanted):
            err.print(f"[red]error[/red] unknown line ids in {lines!r}")
            return 2
        shop = rt.shop_name(target.shop_id)
        try:
            async with transaction(rt.sessions) as session:
                shipment = await ship(session, order_id=target.id, carrier=carrier,
                                      tracking_number=tracking, line_ids=line_ids,
                                      carriers=rt.connector(shop).carrier_table(),
                                      pool=rt.pool, publisher=rt.publisher, now=rt.now())
        except (ShippingError, UnmappedCarrier) as exc:
            err.print(f"[red]error[/red] {exc}")
            return 2
        if push:
            await OutboxWorker(rt).drain(shops=[shop], kinds=["ship"])
        async with rt.sessions() as session:
            state = await session.scalar(select(Shipment.push_state).where(
                Shipment.id == shipment.id))
        console.print(f"shipped {order} with {carrier} {tracking}: push {state}")
        return 0 if state != "failed" else 1

    code = _run(_with_runtime(cfg, go))
    if code:
        raise typer.Exit(code)


# -- listings ----------------------------------------------------------------------------------
@listings_app.command("pull")
def listings_pull(config: ConfigOption = DEFAULT_CONFIG,
                  shop: Annotated[str | None, typer.Option(help="Only this shop.")] = None) -> None:
    """Read each platform's listings and bind them to SKUs by merchant code."""
    from core.listings import pull_listings

    cfg = _load(config)

    async def go(rt: Any) -> int:
        for item in rt.enabled_shops():
            if shop not in (None, item.name):
                continue
            stats = await pull_listings(rt, item.name)
            console.print(f"{item.name}: {stats.seen} listings, {stats.bound} bound, "
                          f"{len(stats.unbound)} without a SKU, {len(stats.missing_skus)} "
                          f"SKUs not listed, {stats.queued} corrections queued")
            for line in stats.unbound:
                console.print(f"  no SKU: {line}")
        return 0

    _run(_with_runtime(cfg, go))


# -- demo --------------------------------------------------------------------------------------
@app.command("demo")
def demo(config: ConfigOption = DEFAULT_CONFIG,
         once: Annotated[bool, typer.Option("--once", help="One full cycle, then exit.")] = False,
         seed: Annotated[int, typer.Option(help="Seed of the sandbox data.")] = 11) -> None:
    """Sandbox shops on 127.0.0.1, a seeded catalogue and orders, the real sync on SQLite."""
    from core.demo import DemoSummary, run_demo

    cfg = _load(config)

    def show(summary: DemoSummary) -> None:
        table = Table("erpsync demo", "count", title="demo cycle summary")
        for name, value in summary.rows():
            table.add_row(name, value)
        console.print(table)

    try:
        summary = _run(run_demo(cfg, once=once, seed=seed, on_cycle=show))
    except KeyboardInterrupt:
        return
    show(summary)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
