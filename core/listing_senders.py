"""Senders for the listing outbox kinds: "listing" (create/update through upsert_listing),
"price" (set_price) and "shelve" (set_on_sale).

`send` is called by the outbox worker (`core.senders`) for one claimed task and returns None
on success or the exception; the worker decides the task's next state from it, as for every
kind. What belongs to listings happens here:

* on success the Listing rows take what the platform now holds — ids a creation returned
  (a placeholder becomes the real row), title, prices, shelf state, the content snapshot —
  the refusal stored for that operation is cleared and `listing_rejected` resolves once no
  refusal is left for the product in that shop;
* a platform refusal (`Rejected`: a banned word the local list missed, a missing
  certificate, …) is stored on the rows concerned (`Listing.rejection`, prefixed with the
  operation) and opens `listing_rejected`, so `listings validate`/`plan` show the platform's
  own reason until the operator fixes it and pushes again.

A draft is built at send time from the catalogue as it is then and checked again with the
listing rules: the catalogue may have changed since the push queued it, and nothing that
fails the local rules is sent. No database session is held across a platform call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.alerts import open_alert, resolve_alert
from core.catalog import ProductSpec, spec_of
from core.clock import format_beijing
from core.connector import Connector
from core.db import transaction
from core.errors import BadResponse, ErpsyncError, NotFound, Rejected
from core.listing_plan import build_draft, listing_content, primary_item
from core.listing_rules import ListingRules, validate_product
from core.listings import PLACEHOLDER_ITEM, product_rows, queue_shelve
from core.model import Alert, Listing, Product, Shop, Sku
from core.outbox import Claimed
from core.publishing import effective_rules, shared_quantity
from core.records import Capability, ListingDraft, ListingPushResult, PriceUpdate
from core.runtime import Runtime


async def send(rt: Runtime, connector: Connector, task: Claimed) -> Exception | None:
    """Send one listing task; None on success, else the error (already recorded on the
    listing when the platform refused the content)."""
    senders = {"listing": _send_listing, "price": _send_price, "shelve": _send_shelve}
    sender = senders.get(task.kind)
    if sender is None:
        return Rejected(f"not a listing task kind: {task.kind!r}")
    needs = {"listing": Capability.UPSERT_LISTING, "price": Capability.SET_PRICE,
             "shelve": Capability.SHELVE}[task.kind]
    if needs not in connector.capabilities:
        return Rejected(f"the {connector.platform} connector cannot {needs.value}",
                        reason="unsupported")
    try:
        return await sender(rt, connector, task)
    except NotImplementedError:
        return Rejected(f"the {connector.platform} connector does not implement {needs.value}",
                        reason="unsupported")


# -- listing: create / update ---------------------------------------------------------------------
async def _send_listing(rt: Runtime, connector: Connector, task: Claimed) -> Exception | None:
    shop = rt.shop_name(task.shop_id)
    platform = rt.shop_config(shop).platform
    rules = ListingRules.from_toml(rt.rules_data)
    async with rt.sessions() as session:
        product = await _product(session, int(task.payload["product_id"]))
        if product is None:
            return Rejected(f"product {task.payload.get('product')} is no longer in the catalogue")
        spec = spec_of(product)
        rows = await product_rows(session, task.shop_id, product)
        item = primary_item(rows)
        quantities = await _quantities(rt, session, task.shop_id, product, rows, item)
        concerned = [r.id for r in rows
                     if (r.platform_item_id == item if item else
                         r.platform_item_id == PLACEHOLDER_ITEM)]
    if platform not in spec.categories:
        return Rejected(f"product {product.merchant_code} has no {platform} category")
    problems = validate_product(spec, platform, rules)  # reads image files: no session held
    if problems:
        return Rejected(f"{product.merchant_code} fails the listing rules: "
                        + "; ".join(str(p) for p in problems[:5]), reason="invalid")
    draft = build_draft(spec, platform, rules, item, quantities)
    try:
        result = await connector.upsert_listing(draft)
    except Rejected as exc:
        await _refused(rt, task.shop_id, product.id, concerned, "listing", exc)
        return exc
    except ErpsyncError as exc:
        return exc
    await _upserted(rt, task.shop_id, product.id, spec, platform, draft, result,
                    created=item is None)
    return None


async def _product(session: AsyncSession, product_id: int) -> Product | None:
    return await session.scalar(select(Product).where(Product.id == product_id)
                                .options(selectinload(Product.skus)))


async def _quantities(rt: Runtime, session: AsyncSession, shop_id: int, product: Product,
                      rows: Sequence[Listing], item: str | None) -> dict[str, int]:
    """What each SKU should show. A listed SKU keeps what stock sync last queued for it
    (an update must not overwrite the pool's figure). A new SKU gets its shared-mode figure;
    in strict mode 0, because its share only exists once the listing is bound and the pool
    is reallocated across channels (queued right after the platform answers)."""
    listed = {r.sku_id: r for r in rows if item and r.platform_item_id == item}
    shop = await session.get(Shop, shop_id)
    shop_rules = ((shop.settings if shop else {}) or {}).get("publish", {})
    available = await rt.pool.available_many(session, [s.id for s in product.skus])
    quantities: dict[str, int] = {}
    for sku in product.skus:
        row = listed.get(sku.id)
        if row is not None:
            quantities[sku.merchant_code] = (row.queued_quantity if row.queued_quantity
                                             is not None else row.platform_quantity)
        elif rt.config.inventory.mode == "strict":
            quantities[sku.merchant_code] = 0
        else:
            rules = effective_rules(shop_rules, {}, sku.publish or {})
            quantities[sku.merchant_code] = shared_quantity(available.get(sku.id, 0), rules)
    return quantities


async def _upserted(rt: Runtime, shop_id: int, product_id: int, spec: ProductSpec,
                    platform: str, draft: ListingDraft, result: ListingPushResult, *,
                    created: bool) -> None:
    """Record what was sent (`spec`, not the catalogue as it may be by now: a change made
    during the call must still show in the next plan)."""
    now = rt.now()
    async with transaction(rt.sessions) as session:
        product = await _product(session, product_id)
        assert product is not None
        content = listing_content(spec, platform)
        rows = await product_rows(session, shop_id, product)
        holders = {r.platform_sku_id: r for r in rows if r.platform_item_id == PLACEHOLDER_ITEM}
        on_item = [r for r in rows if r.platform_item_id == result.platform_item_id]
        on_sale = True if created else any(r.on_sale for r in on_item)
        sent = {s.merchant_code: s for s in draft.skus}
        touched: set[int] = set()
        for sku in product.skus:
            if sku.merchant_code not in sent:
                continue  # added to the catalogue during the call: the next plan sends it
            sku_id = result.sku_ids.get(sku.merchant_code)
            if sku_id is None and len(product.skus) == 1 and len(result.sku_ids) == 1:
                sku_id = next(iter(result.sku_ids.values()))
            if sku_id is None:
                continue  # the platform did not take this SKU: the next plan shows it again
            row = await session.scalar(select(Listing).where(
                Listing.shop_id == shop_id, Listing.platform_item_id == result.platform_item_id,
                Listing.platform_sku_id == sku_id))
            holder = holders.pop(sku.merchant_code, None)
            quantity = sent[sku.merchant_code].quantity
            if row is None and holder is not None:
                row, holder = holder, None
                row.platform_item_id, row.platform_sku_id = result.platform_item_id, sku_id
                row.on_sale, row.platform_quantity, row.queued_quantity = on_sale, quantity, quantity
            elif row is None:
                row = Listing(shop_id=shop_id, platform_item_id=result.platform_item_id,
                              platform_sku_id=sku_id, on_sale=on_sale, platform_quantity=quantity,
                              queued_quantity=quantity, publish={}, publish_version=0,
                              last_pushed_version=0, created_at=now)
                session.add(row)
            if holder is not None:
                # a pull bound the item while its creation's answer was in doubt
                row.publish_at = row.publish_at or holder.publish_at
                await session.delete(holder)
            row.sku_id, row.merchant_code = sku.id, sku.merchant_code
            row.title, row.price_fen = draft.title, sent[sku.merchant_code].price_fen
            row.pushed_content = content
            row.rejection = ""
            touched.add(sku.id)
        await session.flush()
        # new listings get their share of the pool at once
        await rt.publisher.publish(session, touched, now)
        if created:
            await _after_create(session, shop_id, product, result.platform_item_id,
                                product.on_sale, now)
        await _clear_rejections(session, shop_id, product, ("listing", "price"), now)


async def _after_create(session: AsyncSession, shop_id: int, product: Product, item: str,
                        wanted_on_sale: bool, now: datetime) -> None:
    """Platforms list a new item at once; one that should wait goes off sale right away."""
    rows = [r for r in await product_rows(session, shop_id, product) if r.platform_item_id == item]
    schedule = [r.publish_at for r in rows if r.publish_at is not None]
    if not wanted_on_sale or (schedule and min(schedule) > now):
        reason = ("catalogue: off sale" if not wanted_on_sale
                  else f"scheduled for {format_beijing(min(schedule))}")
        await queue_shelve(session, shop_id=shop_id, item_id=item, on_sale=False, now=now,
                           reason=reason)
    elif schedule:
        for row in rows:  # its time had come already: created on sale, nothing left to fire
            row.publish_at = None


# -- price ----------------------------------------------------------------------------------------
async def _send_price(rt: Runtime, connector: Connector, task: Claimed) -> Exception | None:
    listing_id = int(task.payload["listing_id"])
    price = int(task.payload["price_fen"])
    async with rt.sessions() as session:
        listing = await session.get(Listing, listing_id)
        if listing is None or listing.platform_item_id == PLACEHOLDER_ITEM:
            return None  # the listing is gone: nothing left to price
        change = PriceUpdate(listing.platform_item_id, listing.platform_sku_id, price)
        product_id = await session.scalar(select(Sku.product_id).where(Sku.id == listing.sku_id))
    try:
        outcomes = await connector.set_price([change])
    except ErpsyncError as exc:
        outcomes = []
        error: Exception | None = exc
    else:
        mine = [o for o in outcomes if (o.platform_item_id, o.platform_sku_id)
                == (change.platform_item_id, change.platform_sku_id)]
        error = mine[0].error if mine else BadResponse(
            f"{connector.platform} set_price answered nothing for {change.platform_item_id}/"
            f"{change.platform_sku_id}")
    if isinstance(error, Rejected) and product_id is not None:
        await _refused(rt, task.shop_id, product_id, [listing_id], "price", error)
    if error is not None:
        return error
    async with transaction(rt.sessions) as session:
        await session.execute(update(Listing).where(Listing.id == listing_id)
                              .values(price_fen=price))
        if product_id is not None:
            product = await _product(session, product_id)
            if product is not None:
                await _clear_rejections(session, task.shop_id, product, ("price",), rt.now())
    return None


# -- shelve ---------------------------------------------------------------------------------------
async def _send_shelve(rt: Runtime, connector: Connector, task: Claimed) -> Exception | None:
    item = str(task.payload["item"])
    on_sale = bool(task.payload["on_sale"])
    async with rt.sessions() as session:
        rows = list((await session.scalars(select(Listing).where(
            Listing.shop_id == task.shop_id, Listing.platform_item_id == item))).all())
        product_id = await session.scalar(select(Sku.product_id).where(
            Sku.id.in_([r.sku_id for r in rows if r.sku_id is not None])).limit(1))
    if not rows:
        return NotFound(f"no listing of item {item}")
    try:
        await connector.set_on_sale(item, on_sale)
    except Rejected as exc:
        if product_id is not None:
            await _refused(rt, task.shop_id, product_id, [r.id for r in rows], "shelve", exc)
        return exc
    except ErpsyncError as exc:
        return exc
    async with transaction(rt.sessions) as session:
        await session.execute(update(Listing).where(
            Listing.shop_id == task.shop_id, Listing.platform_item_id == item)
            .values(on_sale=on_sale))
        if product_id is not None:
            product = await _product(session, product_id)
            if product is not None:
                await _clear_rejections(session, task.shop_id, product, ("shelve",), rt.now())
    return None


# -- refusals -------------------------------------------------------------------------------------
def _subject(shop: str, product: Product) -> str:
    return f"{shop}:{product.merchant_code}"


async def _refused(rt: Runtime, shop_id: int, product_id: int, listing_ids: Sequence[int],
                   operation: str, error: Rejected) -> None:
    """Keep the platform's own words on the listing and tell the operator."""
    shop = rt.shop_name(shop_id)
    reason = error.platform_message or str(error)
    now = rt.now()
    async with transaction(rt.sessions) as session:
        product = await _product(session, product_id)
        if product is None:
            return
        await session.execute(update(Listing).where(Listing.id.in_(list(listing_ids)))
                              .values(rejection=f"{operation}: {reason}"[:4000]))
        subject = _subject(shop, product)
        message = f"{shop} refused the {operation} of {product.merchant_code}: {reason}"
        details = {"shop": shop, "product": product.merchant_code, "operation": operation,
                   "reason": error.reason, "code": error.code}
        if not await open_alert(session, "listing_rejected", subject, message, now, details):
            await session.execute(update(Alert).where(
                Alert.open_key == f"listing_rejected:{subject}").values(
                message=message, details=details))


async def _clear_rejections(session: AsyncSession, shop_id: int, product: Product,
                            operations: tuple[str, ...], now: datetime) -> None:
    """Clear the refusals this success answers: a listing update carries the prices too; a
    price or a shelf change answers only its own."""
    rows = await product_rows(session, shop_id, product)
    for row in rows:
        if row.rejection and row.rejection.split(":", 1)[0] in operations:
            row.rejection = ""
    await session.flush()
    if not any(r.rejection for r in rows):
        shop = await session.get(Shop, shop_id)
        if shop is not None:
            await resolve_alert(session, "listing_rejected", _subject(shop.name, product), now)
