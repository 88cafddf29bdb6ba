"""Listing plans against the Taobao sandbox: plan → push → plan again shows no change and a
second push sends nothing; updates are shown field by field; price-only drift goes as price
calls; the catalogue's shelf wish is applied; a product failing the rules is never sent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from connectors.taobao.sandbox import TaobaoSandbox
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.clock import ManualClock
from core.db import transaction
from core.listing_plan import NOT_PUSHED, FieldChange, plan_listings, push_listings
from core.listings import pull_listings
from core.model import Listing, Sku
from core.runtime import Runtime


def image(tmp_path: Path, width: int, height: int) -> str:
    path = tmp_path / f"{width}x{height}.png"
    if not path.exists():
        Image.new("RGB", (width, height), "white").save(path)
    return str(path)


def mug(tmp_path: Path, **changes: Any) -> ProductSpec:
    """Passes every Taobao rule; attribute values are Taobao value ids (vids)."""
    spec = ProductSpec(
        merchant_code="MUG", title="陶瓷马克杯 办公室咖啡杯",
        skus=(SkuSpec("MUG-W", 3900, {"颜色": "白色"}), SkuSpec("MUG-B", 4900, {"颜色": "黑色"})),
        categories={"taobao": "121412004"},
        attributes={"品牌": "3246379", "材质": "3323086", "容量": "3267945", "风格": "3226292"},
        images=(image(tmp_path, 800, 800),), detail_images=(image(tmp_path, 750, 1500),),
        description="釉下彩陶瓷马克杯，可用洗碗机")
    return replace(spec, **changes)


async def catalogue(rt: Runtime, *specs: ProductSpec, stock: dict[str, int] | None = None) -> None:
    async with transaction(rt.sessions) as session:
        for spec in specs:
            await upsert_product(session, spec, rt.now())
        for code, quantity in (stock or {}).items():
            sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
            assert sku is not None
            await rt.pool.change_on_hand(session, sku.id, "MAIN", quantity, kind="receipt",
                                         reason="test", reference="test", now=rt.now())


def actions(plans: list[Any]) -> list[tuple[str, str, str]]:
    return [(p.shop, a.action, a.product) for p in plans for a in p.actions]


@pytest.fixture
def sandbox(clock: ManualClock) -> TaobaoSandbox:
    return TaobaoSandbox(clock=clock)


async def test_plan_push_then_nothing_left(tmp_path: Path, db_url: str, make_runtime: Any,
                                           sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(db_url, {"tb": sandbox})
    await catalogue(rt, mug(tmp_path), stock={"MUG-W": 10, "MUG-B": 4})
    [plan] = await plan_listings(rt)
    [create] = plan.actions
    assert (create.action, create.product, create.item, create.blocked) == ("create", "MUG", "",
                                                                            False)
    assert create.changes == [
        FieldChange("title", "", "陶瓷马克杯 办公室咖啡杯"), FieldChange("category", "", "121412004"),
        FieldChange("price", "", "39.00–49.00"), FieldChange("skus", "", "MUG-W, MUG-B")]

    report = await push_listings(rt)
    assert report.queued == {"listing": 1} and report.stats is not None
    assert report.stats.sent == 1 and report.stats.failed == 0
    [item] = sandbox.items.values()
    assert (item.title, item.outer_id, item.category_id, item.on_sale) == (
        "陶瓷马克杯 办公室咖啡杯", "MUG", "121412004", True)
    # sale properties went as Taobao ids; quantities are the pool's
    assert {s.outer_id: (s.spec, s.quantity, s.price_fen) for s in item.skus} == {
        "MUG-W": ({"1627207": "28320"}, 10, 3900), "MUG-B": ({"1627207": "28341"}, 4, 4900)}
    async with rt.sessions() as session:
        rows = (await session.scalars(select(Listing).order_by(Listing.id))).all()
        assert [(r.platform_item_id, r.merchant_code, r.sku_id is not None, r.rejection)
                for r in rows] == [(item.item_id, "MUG-W", True, ""),
                                   (item.item_id, "MUG-B", True, "")]

    assert actions(await plan_listings(rt)) == []
    requests = len(sandbox.requests)
    again = await push_listings(rt)
    assert again.queued == {} and len(sandbox.requests) == requests  # nothing sent

    # a pull reads back what was pushed: still nothing to do, nothing drifts
    stats = await pull_listings(rt, "tb")
    assert (stats.bound, stats.unbound, stats.drift) == (2, [], [])
    assert actions(await plan_listings(rt)) == []


async def test_update_is_shown_field_by_field(tmp_path: Path, db_url: str, make_runtime: Any,
                                              sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(db_url, {"tb": sandbox})
    await catalogue(rt, mug(tmp_path), stock={"MUG-W": 10, "MUG-B": 4})
    await push_listings(rt)
    changed = mug(tmp_path, title="陶瓷马克杯 大容量咖啡杯",
                  attributes={**mug(tmp_path).attributes, "风格": "3226293"},
                  skus=(*mug(tmp_path).skus, SkuSpec("MUG-R", 4900, {"颜色": "红色"})))
    await catalogue(rt, changed, stock={"MUG-R": 3})
    [plan] = await plan_listings(rt)
    [update] = plan.actions
    assert update.action == "update" and update.item
    assert update.changes == [
        FieldChange("title", "陶瓷马克杯 办公室咖啡杯", "陶瓷马克杯 大容量咖啡杯"),
        FieldChange("skus", "MUG-B, MUG-W", "MUG-B, MUG-R, MUG-W"),
        FieldChange("attributes", "品牌=3246379; 容量=3267945; 材质=3323086; 风格=3226292",
                    "品牌=3246379; 容量=3267945; 材质=3323086; 风格=3226293"),
        FieldChange("spec", "MUG-W=颜色=白色; MUG-B=颜色=黑色",
                    "MUG-W=颜色=白色; MUG-B=颜色=黑色; MUG-R=颜色=红色")]
    await push_listings(rt)
    [item] = sandbox.items.values()
    assert item.title == "陶瓷马克杯 大容量咖啡杯"
    assert {s.outer_id: s.quantity for s in item.skus} == {"MUG-W": 10, "MUG-B": 4, "MUG-R": 3}
    assert len(sandbox.calls("taobao.item.update")) == 1
    assert actions(await plan_listings(rt)) == []


async def test_a_listing_bound_by_pull_is_first_asserted_whole(
        tmp_path: Path, sqlite_url: str, make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    """Fields the platform does not read back are unknown until erpsync has pushed them."""
    sandbox.add_item("马克杯", "MUG-W", 3900, quantity=5, category_id="121412004")
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await catalogue(rt, mug(tmp_path, skus=(SkuSpec("MUG-W", 3900),)), stock={"MUG-W": 5})
    await pull_listings(rt, "tb")
    [plan] = await plan_listings(rt)
    [update] = plan.actions
    assert [c.field for c in update.changes] == [
        "title", "category", "description", "attributes", "images", "spec"]
    assert {c.before for c in update.changes[1:]} == {NOT_PUSHED}
    await push_listings(rt)
    assert actions(await plan_listings(rt)) == []


async def test_price_drift_on_the_platform_goes_as_price_calls(
        tmp_path: Path, db_url: str, make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(db_url, {"tb": sandbox})
    await catalogue(rt, mug(tmp_path), stock={"MUG-W": 10, "MUG-B": 4})
    await push_listings(rt)
    _, sku = sandbox.find_sku("MUG-B")
    assert sku is not None
    sku.price_fen = 4500  # someone edited the price in the seller centre
    await pull_listings(rt, "tb")
    [plan] = await plan_listings(rt)
    [update] = plan.actions
    assert update.changes == [FieldChange("price MUG-B", "45.00", "49.00")] and update.price_only
    report = await push_listings(rt)
    assert report.queued == {"price": 1}
    assert sku.price_fen == 4900
    assert len(sandbox.calls("taobao.item.sku.update")) == 1
    assert len(sandbox.calls("taobao.item.update")) == 0
    assert actions(await plan_listings(rt)) == []


async def test_the_catalogue_decides_the_shelf(tmp_path: Path, sqlite_url: str,
                                               make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await catalogue(rt, mug(tmp_path), stock={"MUG-W": 10, "MUG-B": 4})
    await push_listings(rt)
    [item] = sandbox.items.values()

    await catalogue(rt, mug(tmp_path, on_sale=False))
    [plan] = await plan_listings(rt)
    assert [(a.action, a.changes) for a in plan.actions] == [
        ("unshelve", [FieldChange("on_sale", "true", "false")])]
    assert (await push_listings(rt)).queued == {"shelve": 1}
    assert not item.on_sale
    assert actions(await plan_listings(rt)) == []

    await catalogue(rt, mug(tmp_path))
    assert actions(await plan_listings(rt)) == [("tb", "shelve", "MUG")]
    await push_listings(rt)
    assert item.on_sale
    assert actions(await plan_listings(rt)) == []


async def test_a_product_off_sale_in_the_catalogue_is_created_off_sale(
        tmp_path: Path, sqlite_url: str, make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await catalogue(rt, mug(tmp_path, on_sale=False), stock={"MUG-W": 10, "MUG-B": 4})
    [plan] = await plan_listings(rt)
    assert plan.actions[0].note == "created, then taken off sale (the catalogue says off)"
    await push_listings(rt)
    [item] = sandbox.items.values()
    assert not item.on_sale
    assert actions(await plan_listings(rt)) == []


async def test_a_product_failing_the_rules_is_never_sent(
        tmp_path: Path, sqlite_url: str, make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    bad = mug(tmp_path, merchant_code="BAD", title="全网最低价马克杯",
              skus=(SkuSpec("BAD-1", 3900),), images=(image(tmp_path, 640, 640),))
    await catalogue(rt, bad, mug(tmp_path), stock={"MUG-W": 1, "MUG-B": 1, "BAD-1": 1})
    [plan] = await plan_listings(rt)
    blocked = {a.product: [str(p.code) for p in a.problems] for a in plan.actions}
    assert blocked == {"BAD": ["BANNED_WORD", "BANNED_WORD", "IMAGE_TOO_SMALL"], "MUG": []}
    report = await push_listings(rt)
    assert report.blocked == 1 and report.queued == {"listing": 1}
    assert [i.outer_id for i in sandbox.items.values()] == ["MUG"]


async def test_products_without_a_category_for_the_platform_are_left_alone(
        tmp_path: Path, sqlite_url: str, make_runtime: Any, sandbox: TaobaoSandbox,
        seed_pool: Any) -> None:
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 5, 3900)])
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await seed_pool(rt, {"MUG": 5})  # a catalogue entry with no Taobao category
    assert actions(await plan_listings(rt)) == []


async def test_a_new_listing_gets_its_share_of_the_pool_in_strict_mode(
        tmp_path: Path, sqlite_url: str, make_runtime: Any, clock: ManualClock) -> None:
    first, second = TaobaoSandbox(clock=clock), TaobaoSandbox(clock=clock, seed=2)
    rt = await make_runtime(sqlite_url, {"tb": first, "tb2": second}, mode="strict")
    await catalogue(rt, mug(tmp_path, skus=(SkuSpec("MUG-W", 3900, {"颜色": "白色"}),)),
                    stock={"MUG-W": 9})
    await push_listings(rt)
    # created with 0 (no share exists before the listing is bound), then the pool is split
    quantities = [sb.stock_of("MUG-W") for sb in (first, second)]
    assert sum(quantities) == 9 and min(quantities) >= 4
    assert actions(await plan_listings(rt)) == []


async def test_the_draft_is_checked_again_when_sent(
        tmp_path: Path, sqlite_url: str, make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    """Queued while clean, the catalogue gains a banned word before the send: nothing goes."""
    from core.senders import OutboxWorker

    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await catalogue(rt, mug(tmp_path), stock={"MUG-W": 1, "MUG-B": 1})
    assert (await push_listings(rt, send=False)).queued == {"listing": 1}
    await catalogue(rt, mug(tmp_path, title="顶级陶瓷马克杯"))
    stats = await OutboxWorker(rt).drain()
    assert stats.failed == 1 and sandbox.calls("taobao.item.add") == []
    async with rt.sessions() as session:
        # a local refusal is not the platform's: no platform reason is stored
        assert {r.rejection for r in (await session.scalars(select(Listing))).all()} == {""}


async def test_a_creation_the_platform_already_holds_becomes_an_update(
        tmp_path: Path, sqlite_url: str, make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    """A creation whose answer was lost: the next pull binds the item the platform made, so
    the queued creation is sent as an update and the placeholder merges into the real row."""
    from core.senders import OutboxWorker

    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    lamp = mug(tmp_path, merchant_code="LAMP", title="北欧风护眼台灯",
               skus=(SkuSpec("LAMP", 19900),))
    await catalogue(rt, lamp, stock={"LAMP": 5})
    await push_listings(rt, send=False)
    item = sandbox.add_item("北欧风护眼台灯", "LAMP", 19900, quantity=5,
                            category_id="121412004")
    await pull_listings(rt, "tb", correct=False)
    await OutboxWorker(rt).drain()
    assert sandbox.calls("taobao.item.add") == [] and len(sandbox.calls("taobao.item.update")) == 1
    assert list(sandbox.items) == [item.item_id]
    async with rt.sessions() as session:
        rows = (await session.scalars(select(Listing))).all()
        assert [(r.platform_item_id, r.merchant_code, r.pushed_content != {}) for r in rows] == [
            (item.item_id, "LAMP", True)]
    assert actions(await plan_listings(rt)) == []


async def test_a_connector_without_the_capability_is_refused_plainly(
        sqlite_url: str, make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    from core.errors import Rejected
    from core.listing_senders import send
    from core.outbox import Claimed

    rt = await make_runtime(sqlite_url, {"tb": sandbox})

    class ReadOnly:
        platform = "readonly"
        capabilities: frozenset[str] = frozenset()

    for kind in ("listing", "price", "shelve"):
        task = Claimed(1, kind, rt.shop_ids["tb"], "x", {}, 1, 0)
        error = await send(rt, ReadOnly(), task)  # type: ignore[arg-type]
        assert isinstance(error, Rejected) and error.reason == "unsupported"
    error = await send(rt, ReadOnly(), Claimed(1, "ship", 1, "x", {}, 1, 0))  # type: ignore[arg-type]
    assert isinstance(error, Rejected)
