"""Orders: pulls, the inbox of pushes, review decisions, unbound lines and the quarantine."""

from __future__ import annotations

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
review_app = typer.Typer(no_args_is_help=True, help="Orders waiting for a decision.")
quarantine_app = typer.Typer(no_args_is_help=True,
                             help="Payloads that did not parse or map, kept with their error.")
app.add_typer(review_app, name="review")
app.add_typer(quarantine_app, name="quarantine")
IdsArgument = Annotated[list[str], typer.Argument(help="erpsync order ids or platform order ids.")]


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
        if shop is not None and not shops:
            err.print(f"[red]error[/red] no enabled shop named {shop!r}")
            return 2
        with Progress(console=err) as progress:
            for name in shops:
                task = progress.add_task(name, total=None)
                try:
                    stats = await pull_orders(rt, name, since=start, until=end,
                                              on_batch=partial(progress.advance, task))
                except Exception as exc:
                    failures += 1
                    err.print(f"[red]{name}[/red]: {type(exc).__name__}: {exc}")
                    continue
                progress.update(task, total=stats.orders_seen, completed=stats.orders_seen)
                console.print(f"{name}: {stats.orders_seen} seen, {stats.new} new, "
                              f"{stats.updated} updated, {stats.backordered} backordered, "
                              f"{stats.quarantined} quarantined"
                              + (" (another node holds the pull lease)" if stats.skipped_locked
                                 else ""))
        return 1 if failures else 0

    in_runtime(cfg, go)


@app.command("inbox")
def orders_inbox(
    config: ConfigOption = DEFAULT_CONFIG,
    limit: Annotated[int, typer.Option(help="Events to process at most.")] = 500,
) -> None:
    """Process pushed events waiting in the inbox (the daemon does this continuously)."""
    from core.intake import process_inbox_stats

    async def go(rt: Any) -> int:
        stats = await process_inbox_stats(rt, limit=limit)
        if stats.skipped_locked:
            console.print("another node is processing the inbox")
            return 0
        console.print(f"{stats.processed} settled: {stats.ingested} ingested, "
                      f"{stats.quarantined} quarantined; {stats.retry_later} to retry later")
        return 0

    in_runtime(load_config(config), go)


@review_app.command("list")
def review_list(
    config: ConfigOption = DEFAULT_CONFIG,
    shop: ShopOption = None,
) -> None:
    """Orders on hold (manual review, presale wait, backorder) and orders with unknown SKUs."""
    from rich.table import Table
    from sqlalchemy import or_, select

    from core.model import Order, Shop

    async def go(rt: Any) -> int:
        async with rt.sessions() as session:
            query = (select(Order, Shop.name).join(Shop, Shop.id == Order.shop_id)
                     .where(or_(Order.status == "on_hold", Order.backorder.is_(True),
                                Order.unbound_lines > 0),
                            Order.status.not_in(["cancelled", "refunded", "shipped",
                                                 "completed"]))
                     .order_by(Order.priority.desc(), Order.paid_at, Order.id))
            if shop:
                query = query.where(Shop.name == shop)
            rows = (await session.execute(query)).all()
        table = Table("id", "shop", "platform order", "status", "rule", "reason", "amount",
                      "flags")
        for order, shop_name in rows:
            flags = [name for name, on in (("priority", order.priority),
                                           ("backorder", order.backorder),
                                           (f"{order.unbound_lines} unbound",
                                            order.unbound_lines > 0)) if on]
            table.add_row(str(order.id), shop_name, order.platform_order_id, order.status,
                          order.review_rule, order.hold_reason, f"{order.paid_fen / 100:.2f}",
                          ", ".join(flags))
        console.print(table)
        console.print(f"{len(rows)} order(s) need attention")
        return 0

    in_runtime(load_config(config), go)


@app.command("approve")
def orders_approve(
    ids: IdsArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    reason: Annotated[str, typer.Option(help="Why (stored with the decision).")] = "",
) -> None:
    """Approve paid orders (stock was reserved at payment)."""
    _decide(config, ids, "approve", reason)


@app.command("hold")
def orders_hold(
    ids: IdsArgument,
    reason: Annotated[str, typer.Option(help="Why the order waits (required).")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Hold paid orders for a person, with the reason."""
    _decide(config, ids, "hold", reason)


def _decide(config_file: Any, ids: list[str], action: str, reason: str) -> None:
    from core.db import transaction
    from core.orders import find_orders, set_review

    async def go(rt: Any) -> int:
        failures = 0
        async with rt.sessions() as session:
            try:
                orders = await find_orders(session, ids)
            except LookupError as exc:
                err.print(f"[red]error[/red] {exc}")
                return 2
        for order in orders:
            try:
                async with transaction(rt.sessions) as session:
                    await set_review(session, order, action, reason, rt.now())
            except ValueError as exc:
                failures += 1
                err.print(f"[red]{order.id}[/red]: {exc}")
                continue
            console.print(f"{order.id} ({order.platform_order_id}): "
                          f"{'approved' if action == 'approve' else 'on hold'}")
        return 1 if failures else 0

    in_runtime(load_config(config_file), go)


@app.command("show")
def orders_show(
    ids: IdsArgument,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """An order with its lines and its history (every change with its source)."""
    from rich.table import Table
    from sqlalchemy import select

    from core.model import OrderEvent
    from core.orders import find_orders

    async def go(rt: Any) -> int:
        async with rt.sessions() as session:
            try:
                orders = await find_orders(session, ids)
            except LookupError as exc:
                err.print(f"[red]error[/red] {exc}")
                return 2
            for order in orders:
                console.print(f"[bold]{order.id}[/bold] {rt.shop_name(order.shop_id)} "
                              f"{order.platform_order_id}: {order.status} "
                              f"({order.platform_status}), paid {order.paid_fen / 100:.2f}"
                              + (f", review {order.review}/{order.review_rule}"
                                 if order.review else "")
                              + (f": {order.hold_reason}" if order.hold_reason else ""))
                lines = Table("line", "merchant code", "sku", "qty", "status", "presale by")
                for line in order.lines:
                    lines.add_row(line.platform_line_id, line.merchant_code or "-",
                                  str(line.sku_id) if line.sku_id else "[red]unbound[/red]",
                                  str(line.quantity), line.status + (" (short)" if line.short
                                                                     else ""),
                                  line.presale_ship_by.isoformat() if line.presale_ship_by
                                  else "")
                console.print(lines)
                history = Table("at", "from", "to", "source", "note")
                for event in (await session.scalars(
                        select(OrderEvent).where(OrderEvent.order_id == order.id)
                        .order_by(OrderEvent.id))).all():
                    history.add_row(event.at.isoformat(), event.from_status, event.to_status,
                                    event.source, event.note)
                console.print(history)
        return 0

    in_runtime(load_config(config), go)


@app.command("unbound")
def orders_unbound(
    config: ConfigOption = DEFAULT_CONFIG,
    shop: ShopOption = None,
) -> None:
    """Order lines whose SKU erpsync does not know (import the SKU, pull listings, then
    `erpsync orders rebind`)."""
    from rich.table import Table
    from sqlalchemy import select

    from core.model import Order, OrderLine, Shop

    async def go(rt: Any) -> int:
        async with rt.sessions() as session:
            query = (select(OrderLine, Order, Shop.name)
                     .join(Order, Order.id == OrderLine.order_id)
                     .join(Shop, Shop.id == Order.shop_id)
                     .where(OrderLine.sku_id.is_(None),
                            Order.status.not_in(["cancelled", "refunded"]))
                     .order_by(Order.id, OrderLine.id))
            if shop:
                query = query.where(Shop.name == shop)
            rows = (await session.execute(query)).all()
        table = Table("order", "shop", "platform order", "status", "merchant code",
                      "platform item / sku", "qty", "title")
        for line, order, shop_name in rows:
            table.add_row(str(order.id), shop_name, order.platform_order_id, order.status,
                          line.merchant_code or "(empty)",
                          f"{line.platform_item_id} / {line.platform_sku_id}",
                          str(line.quantity), line.title)
        console.print(table)
        console.print(f"{len(rows)} unbound line(s)")
        return 0

    in_runtime(load_config(config), go)


@app.command("rebind")
def orders_rebind(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Bind unbound lines whose SKU now exists, and reserve them."""
    from core.orders import rebind_lines

    async def go(rt: Any) -> int:
        console.print(f"{await rebind_lines(rt)} line(s) bound")
        return 0

    in_runtime(load_config(config), go)


@app.command("release-presale")
def orders_release_presale(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Review again the presale orders whose promise date has come."""
    from core.orders import release_presale

    async def go(rt: Any) -> int:
        console.print(f"{await release_presale(rt)} presale order(s) reviewed again")
        return 0

    in_runtime(load_config(config), go)


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOption = DEFAULT_CONFIG,
    shop: ShopOption = None,
    all_states: Annotated[bool, typer.Option("--all", help="Closed entries too.")] = False,
    payload: Annotated[bool, typer.Option(help="Print each payload in full.")] = False,
) -> None:
    """Quarantined payloads (open ones unless --all)."""
    from rich.table import Table

    from core.quarantine import entries

    async def go(rt: Any) -> int:
        shop_id = None
        if shop is not None:
            if shop not in rt.shop_ids:
                err.print(f"[red]error[/red] no shop named {shop!r}")
                return 2
            shop_id = rt.shop_ids[shop]
        async with rt.sessions() as session:
            rows = await entries(session, shop_id=shop_id, state=None if all_states else "open")
        table = Table("id", "shop", "source", "order / reference", "state", "seen", "error",
                      "last seen")
        for entry in rows:
            table.add_row(str(entry.id), rt.shop_name(entry.shop_id), entry.source,
                          entry.platform_order_id or entry.reference, entry.state,
                          str(entry.seen), entry.error[:120], entry.updated_at.isoformat())
        console.print(table)
        if payload:
            for entry in rows:
                console.rule(f"{entry.id}")
                console.print(entry.payload, markup=False, highlight=False)
        return 0

    in_runtime(load_config(config), go)


@quarantine_app.command("retry")
def quarantine_retry(
    entry_id: Annotated[int, typer.Argument(help="Quarantine id.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Re-read the order (get_order) and ingest it; a quarantined window is pulled again."""
    from core import quarantine

    async def go(rt: Any) -> int:
        try:
            outcome = await quarantine.retry(rt, entry_id)
        except (LookupError, ValueError) as exc:
            err.print(f"[red]error[/red] {exc}")
            return 2
        (console if outcome.resolved else err).print(f"{entry_id}: {outcome.message}")
        return 0 if outcome.resolved else 1

    in_runtime(load_config(config), go)


@quarantine_app.command("drop")
def quarantine_drop(
    entry_id: Annotated[int, typer.Argument(help="Quarantine id.")],
    config: ConfigOption = DEFAULT_CONFIG,
    reason: Annotated[str, typer.Option(help="Why it needs nothing more.")] = "",
) -> None:
    """Mark a payload handled; it stays in the table for audit."""
    from core import quarantine

    async def go(rt: Any) -> int:
        try:
            await quarantine.drop(rt, entry_id, reason)
        except (LookupError, ValueError) as exc:
            err.print(f"[red]error[/red] {exc}")
            return 2
        console.print(f"{entry_id}: dropped")
        return 0

    in_runtime(load_config(config), go)
