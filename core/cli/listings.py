"""Platform listings: pull and bind, validate, plan, push, scheduled listing, dormant SKUs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

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

app = typer.Typer(no_args_is_help=True, help="Platform listings.")


def _shops(shop: str | None) -> list[str] | None:
    return None if shop is None else [shop]


def _known_shop(rt: Any, shop: str | None) -> bool:
    if shop is not None and shop not in {s.name for s in rt.enabled_shops()}:
        err.print(f"[red]error[/red] no enabled shop {shop!r}")
        return False
    return True


@app.command("pull")
def listings_pull(config: ConfigOption = DEFAULT_CONFIG, shop: ShopOption = None) -> None:
    """Read each platform's listings and bind them to SKUs by merchant code."""
    from core.listings import pull_listings

    cfg = load_config(config)

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
            for code in stats.missing_skus:
                console.print(f"  not listed here: {code}")
        return 0

    in_runtime(cfg, go)


@app.command("validate")
def listings_validate(config: ConfigOption = DEFAULT_CONFIG, shop: ShopOption = None) -> None:
    """Check every product against each platform's listing rules, and show what the
    platforms refused last time. Exit 1 when there is anything to fix."""
    from core.listing_plan import validate_listings

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        if not _known_shop(rt, shop):
            return 2
        entries = await validate_listings(rt, _shops(shop))
        if not entries:
            console.print("every product passes the listing rules")
            return 0
        table = Table("shop", "product", "code", "field", "problem")
        count = 0
        for entry in entries:
            for problem in entry.problems:
                count += 1
                field = f"{problem.field}[{problem.sku}]" if problem.sku else problem.field
                table.add_row(entry.shop or "(any)", entry.product, str(problem.code), field,
                              problem.message)
            if entry.rejection:
                count += 1
                table.add_row(entry.shop, entry.product, "REJECTED_BY_PLATFORM", "",
                              entry.rejection)
        console.print(table)
        console.print(f"{count} problem(s) in {len({e.product for e in entries})} product(s)")
        return 1

    in_runtime(cfg, go)


def _print_plans(plans: list[Any]) -> int:
    """Print plans; returns the number of actions."""
    total = 0
    for plan in plans:
        console.print(f"[bold]{plan.shop}[/bold] ({plan.platform})")
        for note in plan.notes:
            console.print(f"  note: {note}")
        if not plan.actions:
            console.print("  no change")
        for action in plan.actions:
            total += 1
            where = f" item {action.item}" if action.item else ""
            flags = []
            if action.blocked:
                flags.append("[red]blocked[/red]")
            if action.queued:
                flags.append("already queued")
            console.print(f"  {action.action} {action.product}{where}"
                          + (f"  ({', '.join(flags)})" if flags else ""))
            for change in action.changes:
                console.print(f"      {change.field}: {change.before or '-'} → {change.after}",
                              highlight=False)
            for problem in action.problems:
                console.print(f"      [red]{problem.code}[/red] {problem.field}"
                              f"{'[' + problem.sku + ']' if problem.sku else ''}: "
                              f"{problem.message}", highlight=False)
            if action.rejection:
                console.print(f"      [red]refused by {plan.platform}[/red]: {action.rejection}",
                              highlight=False)
            if action.note:
                console.print(f"      {action.note}")
    return total


@app.command("plan")
def listings_plan(config: ConfigOption = DEFAULT_CONFIG, shop: ShopOption = None) -> None:
    """What a push would create, update (field by field), shelve or unshelve per shop."""
    from core.listing_plan import plan_listings

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        if not _known_shop(rt, shop):
            return 2
        _print_plans(await plan_listings(rt, _shops(shop)))
        return 0

    in_runtime(cfg, go)


@app.command("push")
def listings_push(config: ConfigOption = DEFAULT_CONFIG, shop: ShopOption = None,
                  dry_run: Annotated[bool, typer.Option(
                      "--dry-run", help="Show the plan, send nothing.")] = False) -> None:
    """Apply the plan through the connectors (blocked products are skipped). Exit 1 when
    anything was refused or blocked."""
    from core.listing_plan import plan_listings, push_listings

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        if not _known_shop(rt, shop):
            return 2
        if dry_run:
            _print_plans(await plan_listings(rt, _shops(shop)))
            return 0
        report = await push_listings(rt, _shops(shop))
        _print_plans(report.plans)
        queued = ", ".join(f"{n} {kind}" for kind, n in sorted(report.queued.items())) or "nothing"
        console.print(f"queued {queued}; {report.blocked} blocked by the listing rules")
        stats = report.stats
        if stats is not None:
            console.print(f"sent {stats.sent}, retrying {stats.retried}, refused {stats.failed}")
        return 1 if report.blocked or (stats is not None and stats.failed) else 0

    in_runtime(cfg, go)


@app.command("schedule")
def listings_schedule(product: str,
                      at: Annotated[str | None, typer.Option(
                          "--at", help="When to put it on sale (ISO time, Beijing if no zone).")
                      ] = None,
                      clear: Annotated[bool, typer.Option("--clear",
                                                          help="Drop the schedule.")] = False,
                      config: ConfigOption = DEFAULT_CONFIG, shop: ShopOption = None) -> None:
    """Scheduled listing (定时上架): on sale at a given time, off sale until then."""
    from core.clock import format_beijing
    from core.listings import schedule_listing

    if (at is None) == (not clear):
        raise typer.BadParameter("give --at TIME or --clear")
    when = parse_when(at)
    cfg = load_config(config)

    async def go(rt: Any) -> int:
        if not _known_shop(rt, shop):
            return 2
        try:
            done = await schedule_listing(rt, product, when, shops=_shops(shop))
        except KeyError:
            err.print(f"[red]error[/red] no product {product!r}")
            return 2
        if not done:
            err.print(f"{product} is neither listed nor managed (no category) in these shops")
            return 1
        for entry in done:
            items = ", ".join(entry.items) or "not created yet"
            state = "cleared" if when is None else f"on sale at {format_beijing(when)}"
            console.print(f"{entry.shop}: {product} {state} (items: {items}"
                          + (f"; {entry.taken_off} taken off sale until then)"
                             if entry.taken_off else ")"))
        return 0

    in_runtime(cfg, go)


@app.command("fire-scheduled")
def listings_fire(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Put on sale every scheduled listing whose time has come (the daemon's job, once)."""
    from core.listings import fire_scheduled_listings

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        fired = await fire_scheduled_listings(rt)
        console.print(f"{fired} scheduled item(s) put on sale")
        return 0

    in_runtime(cfg, go)


@app.command("dormant")
def listings_dormant(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Dormant SKUs (滞销): listed, in stock, no sale for `dormant_after`; opens/resolves
    `dormant_sku` alerts."""
    from core.clock import format_beijing
    from core.listings import check_dormant, dormant_skus

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        await check_dormant(rt)
        found = await dormant_skus(rt)
        if not found:
            console.print("no dormant SKU")
            return 0
        table = Table("sku", "days without a sale", "last sold", "available")
        for sku in found:
            table.add_row(sku.merchant_code, str(sku.days),
                          format_beijing(sku.last_sold_at)[:10] if sku.last_sold_at else "never",
                          str(sku.available))
        console.print(table)
        return 0

    in_runtime(cfg, go)
