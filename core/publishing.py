"""Publishing the pool to the channels.

After every stock change the quantity each listing should show is recomputed and written to
the outbox in the same transaction, one row per listing (coalesced: a newer quantity rewrites
the row with a higher version, so only the newest is ever sent). Selling out jumps the queue.

Rules come from three places, the most specific winning: SKU > listing > shop.

Modes:
* shared — every channel shows floor((available − safety_stock) × sync_ratio), capped at
  max_listed, and 0 at or below zero_below. Channels may together show more than exists;
  the oversell risk is the propagation window.
* strict — the channels' shares never add up to more than `available`: `available` is
  split by the channels' sync_ratio weights with largest-remainder rounding (ties go to the
  listing with the lower id, so the split is deterministic), then each share is cut by that
  channel's safety stock, max_listed and zero_below (cuts only ever lower a share, so the sum
  stays within `available`). Every sale reallocates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import PublishRules
from core.inventory import StockPool
from core.model import Listing, Shop, Sku
from core.outbox import enqueue

RULE_KEYS = ("sync_ratio", "safety_stock", "max_listed", "zero_below")


def effective_rules(shop: Mapping[str, Any], listing: Mapping[str, Any],
                    sku: Mapping[str, Any]) -> PublishRules:
    merged: dict[str, Any] = {}
    for layer in (shop, listing, sku):  # later layers win
        merged.update({k: v for k, v in layer.items() if k in RULE_KEYS})
    return PublishRules(
        sync_ratio=float(merged.get("sync_ratio", 1.0)),
        safety_stock=int(merged.get("safety_stock", 0)),
        max_listed=None if merged.get("max_listed") is None else int(merged["max_listed"]),
        zero_below=int(merged.get("zero_below", 0)))


def _finish(quantity: int, rules: PublishRules) -> int:
    if rules.max_listed is not None:
        quantity = min(quantity, rules.max_listed)
    if quantity <= rules.zero_below:
        return 0
    return max(0, quantity)


def shared_quantity(available: int, rules: PublishRules) -> int:
    base = max(0, available - rules.safety_stock)
    # integer arithmetic on the ratio avoids float rounding at exact products (0.8 × 5 = 4)
    numerator, denominator = _ratio(rules.sync_ratio)
    return _finish(base * numerator // denominator, rules)


def strict_allocation(available: int, channels: Sequence[tuple[int, PublishRules]]) -> dict[int, int]:
    """Split `available` across channels (key, rules); the sum never exceeds `available`."""
    if not channels:
        return {}
    weights = [(key, _ratio(rules.sync_ratio)) for key, rules in channels]
    denominator = 1
    for _, (_, den) in weights:
        denominator = denominator * den
    scaled = [(key, num * denominator // den) for key, (num, den) in weights]
    total_weight = sum(w for _, w in scaled)
    quotas: dict[int, int] = {}
    remainders: list[tuple[int, int, int]] = []
    for key, weight in scaled:
        whole, rest = divmod(available * weight, total_weight)
        quotas[key] = whole
        remainders.append((-rest, key, weight))
    left = available - sum(quotas.values())
    for _, key, _ in sorted(remainders)[:left]:
        quotas[key] += 1
    rules_of = dict(channels)
    result = {}
    for key, quota in quotas.items():
        rules = rules_of[key]
        result[key] = _finish(min(quota, max(0, available - rules.safety_stock)), rules)
    return result


def _ratio(value: float) -> tuple[int, int]:
    """0.8 -> (4, 5): exact fractions of the configured decimal."""
    from fractions import Fraction

    fraction = Fraction(str(value)).limit_denominator(10_000)
    return fraction.numerator, fraction.denominator


@dataclass(frozen=True, slots=True)
class PublishTarget:
    listing_id: int
    shop_id: int
    sku_id: int
    quantity: int


def _priority(quantity: int, decrease: bool) -> int:
    """Sell-outs first, then decreases, then increases (which strict mode also holds back
    until the SKU's decreases elsewhere have landed)."""
    if quantity == 0:
        return 0
    return 1 if decrease else 2


class Publisher:
    def __init__(self, pool: StockPool, mode: str = "shared") -> None:
        self.pool = pool
        self.mode = mode

    async def targets(self, session: AsyncSession, sku_ids: Iterable[int]) -> list[PublishTarget]:
        ids = set(sku_ids)
        if not ids:
            return []
        available = await self.pool.available_many(session, ids)
        rows = (await session.execute(
            select(Listing.id, Listing.shop_id, Listing.sku_id, Listing.publish, Shop.settings,
                   Sku.publish)
            .join(Shop, Shop.id == Listing.shop_id).join(Sku, Sku.id == Listing.sku_id)
            .where(Listing.sku_id.in_(ids)).order_by(Listing.id))).all()
        by_sku: dict[int, list[tuple[int, int, PublishRules]]] = {}
        for listing_id, shop_id, sku_id, listing_rules, shop_settings, sku_rules in rows:
            if not (shop_settings or {}).get("enabled", True):
                continue
            rules = effective_rules((shop_settings or {}).get("publish", {}),
                                    listing_rules or {}, sku_rules or {})
            by_sku.setdefault(sku_id, []).append((listing_id, shop_id, rules))
        targets: list[PublishTarget] = []
        for sku_id, channels in by_sku.items():
            if self.mode == "strict":
                shares = strict_allocation(available[sku_id], [(lid, r) for lid, _, r in channels])
                targets.extend(PublishTarget(lid, sid, sku_id, shares[lid])
                               for lid, sid, _ in channels)
            else:
                targets.extend(PublishTarget(lid, sid, sku_id, shared_quantity(available[sku_id], r))
                               for lid, sid, r in channels)
        return targets

    async def publish(self, session: AsyncSession, sku_ids: Iterable[int], now: datetime,
                      *, against_platform: bool = False, shop_id: int | None = None) -> int:
        """Queue the new quantity of every listing of these SKUs whose target changed since
        it was last queued (or, with `against_platform`, differs from what the platform was
        last seen showing). Returns the number of outbox rows written."""
        # every channel of a SKU counts for the strict split; `shop_id` limits what is queued
        targets = [t for t in await self.targets(session, sku_ids)
                   if shop_id is None or t.shop_id == shop_id]
        if not targets:
            return 0
        rows = {row.id: row for row in (await session.execute(
            select(Listing.id, Listing.queued_quantity, Listing.platform_quantity,
                   Listing.last_pushed_quantity)
            .where(Listing.id.in_([t.listing_id for t in targets])))).all()}
        written = 0
        for target in sorted(targets, key=lambda t: t.listing_id):
            row = rows[target.listing_id]
            known = row.platform_quantity if against_platform else row.queued_quantity
            if known == target.quantity:
                if against_platform:  # already right on the platform: remember it as sent
                    await session.execute(
                        update(Listing).where(Listing.id == target.listing_id)
                        .values(queued_quantity=target.quantity)
                        .execution_options(synchronize_session=False))
                continue
            version = (await session.execute(
                update(Listing).where(Listing.id == target.listing_id)
                .values(publish_version=Listing.publish_version + 1,
                        queued_quantity=target.quantity)
                .returning(Listing.publish_version)
                .execution_options(synchronize_session=False))).scalar_one()
            # compared with what the platform shows as far as we know, not with what was
            # queued: lowering a queued-but-unsent raise is still a decrease there
            shown = (row.platform_quantity if row.last_pushed_quantity is None
                     else row.last_pushed_quantity)
            decrease = target.quantity < shown
            await enqueue(session, kind="stock", shop_id=target.shop_id,
                          target=str(target.listing_id), dedup_key=f"listing:{target.listing_id}",
                          payload={"listing_id": target.listing_id, "sku_id": target.sku_id,
                                   "quantity": target.quantity, "decrease": decrease},
                          version=version, priority=_priority(target.quantity, decrease),
                          now=now)
            written += 1
        return written
