"""Carrier rules (every branch, a per-shop override, the rule stored on the shipment),
partial shipments by platform capability, and the waybill import that checks every row
before it ships anything."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from connectors.jd.sandbox import JdSandbox
from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock
from core.db import transaction
from core.errors import ConfigError
from core.logistics import (
    CarrierChoice,
    ShippingError,
    ShippingRules,
    apply_shipments,
    choose_carrier,
    choose_carrier_for,
    plan_shipments,
    read_shipments_csv,
    ship,
)
from core.model import Order, OrderLine, OutboxTask, Shipment, Sku
from core.pull import pull_orders
from core.review import load_rules
from core.runtime import Runtime

ROOT = Path(__file__).resolve().parents[3]
RULES = load_rules(ROOT / "config" / "rules.toml")
ZHEJIANG = {"province": "浙江省", "city": "杭州市", "district": "西湖区", "detail": "文三路 100 号"}
XINJIANG = {"province": "新疆维吾尔自治区", "city": "乌鲁木齐市", "district": "天山区",
            "detail": "解放南路 21 号"}
GUANGDONG = {"province": "广东省", "city": "深圳市", "district": "南山区", "detail": "科技园路 1 号"}


# -- the rules, branch by branch ----------------------------------------------------------------
@pytest.mark.parametrize(("province", "bulky", "carrier", "rule"), [
    ("浙江省", False, "ZTO", "next_day_region"),
    ("江苏省", False, "ZTO", "next_day_region"),
    ("上海市", False, "ZTO", "next_day_region"),
    ("新疆维吾尔自治区", False, "YUNDA", "remote_region"),
    ("西藏自治区", False, "YUNDA", "remote_region"),
    ("内蒙古自治区", False, "YUNDA", "remote_region"),
    ("广东省", False, "YTO", "default"),
    ("", False, "YTO", "default"),  # platforms that hide the address (Dewu)
    # bulky parcels go by post whatever the region
    ("浙江省", True, "POSTB", "bulky"),
    ("新疆维吾尔自治区", True, "POSTB", "bulky"),
])
def test_each_rule_branch(province: str, bulky: bool, carrier: str, rule: str) -> None:
    choice = choose_carrier(RULES, province=province, bulky=bulky, shop="any-shop")
    assert (choice.carrier, choice.rule) == (carrier, rule)


def test_a_shop_override_replaces_one_carrier_and_says_so() -> None:
    rules = {**RULES, "carriers": {**RULES["carriers"],
                                   "shops": {"tb-flagship": {"next_day": "SF"}}}}
    assert choose_carrier(rules, province="浙江省", bulky=False, shop="tb-flagship") == \
        CarrierChoice("SF", "next_day_region/shop")
    # the shop's other slots, and other shops, keep the shared table
    assert choose_carrier(rules, province="广东省", bulky=False,
                          shop="tb-flagship").carrier == "YTO"
    assert choose_carrier(rules, province="浙江省", bulky=False, shop="tb-outlet").rule == \
        "next_day_region"


def test_shipping_rules_name_the_bad_key() -> None:
    rules = ShippingRules.from_rules(RULES)
    assert rules.stall_after == timedelta(hours=48)
    assert rules.ship_within == timedelta(hours=24)
    assert rules.ship_within_promo == timedelta(hours=48)
    assert rules.tracking_push_within == timedelta(hours=2)
    with pytest.raises(ConfigError, match=r"shipping\.stall_after: 'soon' is not a duration"):
        ShippingRules.from_rules({"shipping": {"stall_after": "soon"}})
    with pytest.raises(ConfigError, match=r"shipping\.stall_afterr: unknown key"):
        ShippingRules.from_rules({"shipping": {"stall_afterr": "48h"}})


# -- orders in a database ------------------------------------------------------------------------
def stocked(sandbox: Any) -> Any:
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 50, 3900)])
    sandbox.add_item("T恤", "TEE", 9900, skus=[("TEE", 50, 9900)])
    sandbox.add_item("坚果礼盒", "GIFT", 15900, skus=[("GIFT", 50, 15900)])
    return sandbox


async def shops(db_url: str, clock: ManualClock, make_runtime: Any,
                seed_pool: Any) -> tuple[Runtime, TaobaoSandbox, JdSandbox]:
    tb, jd = stocked(TaobaoSandbox(clock=clock)), stocked(JdSandbox(clock=clock))
    rt = await make_runtime(db_url, {"tb": tb, "jd": jd})
    await seed_pool(rt, {"MUG": 40, "TEE": 40, "GIFT": 40})
    async with transaction(rt.sessions) as session:
        await session.execute(update(Sku).where(Sku.merchant_code == "GIFT").values(bulky=True))
    return rt, tb, jd


async def pulled(rt: Runtime, clock: ManualClock) -> dict[str, int]:
    """Pull both shops; platform order id -> our order id."""
    clock.advance(timedelta(minutes=5))
    for shop in ("tb", "jd"):
        await pull_orders(rt, shop, since=clock.now() - timedelta(hours=1))
    async with rt.sessions() as session:
        return dict((await session.execute(select(Order.platform_order_id, Order.id))).all())


async def test_auto_choice_sees_bulky_skus_and_the_region(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, tb, _ = await shops(db_url, clock, make_runtime, seed_pool)
    near = tb.place_order([("MUG", 1)], address=ZHEJIANG)
    far = tb.place_order([("MUG", 1)], address=XINJIANG)
    gift = tb.place_order([("MUG", 1), ("GIFT", 1)], address=ZHEJIANG)
    ids = await pulled(rt, clock)
    async with rt.sessions() as session:
        near_choice = await choose_carrier_for(session, rt.rules_data,
                                               order_id=ids[near.order_id], shop="tb")
        far_choice = await choose_carrier_for(session, rt.rules_data,
                                              order_id=ids[far.order_id], shop="tb")
        gift_choice = await choose_carrier_for(session, rt.rules_data,
                                               order_id=ids[gift.order_id], shop="tb")
        order = await session.scalar(select(Order).where(Order.id == ids[gift.order_id]))
        assert order is not None
        await session.refresh(order, ["lines"])
        mug_line = next(line.id for line in order.lines if line.merchant_code == "MUG")
        # only the mug in this parcel: not bulky
        mug_only = await choose_carrier_for(session, rt.rules_data,
                                            order_id=ids[gift.order_id], line_ids=[mug_line],
                                            shop="tb")
    assert (near_choice.carrier, near_choice.rule) == ("ZTO", "next_day_region")
    assert (far_choice.carrier, far_choice.rule) == ("YUNDA", "remote_region")
    assert (gift_choice.carrier, gift_choice.rule) == ("POSTB", "bulky")
    assert (mug_only.carrier, mug_only.rule) == ("ZTO", "next_day_region")

    async with transaction(rt.sessions) as session:
        shipment = await ship(session, order_id=ids[gift.order_id], carrier=gift_choice.carrier,
                              tracking_number="9123456789012",
                              carriers=rt.connector("tb").carrier_table(), pool=rt.pool,
                              publisher=rt.publisher, now=rt.now(), rule=gift_choice.rule)
    async with rt.sessions() as session:
        stored = await session.get(Shipment, shipment.id)
        assert stored is not None and (stored.carrier, stored.carrier_rule) == ("POSTB", "bulky")


async def test_partial_shipments_only_where_the_platform_has_them(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, tb, jd = await shops(sqlite_url, clock, make_runtime, seed_pool)
    on_tb = tb.place_order([("MUG", 1), ("TEE", 1)], address=GUANGDONG)
    on_jd = jd.place_order([("MUG", 1), ("TEE", 1)], address=GUANGDONG)
    ids = await pulled(rt, clock)

    async def ship_first_line(order_id: int, shop: str, number: str, partial: bool) -> None:
        async with rt.sessions() as session:
            order = await session.get(Order, order_id)
            assert order is not None
            await session.refresh(order, ["lines"])
            first = order.lines[0].id
        async with transaction(rt.sessions) as session:
            await ship(session, order_id=order_id, carrier="YTO", tracking_number=number,
                       line_ids=[first], carriers=rt.connector(shop).carrier_table(),
                       pool=rt.pool, publisher=rt.publisher, now=rt.now(),
                       partial_ship=partial)

    await ship_first_line(ids[on_tb.order_id], "tb", "YT1234567890123", True)
    with pytest.raises(ShippingError, match="jd ships whole orders only"):
        await ship_first_line(ids[on_jd.order_id], "jd", "YT1234567890124", False)
    async with rt.sessions() as session:
        tb_order = await session.get(Order, ids[on_tb.order_id])
        assert tb_order is not None and tb_order.status != "shipped"  # one line still open
        assert await session.scalar(select(func.count()).select_from(Shipment)) == 1


async def test_one_order_cannot_carry_the_same_waybill_twice(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, tb, _ = await shops(sqlite_url, clock, make_runtime, seed_pool)
    placed = tb.place_order([("MUG", 1), ("TEE", 1)], address=GUANGDONG)
    ids = await pulled(rt, clock)
    async with rt.sessions() as session:
        order = await session.get(Order, ids[placed.order_id])
        assert order is not None
        await session.refresh(order, ["lines"])
        lines = [line.id for line in order.lines]
    for line in lines[:1], lines[1:]:
        try:
            async with transaction(rt.sessions) as session:
                await ship(session, order_id=order.id, carrier="YTO",
                           tracking_number="YT1234567890123", line_ids=line,
                           carriers=rt.connector("tb").carrier_table(), pool=rt.pool,
                           publisher=rt.publisher, now=rt.now())
        except ShippingError as exc:
            assert "already carries waybill YT1234567890123" in str(exc)
            break
    else:
        pytest.fail("the second parcel with the same waybill was accepted")


# -- import -------------------------------------------------------------------------------------
def test_reading_a_csv_checks_the_header_and_the_required_values() -> None:
    rows, problems = read_shipments_csv(
        "\ufefforder,carrier,tracking,lines,shop\n"
        "A1,zto,75123456789012,\"L1, L2\",tb\n"
        "\n"
        "A2,YTO,,,\n"
        "A3,YTO,YT1234567890123,L1;L2|L3,\n")
    assert [(r.line, r.order, r.carrier, r.lines, r.shop) for r in rows] == [
        (2, "A1", "ZTO", ("L1", "L2"), "tb"), (5, "A3", "YTO", ("L1", "L2", "L3"), "")]
    assert [str(p) for p in problems] == ["line 4: tracking is empty"]
    _, problems = read_shipments_csv("order,carrier,waybill\n")
    assert [str(p) for p in problems] == [
        "line 1: unknown column 'waybill' (columns: order, carrier, tracking, lines, shop)",
        "line 1: missing column 'tracking'"]


async def test_every_bad_row_is_reported_with_its_line_and_nothing_ships(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, tb, jd = await shops(sqlite_url, clock, make_runtime, seed_pool)
    good = tb.place_order([("MUG", 1)], address=GUANGDONG)
    two_lines = tb.place_order([("MUG", 1), ("TEE", 1)], address=GUANGDONG)
    on_jd = jd.place_order([("MUG", 1), ("TEE", 1)], address=GUANGDONG)
    jd_pair = jd.place_order([("MUG", 1), ("TEE", 1)], address=GUANGDONG)
    shipped = tb.place_order([("TEE", 1)], address=GUANGDONG)
    ids = await pulled(rt, clock)
    async with transaction(rt.sessions) as session:
        await ship(session, order_id=ids[shipped.order_id], carrier="YTO",
                   tracking_number="YT9999999999999", carriers=rt.connector("tb").carrier_table(),
                   pool=rt.pool, publisher=rt.publisher, now=rt.now())
    tb_lines = [line.line_id for line in two_lines.lines]
    async with rt.sessions() as session:  # JD names a line by its SKU id
        jd_line = await session.scalar(select(OrderLine.platform_line_id).where(
            OrderLine.order_id == ids[jd_pair.order_id]).order_by(OrderLine.id))
    # DHL has no code on JD: an unmapped carrier must be refused before anything ships
    assert "DHL" not in rt.connector("jd").carrier_table().canonical_codes()
    text = "\n".join([
        "order,carrier,tracking,lines,shop",
        f"{good.order_id},YTO,YT1000000000001,,",  # 2: fine
        "NOPE-1,YTO,YT1000000000002,,",  # 3: unknown order
        f"{shipped.order_id},YTO,YT1000000000003,,",  # 4: already shipped
        f"{two_lines.order_id},ACME,AC123,,",  # 5: unknown carrier
        f"{on_jd.order_id},DHL,1234567890,,jd",  # 6: carrier unmapped on JD
        f"{two_lines.order_id},ZTO,YT1000000000004,{tb_lines[0]},",  # 7: not a ZTO waybill
        f"{two_lines.order_id},YTO,YT1000000000001,{tb_lines[1]},",  # 8: waybill of line 2
        f"{jd_pair.order_id},YTO,YT1000000000005,{jd_line},",  # 9: JD ships whole orders
        f"{two_lines.order_id},YTO,YT1000000000006,{tb_lines[0]};NOLINE,",  # 10: no such line
        f"{good.order_id},YTO,YT1000000000007,,nosuchshop",  # 11: unknown shop
    ]) + "\n"
    rows, problems = read_shipments_csv(text)
    assert problems == []
    plan = await plan_shipments(rt, rows)
    messages: dict[int, str] = {}
    for found in plan.problems:
        messages[found.line] = messages.get(found.line, "") + f"{found}; "
    assert plan.bad_lines == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "unknown order 'NOPE-1'" in messages[3]
    assert "is already shipped" in messages[4]
    assert "unknown carrier 'ACME'" in messages[5]
    assert "carrier DHL is not mapped on jd" in messages[6]
    assert "does not look like a 中通快递 ZTO Express waybill" in messages[7]
    assert "waybill YT1000000000001 is also on line 2" in messages[8]
    # line 5 meant the whole order, so the parcels of lines 7 and 8 conflict with it
    assert f"order {two_lines.order_id} is also shipped on line 5" in messages[8]
    assert "jd ships whole orders only" in messages[9]
    assert "has no line NOLINE" in messages[10]
    assert "unknown shop 'nosuchshop'" in messages[11]
    assert [item.row.line for item in plan.ready] == [2]
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Shipment)) == 1

    # --skip-bad: the good row ships, with its push queued
    ids_shipped = await apply_shipments(rt, plan.ready)
    async with rt.sessions() as session:
        row = await session.get(Shipment, ids_shipped[0])
        assert row is not None
        assert (row.tracking_number, row.carrier_rule) == ("YT1000000000001", "import")
        assert await session.scalar(select(func.count()).select_from(OutboxTask).where(
            OutboxTask.kind == "ship")) == 2


async def test_an_import_ships_an_order_in_parcels_on_a_partial_platform(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, tb, jd = await shops(sqlite_url, clock, make_runtime, seed_pool)
    placed = tb.place_order([("MUG", 1), ("TEE", 1)], address=GUANGDONG)
    whole = jd.place_order([("MUG", 1), ("TEE", 1)], address=GUANGDONG)
    ids = await pulled(rt, clock)
    first, second = (line.line_id for line in placed.lines)
    rows, _ = read_shipments_csv(
        "order,carrier,tracking,lines\n"
        f"{placed.order_id},YTO,YT2000000000001,{first}\n"
        f"{placed.order_id},ZTO,75123456789012,{second}\n"
        f"{placed.order_id},ZTO,75123456789013,{second}\n"  # 4: that line is in line 3's parcel
        f"{whole.order_id},YTO,YT2000000000002,\n")
    plan = await plan_shipments(rt, rows)
    assert [str(p) for p in plan.problems] == [
        f"line 4: order {placed.order_id} is also shipped on line 3"]
    await apply_shipments(rt, plan.ready)
    async with rt.sessions() as session:
        order = await session.get(Order, ids[placed.order_id])
        assert order is not None and order.status == "shipped"
        parcels = (await session.execute(select(Shipment.tracking_number, Shipment.line_ids)
                                         .where(Shipment.order_id == order.id)
                                         .order_by(Shipment.id))).all()
        assert [p[0] for p in parcels] == ["YT2000000000001", "75123456789012"]
        assert all(len(p[1]) == 1 for p in parcels)
        jd_order = await session.get(Order, ids[whole.order_id])
        assert jd_order is not None and jd_order.status == "shipped"
