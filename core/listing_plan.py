"""Listing plans: what `erpsync listings push` would change on each shop, and doing it.

For every enabled shop and every product the catalogue manages there (a product is managed
on a platform when it has a category for it; others are left as the platform has them,
bound for stock only), the plan says one of:

    create    the shop has none of the product's SKUs yet
    update    field by field: title and prices against what the platform last showed,
              SKUs the item lacks, and category/attributes/images/description/spec against
              what erpsync last had accepted (`Listing.pushed_content`)
    shelve    on sale (上架): the catalogue wants it on sale and it is off
    unshelve  off sale (下架): the catalogue says off, or a scheduled time is still ahead

A product with validation problems (`core.listing_rules`) is shown with them and is not
pushed: a banned word never reaches a platform. A platform's last refusal
(`Listing.rejection`) is shown beside the action until a push succeeds.

Pushing queues outbox rows (kinds "listing", "price", "shelve") in one transaction, then
sends them. Idempotence: once sent, the rows hold what the platform accepted, so the next
plan finds no difference and the next push sends nothing; a change already waiting in the
outbox (same content fingerprint, same price, same shelf state) is not queued twice. Drafts
are built when sent, from the catalogue as it is then, so the newest content is what goes.
Scheduled rows (`publish_at`) belong to `fire_scheduled_listings`: the plan never shelves a
listing whose time has come, so the scheduler's single shelve call stays single.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.catalog import ProductSpec, load_products, spec_of
from core.clock import format_beijing
from core.config import ShopConfig
from core.db import transaction
from core.listing_rules import (
    ImageInspector,
    ListingRules,
    Problem,
    map_properties,
    validate_product,
)
from core.listings import (
    OPEN_STATES,
    PLACEHOLDER_ITEM,
    ensure_placeholders,
    next_listing_version,
    product_rows,
    queue_price_updates,
    queue_shelve,
)
from core.model import Listing, OutboxTask, Product
from core.money import fen_to_yuan
from core.outbox import enqueue
from core.records import Capability, DraftSku, ListingDraft
from core.runtime import Runtime
from core.senders import SendStats

NOT_PUSHED = "(not pushed by erpsync)"
LISTING_KINDS = ("listing", "price", "shelve")


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: str
    after: str


@dataclass(slots=True)
class ListingAction:
    shop: str
    shop_id: int
    product: str
    product_id: int
    action: str  # create, update, shelve, unshelve
    item: str = ""
    changes: list[FieldChange] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rejection: str = ""
    note: str = ""
    queued: bool = False  # the same change is already waiting in the outbox
    fingerprint: str = ""
    repriced_skus: list[int] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return bool(self.problems)

    @property
    def price_only(self) -> bool:
        return bool(self.changes) and all(c.field.startswith("price ") for c in self.changes)


@dataclass(slots=True)
class ShopPlan:
    shop: str
    platform: str
    actions: list[ListingAction] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ValidationEntry:
    shop: str  # "" for products no selected shop manages: the platform-independent checks
    platform: str
    product: str
    problems: tuple[Problem, ...]
    rejection: str = ""


@dataclass(slots=True)
class PushReport:
    plans: list[ShopPlan] = field(default_factory=list)
    queued: dict[str, int] = field(default_factory=dict)
    blocked: int = 0
    stats: SendStats | None = None


# -- content ------------------------------------------------------------------------------------
def listing_content(spec: ProductSpec, platform: str) -> dict[str, Any]:
    """The fields a platform does not read back, as they are sent; stored once accepted.
    Detail images are not here: the canonical draft has no field for them (they are
    checked, not sent)."""
    content: dict[str, Any] = _plain({
        "category": spec.categories.get(platform, ""),
        "description": spec.description,
        "attributes": {str(k): str(v) for k, v in sorted(spec.attributes.items())},
        "images": list(spec.images),
        "spec": {s.merchant_code: dict(sorted(s.spec.items())) for s in spec.skus},
    })
    return content


def fingerprint(spec: ProductSpec, platform: str) -> str:
    whole = {"content": listing_content(spec, platform), "title": spec.title,
             "prices": {s.merchant_code: s.price_fen for s in spec.skus}}
    return hashlib.sha256(json.dumps(whole, sort_keys=True, ensure_ascii=False).encode()
                          ).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """What JSON storage gives back (lists, not tuples), so stored and fresh compare equal."""
    return json.loads(json.dumps(value, ensure_ascii=False))


def build_draft(spec: ProductSpec, platform: str, rules: ListingRules, item: str | None,
                quantities: Mapping[str, int]) -> ListingDraft:
    """The canonical draft. A product with one SKU and no spec is an item without SKUs on
    the platform, whose outer id is the SKU's code: that is what binding by merchant code
    finds again on the next pull."""
    single = len(spec.skus) == 1 and not spec.skus[0].spec
    attributes = {str(k): str(v) for k, v in spec.attributes.items() if str(v).strip()}
    return ListingDraft(
        merchant_code=spec.skus[0].merchant_code if single else spec.merchant_code,
        title=spec.title, category_id=spec.categories.get(platform, ""),
        # the lowest SKU price: platforms keep the item price inside the SKU price range
        price_fen=min(s.price_fen for s in spec.skus),
        skus=tuple(DraftSku(s.merchant_code, s.price_fen, quantities.get(s.merchant_code, 0),
                            map_properties(rules, platform, dict(s.spec))[0])
                   for s in spec.skus),
        description=spec.description, images=tuple(spec.images),
        attributes=map_properties(rules, platform, attributes)[0], platform_item_id=item)


def primary_item(rows: Sequence[Listing]) -> str | None:
    """The platform item holding most of the product's SKUs (ties: the lowest row id). One
    product is one item per shop; SKUs found on another item are left as they are."""
    counts: dict[str, tuple[int, int]] = {}
    for row in rows:
        if row.platform_item_id == PLACEHOLDER_ITEM or row.sku_id is None:
            continue
        have, first = counts.get(row.platform_item_id, (0, row.id))
        counts[row.platform_item_id] = (have + 1, min(first, row.id))
    if not counts:
        return None
    return min(counts, key=lambda item: (-counts[item][0], counts[item][1]))


# -- planning -----------------------------------------------------------------------------------
def selected_shops(rt: Runtime, shops: Sequence[str] | None) -> list[ShopConfig]:
    wanted = set(shops) if shops is not None else None
    return [s for s in rt.enabled_shops() if wanted is None or s.name in wanted]


@dataclass(slots=True)
class _State:
    products: list[Product]
    rows: dict[int, list[Listing]]  # shop id -> rows
    tasks: dict[tuple[str, str], dict[str, Any]]  # (kind, dedup key) -> payload of open rows


async def _load(rt: Runtime, shop_ids: Sequence[int]) -> _State:
    async with rt.sessions() as session:
        products = await load_products(session)
        rows: dict[int, list[Listing]] = {sid: [] for sid in shop_ids}
        for row in (await session.scalars(select(Listing).where(
                Listing.shop_id.in_(list(shop_ids))).order_by(Listing.id))).all():
            rows[row.shop_id].append(row)
        tasks = {(t.kind, t.dedup_key): dict(t.payload) for t in (await session.scalars(
            select(OutboxTask).where(OutboxTask.kind.in_(LISTING_KINDS),
                                     OutboxTask.state.in_(OPEN_STATES),
                                     OutboxTask.shop_id.in_(list(shop_ids))))).all()}
    return _State(products, rows, tasks)


async def plan_listings(rt: Runtime, shops: Sequence[str] | None = None) -> list[ShopPlan]:
    rules = ListingRules.from_toml(rt.rules_data)
    images = ImageInspector()
    chosen = selected_shops(rt, shops)
    state = await _load(rt, [rt.shop_ids[s.name] for s in chosen])
    now = rt.now()
    plans = []
    for shop in chosen:
        plan = ShopPlan(shop.name, shop.platform)
        capabilities = rt.registry.connector(shop.platform).capabilities
        if Capability.UPSERT_LISTING not in capabilities:
            plan.notes.append(f"the {shop.platform} connector cannot create or update "
                              "listings: only prices and shelf state are planned")
        shop_id = rt.shop_ids[shop.name]
        for product in state.products:
            if shop.platform not in product.categories:
                continue
            plan.actions += _plan_product(shop, shop_id, product, state, rules, images,
                                          capabilities, now)
        plans.append(plan)
    return plans


def _plan_product(shop: ShopConfig, shop_id: int, product: Product, state: _State,
                  rules: ListingRules, images: ImageInspector,
                  capabilities: frozenset[Capability], now: datetime) -> list[ListingAction]:
    spec = spec_of(product)
    platform = shop.platform
    sku_ids = {s.id: s for s in product.skus}
    codes = {s.merchant_code for s in product.skus}
    shop_rows = state.rows[shop_id]
    bound = [r for r in shop_rows if r.sku_id in sku_ids and r.platform_item_id != PLACEHOLDER_ITEM]
    holders = [r for r in shop_rows
               if r.platform_item_id == PLACEHOLDER_ITEM and r.platform_sku_id in codes]
    problems = validate_product(spec, platform, rules, images)
    print_ = fingerprint(spec, platform)

    def make(action: str, item: str = "", **extra: Any) -> ListingAction:
        return ListingAction(shop.name, shop_id, product.merchant_code, product.id, action,
                             item, problems=list(problems), fingerprint=print_, **extra)

    listing_task = state.tasks.get(("listing", f"product:{shop_id}:{product.id}"))
    queued = listing_task is not None and listing_task.get("fingerprint") == print_
    item = primary_item(bound)
    if item is None:
        if Capability.UPSERT_LISTING not in capabilities:
            return []
        action = make("create", rejection=_rejection(holders), queued=queued)
        prices = sorted({s.price_fen for s in spec.skus})
        action.changes = [
            FieldChange("title", "", spec.title),
            FieldChange("category", "", spec.categories.get(platform, "")),
            FieldChange("price", "", "–".join(fen_to_yuan(p) for p in (prices[0], prices[-1]))
                        if len(prices) > 1 else fen_to_yuan(prices[0]) if prices else ""),
            FieldChange("skus", "", ", ".join(s.merchant_code for s in spec.skus)),
        ]
        scheduled = [r.publish_at for r in holders if r.publish_at is not None]
        if not spec.on_sale:
            action.note = "created, then taken off sale (the catalogue says off)"
        elif scheduled and min(scheduled) > now:
            action.note = f"created, then off sale until {format_beijing(min(scheduled))}"
        return [action]

    rows = [r for r in bound if r.platform_item_id == item]
    actions: list[ListingAction] = []
    update = make("update", item, rejection=_rejection(rows))
    if rows[0].title != spec.title:
        update.changes.append(FieldChange("title", rows[0].title, spec.title))
    in_flight_prices = 0
    for row in rows:
        sku = sku_ids[row.sku_id] if row.sku_id is not None else None
        if sku is None or row.price_fen == sku.price_fen:
            continue
        waiting = state.tasks.get(("price", f"listing:{row.id}"))
        if waiting is not None and int(waiting["price_fen"]) == sku.price_fen:
            in_flight_prices += 1
            continue
        update.changes.append(FieldChange(f"price {sku.merchant_code}",
                                          fen_to_yuan(row.price_fen), fen_to_yuan(sku.price_fen)))
        update.repriced_skus.append(sku.id)
    on_item = [sku_ids[r.sku_id].merchant_code for r in rows if r.sku_id is not None]
    if set(on_item) != codes:
        update.changes.append(FieldChange("skus", ", ".join(sorted(on_item)),
                                          ", ".join(sorted(codes))))
    pushed = next((r.pushed_content for r in rows if r.pushed_content), {})
    for key, value in listing_content(spec, platform).items():
        if pushed.get(key) != value:
            update.changes.append(FieldChange(
                key, _render(pushed[key]) if key in pushed else NOT_PUSHED, _render(value)))
    if in_flight_prices:
        update.note = f"{in_flight_prices} price change(s) already queued"
    if Capability.UPSERT_LISTING not in capabilities:
        # prices can still follow the catalogue where the platform lets us set them
        update.changes = [c for c in update.changes if c.field.startswith("price ")
                          and Capability.SET_PRICE in capabilities]
    if update.changes:
        update.queued = queued and not update.price_only
        actions.append(update)
    if Capability.SHELVE in capabilities:
        shelf = _plan_shelf(spec, rows, item, state, make, now, shop_id)
        if shelf is not None:
            actions.append(shelf)
    return actions


def _plan_shelf(spec: ProductSpec, rows: list[Listing], item: str, state: _State,
                make: Callable[..., ListingAction], now: datetime,
                shop_id: int) -> ListingAction | None:
    schedule = [r.publish_at for r in rows if r.publish_at is not None]
    if schedule and min(schedule) <= now:
        return None  # due: fire_scheduled_listings shelves it, once
    want = spec.on_sale and not schedule
    have = any(r.on_sale for r in rows)
    if want == have:
        return None
    action = make("shelve" if want else "unshelve", item, rejection=_rejection(rows))
    action.problems = []  # the shelf state does not depend on the listing's content
    action.changes = [FieldChange("on_sale", str(have).lower(), str(want).lower())]
    waiting = state.tasks.get(("shelve", f"item:{shop_id}:{item}"))
    action.queued = waiting is not None and bool(waiting["on_sale"]) == want
    if schedule:
        action.note = f"scheduled: on sale at {format_beijing(min(schedule))}"
    elif want and sum(r.queued_quantity if r.queued_quantity is not None
                      else r.platform_quantity for r in rows) <= 0:
        action.note = "sold out: it stays off sale until stock arrives"
        return None
    return action


def _rejection(rows: Sequence[Listing]) -> str:
    return "; ".join(dict.fromkeys(r.rejection for r in rows if r.rejection))


def _render(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}={_render(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list):
        return "; ".join(_render(v) for v in value) or "(none)"
    return str(value) if value != "" else "(empty)"


# -- validation ---------------------------------------------------------------------------------
async def validate_listings(rt: Runtime, shops: Sequence[str] | None = None
                            ) -> list[ValidationEntry]:
    """Problems of every product on every selected shop that manages it, and each shop's
    last refusal. Products no selected shop manages get the platform-independent checks
    (only when no shop was named)."""
    rules = ListingRules.from_toml(rt.rules_data)
    images = ImageInspector()
    chosen = selected_shops(rt, shops)
    state = await _load(rt, [rt.shop_ids[s.name] for s in chosen])
    entries: list[ValidationEntry] = []
    for product in state.products:
        spec = spec_of(product)
        managed = False
        for shop in chosen:
            if shop.platform not in product.categories:
                continue
            managed = True
            shop_id = rt.shop_ids[shop.name]
            rows = _rows_of(state, shop_id, product)
            entries.append(ValidationEntry(
                shop.name, shop.platform, product.merchant_code,
                tuple(validate_product(spec, shop.platform, rules, images)), _rejection(rows)))
        if not managed and shops is None:
            entries.append(ValidationEntry("", "", product.merchant_code,
                                           tuple(validate_product(spec, "", rules, images))))
    return [e for e in entries if e.problems or e.rejection]


def _rows_of(state: _State, shop_id: int, product: Product) -> list[Listing]:
    ids = {s.id for s in product.skus}
    codes = {s.merchant_code for s in product.skus}
    return [r for r in state.rows[shop_id]
            if (r.sku_id in ids and r.platform_item_id != PLACEHOLDER_ITEM)
            or (r.platform_item_id == PLACEHOLDER_ITEM and r.platform_sku_id in codes)]


# -- pushing ------------------------------------------------------------------------------------
async def push_listings(rt: Runtime, shops: Sequence[str] | None = None, *,
                        send: bool = True) -> PushReport:
    """Queue every unblocked action of the plan, then (with `send`) send the outbox rows of
    these shops, the stock of newly created listings included."""
    from core.senders import OutboxWorker

    report = PushReport(plans=await plan_listings(rt, shops))
    now = rt.now()
    async with transaction(rt.sessions) as session:
        for plan in report.plans:
            for action in plan.actions:
                if action.blocked:
                    report.blocked += 1
                    continue
                if action.queued:
                    continue
                kind = await _queue(session, action, now)
                report.queued[kind] = report.queued.get(kind, 0) + 1
    if send:
        report.stats = await OutboxWorker(rt).drain(
            shops=[p.shop for p in report.plans], kinds=[*LISTING_KINDS, "stock"])
    return report


async def _queue(session: Any, action: ListingAction, now: datetime) -> str:
    if action.action in ("shelve", "unshelve"):
        await queue_shelve(session, shop_id=action.shop_id, item_id=action.item,
                           on_sale=action.action == "shelve", now=now, reason="listings push")
        return "shelve"
    if action.price_only:
        await queue_price_updates(session, action.repriced_skus, now, shop_ids=[action.shop_id])
        return "price"
    product = (await load_products(session, [action.product]))[0]
    if action.action == "create":
        await ensure_placeholders(session, action.shop_id, product, now)
    rows = await product_rows(session, action.shop_id, product)
    dedup = f"product:{action.shop_id}:{action.product_id}"
    version = await next_listing_version(session, min(r.id for r in rows), kind="listing",
                                         dedup_key=dedup)
    await enqueue(session, kind="listing", shop_id=action.shop_id, target=action.product,
                  dedup_key=dedup, version=version, now=now,
                  payload={"product_id": action.product_id, "product": action.product,
                           "item": action.item or None, "fingerprint": action.fingerprint})
    return "listing"
