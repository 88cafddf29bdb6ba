"""Shipping."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from core.cli.common import ConfigOption, console, err, in_runtime, load_config
from core.config import DEFAULT_CONFIG


def register(app: typer.Typer) -> None:
    app.command("ship")(ship_command)


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

    cfg = load_config(config)

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

    in_runtime(cfg, go)
