"""Shipping: `erpsync ship` for one order, `erpsync shipments …` for files of waybills, the
tracking poll and the shipping alert checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from core.cli.common import ConfigOption, console, err, in_runtime, load_config
from core.config import DEFAULT_CONFIG

shipments = typer.Typer(no_args_is_help=True, help="Shipments: import waybills, tracking.")


def register(app: typer.Typer) -> None:
    app.command("ship")(ship_command)
    app.add_typer(shipments, name="shipments")


def ship_command(
    order: Annotated[str, typer.Argument(help="Platform order id (or shop:order id).")],
    carrier: Annotated[str | None, typer.Option(help="Canonical carrier code, e.g. ZTO.")] = None,
    auto: Annotated[bool, typer.Option("--auto", help="Let the carrier rules choose (by "
                                       "region and bulky SKUs); without --tracking, only "
                                       "show the choice.")] = False,
    tracking: Annotated[str | None, typer.Option(help="Waybill number.")] = None,
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
    from core.logistics import ShippingError, choose_carrier_for, ship
    from core.model import Order, Shipment
    from core.records import Capability
    from core.senders import OutboxWorker

    if auto == (carrier is not None):
        err.print("[red]error[/red] give either --carrier C or --auto")
        raise typer.Exit(2)
    if not auto and not tracking:
        err.print("[red]error[/red] --tracking is required")
        raise typer.Exit(2)
    cfg = load_config(config)

    async def go(rt: Any) -> int:
        shop_name, _, order_id = order.rpartition(":")
        if shop_name and shop_name not in rt.shop_ids:
            err.print(f"[red]error[/red] unknown shop {shop_name!r}")
            return 2
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
        connector = rt.connector(shop)
        chosen, rule = carrier or "", "operator"
        if auto:
            try:
                async with rt.sessions() as session:
                    choice = await choose_carrier_for(session, rt.rules_data,
                                                      order_id=target.id, line_ids=line_ids,
                                                      shop=shop)
            except ShippingError as exc:
                err.print(f"[red]error[/red] {exc}")
                return 2
            chosen, rule = choice.carrier, choice.rule
            console.print(f"carrier for {order}: {chosen} (rule {rule})")
            if not tracking:
                return 0
        assert tracking is not None
        try:
            async with transaction(rt.sessions) as session:
                shipment = await ship(
                    session, order_id=target.id, carrier=chosen, tracking_number=tracking,
                    line_ids=line_ids, carriers=connector.carrier_table(), pool=rt.pool,
                    publisher=rt.publisher, now=rt.now(), rule=rule,
                    partial_ship=Capability.PARTIAL_SHIP in connector.capabilities)
        except (ShippingError, UnmappedCarrier) as exc:
            err.print(f"[red]error[/red] {exc}")
            return 2
        if push:
            await OutboxWorker(rt).drain(shops=[shop], kinds=["ship"])
        async with rt.sessions() as session:
            state = await session.scalar(select(Shipment.push_state).where(
                Shipment.id == shipment.id))
        console.print(f"shipped {order} with {chosen} {tracking}: push {state}")
        return 0 if state != "failed" else 1

    in_runtime(cfg, go)


@shipments.command("import")
def shipments_import(
    file: Annotated[Path, typer.Argument(help="CSV: order, carrier, tracking, [lines], [shop].")],
    config: ConfigOption = DEFAULT_CONFIG,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Ship the good rows even when "
                                           "some rows are bad.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only.")] = False,
    push: Annotated[bool, typer.Option("--push/--queue-only",
                                       help="Send the tracking numbers now.")] = True,
) -> None:
    """Ship orders from a CSV of waybills, every row checked first.

    A bad row stops the whole file unless --skip-bad. Exit 2: nothing shipped; 1: shipped,
    but rows skipped or pushes refused."""
    from core.logistics import ShippingError, apply_shipments, plan_shipments, read_shipments_csv
    from core.senders import OutboxWorker

    cfg = load_config(config)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]error[/red] cannot read {file}: {exc}")
        raise typer.Exit(2) from None

    async def go(rt: Any) -> int:
        rows, problems = read_shipments_csv(text)
        plan = await plan_shipments(rt, rows)
        problems = sorted(problems + plan.problems, key=lambda p: p.line)
        for problem in problems:
            err.print(f"[red]{file.name}[/red] {problem}", highlight=False)
        if problems and not skip_bad:
            err.print(f"{len({p.line for p in problems})} bad rows: nothing shipped "
                      "(fix them, or --skip-bad to ship the others)")
            return 2
        if dry_run:
            console.print(f"{len(plan.ready)} rows ready, {len(problems)} problems (dry run)")
            return 2 if problems else 0
        if not plan.ready:
            err.print("nothing to ship")
            return 2
        try:
            ids = await apply_shipments(rt, plan.ready)
        except ShippingError as exc:
            err.print(f"[red]error[/red] {exc}: nothing shipped")
            return 2
        failed = 0
        if push:
            shops = sorted({item.shop for item in plan.ready})
            failed = (await OutboxWorker(rt).drain(shops=shops, kinds=["ship"])).failed
        console.print(f"shipped {len(ids)} rows"
                      + (f", skipped {len({p.line for p in problems})} bad rows" if problems
                         else "")
                      + (f", {failed} pushes refused" if failed else ""))
        return 1 if problems or failed else 0

    in_runtime(cfg, go)


@shipments.command("track")
def shipments_track(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Poll the tracking provider for parcels that are due (the daemon's tracking job)."""
    from core.errors import ConfigError
    from core.tracking import poll_tracking, provider

    cfg = load_config(config, sections=True)

    async def go(rt: Any) -> int:
        try:
            if provider(rt) is None:
                err.print("no [tracking] provider is configured")
                return 2
            stored = await poll_tracking(rt)
        except ConfigError as exc:
            err.print(f"[red]error[/red] {exc}", highlight=False)
            return 2
        console.print(f"{stored} new tracking events")
        return 0

    in_runtime(cfg, go)


@shipments.command("check")
def shipments_check(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Open and resolve the shipping alerts (the daemon's check job).

    ship_overdue, tracking_push_late, not_collected, shipment_stalled, delivery_exception."""
    from core.errors import ConfigError
    from core.logistics import check_shipments

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        try:
            counts = await check_shipments(rt)
        except ConfigError as exc:
            err.print(f"[red]error[/red] {exc}", highlight=False)
            return 2
        console.print(", ".join(f"{kind} {n}" for kind, n in counts.items()))
        return 0

    in_runtime(cfg, go)
