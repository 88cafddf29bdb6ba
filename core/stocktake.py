"""Operator stock commands: set, import a warehouse stocktake, history, show.

An import is validated whole first: unknown SKUs, negative or non-numeric quantities are
reported with their line numbers and nothing is applied, unless the operator asks to skip
the bad rows. Every applied change serves waiting backorders and republishes."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import transaction
from core.model import (
    Listing,
    OutboxTask,
    Reservation,
    Shop,
    Sku,
    StockLevel,
    StockMovement,
    Warehouse,
)
from core.runtime import Runtime


class StockCommandError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StocktakeRow:
    line: int
    merchant_code: str
    warehouse: str
    quantity: int


@dataclass(slots=True)
class StocktakeReport:
    rows: list[StocktakeRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    applied: int = 0
    queued: int = 0


async def _sku(session: AsyncSession, code: str) -> Sku:
    sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
    if sku is None:
        raise StockCommandError(f"unknown SKU {code!r}")
    return sku


async def set_stock(rt: Runtime, code: str, quantity: int, *, reason: str,
                    warehouse: str = "MAIN") -> int:
    """Counted quantity for one SKU; returns outbox rows queued."""
    if quantity < 0:
        raise StockCommandError("quantity cannot be negative")
    async with transaction(rt.sessions) as session:
        sku = await _sku(session, code)
        changed = await rt.pool.set_on_hand(session, sku.id, warehouse, quantity, reason=reason,
                                            reference="operator", now=rt.now())
        return await rt.book.stock_changed(session, changed, rt.now())


def read_stocktake(path: Path, known: set[str], default_warehouse: str = "MAIN") -> StocktakeReport:
    """CSV with columns `sku,quantity[,warehouse]` (a header row is required)."""
    report = StocktakeReport()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"sku", "quantity"} - set(reader.fieldnames or [])
        if missing:
            report.problems.append(f"line 1: missing column(s) {', '.join(sorted(missing))}")
            return report
        seen: dict[tuple[str, str], int] = {}
        for number, row in enumerate(reader, start=2):
            code = (row.get("sku") or "").strip()
            house = (row.get("warehouse") or "").strip() or default_warehouse
            text = (row.get("quantity") or "").strip()
            if not code:
                report.problems.append(f"line {number}: empty sku")
                continue
            if code not in known:
                report.problems.append(f"line {number}: unknown SKU {code!r}")
                continue
            if not text.lstrip("-").isdigit():
                report.problems.append(f"line {number}: quantity {text!r} is not a whole number")
                continue
            quantity = int(text)
            if quantity < 0:
                report.problems.append(f"line {number}: quantity {quantity} is negative")
                continue
            if (code, house) in seen:
                report.problems.append(f"line {number}: {code} in {house} already counted on "
                                       f"line {seen[(code, house)]}")
                continue
            seen[(code, house)] = number
            report.rows.append(StocktakeRow(number, code, house, quantity))
    return report


async def import_stocktake(rt: Runtime, path: Path, *, skip_bad: bool = False) -> StocktakeReport:
    async with rt.sessions() as session:
        known = set((await session.scalars(select(Sku.merchant_code))).all())
    report = read_stocktake(path, known)
    if report.problems and not skip_bad:
        return report
    async with transaction(rt.sessions) as session:
        ids = dict((await session.execute(select(Sku.merchant_code, Sku.id))).all())
        changed: set[int] = set()
        for row in report.rows:
            changed |= await rt.pool.set_on_hand(session, ids[row.merchant_code], row.warehouse,
                                                 row.quantity, reason=f"stocktake {path.name}",
                                                 reference=f"{path.name}:{row.line}",
                                                 now=rt.now())
            report.applied += 1
        report.queued = await rt.book.stock_changed(session, changed, rt.now())
    return report


async def history(rt: Runtime, code: str, limit: int = 50) -> list[StockMovement]:
    async with rt.sessions() as session:
        sku = await _sku(session, code)
        return list((await session.scalars(
            select(StockMovement).where(StockMovement.sku_id == sku.id)
            .order_by(StockMovement.id.desc()).limit(limit))).all())


@dataclass(slots=True)
class StockView:
    code: str
    available: int
    levels: list[tuple[str, int, int, int]]  # warehouse, on hand, reserved, safety
    reservations: list[tuple[int, int, str]]  # order line, quantity, state
    channels: list[dict[str, Any]]


async def show(rt: Runtime, code: str) -> StockView:
    async with rt.sessions() as session:
        sku = await _sku(session, code)
        levels = (await session.execute(
            select(Warehouse.code, StockLevel.on_hand, StockLevel.reserved, StockLevel.safety)
            .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
            .where(StockLevel.sku_id == sku.id).order_by(Warehouse.code))).all()
        reservations = (await session.execute(
            select(Reservation.order_line_id, Reservation.quantity, Reservation.state)
            .where(Reservation.sku_id == sku.id, Reservation.state == "reserved")
            .order_by(Reservation.id))).all()
        listings = (await session.execute(
            select(Listing, Shop.name).join(Shop, Shop.id == Listing.shop_id)
            .where(Listing.sku_id == sku.id).order_by(Shop.name, Listing.id))).all()
        pending = dict((await session.execute(
            select(OutboxTask.target, OutboxTask.state).where(
                OutboxTask.kind == "stock",
                OutboxTask.target.in_([str(listing.id) for listing, _ in listings])))).all())
        available = await rt.pool.available(session, sku.id)
    channels = [{
        "shop": shop, "item": listing.platform_item_id, "sku": listing.platform_sku_id,
        "queued": listing.queued_quantity, "last_sent": listing.last_pushed_quantity,
        "sent_at": listing.last_pushed_at, "platform_seen": listing.platform_quantity,
        "outbox": pending.get(str(listing.id), "-")} for listing, shop in listings]
    return StockView(code, available, [tuple(r) for r in levels],  # type: ignore[misc]
                     [tuple(r) for r in reservations], channels)  # type: ignore[misc]


def movements_table(rows: Iterable[StockMovement]) -> list[tuple[str, ...]]:
    return [(m.created_at.isoformat(timespec="seconds"), m.kind, f"{m.on_hand_delta:+d}",
             f"{m.reserved_delta:+d}", m.reason, m.reference) for m in rows]
