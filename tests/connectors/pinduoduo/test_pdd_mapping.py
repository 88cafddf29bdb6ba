"""Pinduoduo JSON -> canonical records: the shared samples' expected facts, our fixtures, one
test per status-table row."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.pinduoduo import PinduoduoConnector
from connectors.pinduoduo.client import RESPONSE_KEYS
from connectors.pinduoduo.mapping import (
    STATUS_TABLE,
    goods_from_detail,
    goods_from_information,
    listings_of,
    load_json,
    order_from_pdd,
    parcels,
    platform_status,
    shipped_at,
    token_set,
)
from connectors.pinduoduo.sandbox import PinduoduoSandbox
from core.clock import BEIJING, ManualClock
from core.errors import BadResponse, ConnectorError
from core.records import LineStatus, OrderStatus, TokenSet
from core.testing import connect

ROOT = Path(__file__).parents[3]
FIXTURES = ROOT / "connectors" / "pinduoduo" / "fixtures"
SAMPLES = ROOT.parent / "shared" / "reference" / "samples" / "pinduoduo"


def fixture(name: str) -> Any:
    return load_json((FIXTURES / name).read_bytes())


def sample(name: str) -> dict[str, Any]:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"shared sample {name} not present")
    data: dict[str, Any] = load_json(path.read_bytes())
    return data


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_aware(*moments: datetime | None) -> None:
    for moment in moments:
        assert moment is None or moment.utcoffset() is not None


# -- shared samples ------------------------------------------------------------------------
def check_order_sample(raw: dict[str, Any], expect: dict[str, Any]) -> None:
    record = order_from_pdd(raw)
    assert record.platform_order_id == expect["platform_order_id"]
    assert record.platform_status == f"{expect['platform_status']}/{expect['refund_status']}"
    assert record.status == OrderStatus(expect["status_class"])
    assert record.paid_fen == expect["total_paid_minor"]
    assert record.currency == expect["currency"]
    assert len(record.lines) == expect["line_count"]
    for line, want in zip(record.lines, expect["lines"], strict=True):
        assert (line.merchant_code or None) == want["merchant_sku"]  # "" stands for null
        assert line.platform_sku_id == want["platform_sku_id"]
        assert line.platform_item_id == want["platform_item_id"]
        assert line.quantity == want["quantity"]
        assert line.unit_price_fen == want["unit_price_minor"]
    assert record.address.province == expect["buyer_state"]
    assert record.address.city == expect["buyer_city"]
    assert record.created_at == iso(expect["created_at"])
    assert record.modified_at == iso(expect["modified_at"])
    if "paid_at" in expect:
        assert record.paid_at == iso(expect["paid_at"])
    if "tracking" in expect:
        assert parcels(raw) == [(str(expect["tracking"]["logistics_id"]),
                                 expect["tracking"]["tracking_number"])]
        assert record.tracking_numbers == (expect["tracking"]["tracking_number"],)
    if "shipped_at" in expect:
        assert shipped_at(raw) == iso(expect["shipped_at"])
    if "is_presale" in expect:
        assert all((line.presale_ship_by is not None) == expect["is_presale"]
                   for line in record.lines)
    assert_aware(record.created_at, record.modified_at, record.paid_at)


def test_sample_order_information_get() -> None:
    data = sample("order_information_get_2018.json")
    (expect,) = data["expect"]["orders"]
    check_order_sample(data["payload"]["order_info_get_response"]["order_info"], expect)


def test_sample_increment_list() -> None:
    data = sample("order_number_list_increment_get_2018.json")
    body = data["payload"]["order_sn_increment_get_response"]
    assert body["total_count"] == data["expect"]["total_count"]
    for raw, expect in zip(body["order_sn_list"], data["expect"]["orders"], strict=True):
        check_order_sample(raw, expect)


def test_sample_goods_detail_prices_are_already_fen() -> None:
    data = sample("goods_detail_get_fen_prices.json")
    (expect,) = data["expect"]["items"]
    goods = goods_from_detail(data["payload"]["goods_detail_get_response"])
    assert goods.goods_id == expect["item_id"]
    assert (goods.outer_goods_id or None) == expect["outer_id"]
    assert goods.market_price_fen == expect["market_price_minor"]
    assert len(goods.skus) == expect["sku_count"]
    for sku, want in zip(goods.skus, expect["skus"], strict=True):
        assert sku.sku_id == want["sku_id"]
        assert (sku.outer_id or None) == want["outer_id"]
        assert sku.quantity == want["quantity"]
        assert sku.single_price_fen == want["single_price_minor"]
        assert sku.group_price_fen == want["group_price_minor"]
        assert sku.on_sale is want["on_sale"]
    (listing,) = listings_of(goods)
    assert listing.price_fen == 6600  # group price, not scaled a second time
    assert listing.merchant_code == "0"


def test_sample_goods_information_prices_are_yuan_strings() -> None:
    data = sample("goods_information_get_skus.json")
    (expect,) = data["expect"]["items"]
    goods = goods_from_information(data["payload"]["goods_info_get_response"]["goods_info"])
    assert goods.goods_id == expect["item_id"]
    assert goods.quantity == expect["quantity"] == sum(s.quantity for s in goods.skus)
    assert goods.on_sale is expect["is_onsale"]
    assert len(goods.skus) == expect["sku_count"]
    for sku, want in zip(goods.skus, expect["skus"], strict=True):
        assert sku.sku_id == want["sku_id"]
        assert (sku.outer_id or None) == want["outer_id"]
        assert sku.quantity == want["quantity"]
        assert sku.group_price_fen == want["group_price_minor"]
        assert sku.single_price_fen == want["single_price_minor"]
        assert sku.on_sale is want["on_sale"]
    # the goods is off sale, so none of its SKUs sells whatever their own flag says
    assert not any(listing.on_sale for listing in listings_of(goods))


# -- our fixtures --------------------------------------------------------------------------
def test_increment_fixture_maps_money_lines_and_presale() -> None:
    body = fixture("order_number_list_increment_get.json")["order_sn_increment_get_response"]
    paid, refunded = (order_from_pdd(raw) for raw in body["order_sn_list"])

    assert paid.status is OrderStatus.PAID and paid.platform_status == "1/1"
    assert (paid.total_fen, paid.paid_fen, paid.post_fee_fen) == (13970, 13580, 610)
    assert paid.paid_at == datetime(2026, 11, 11, 0, 3, 10, tzinfo=BEIJING)
    assert [(ln.merchant_code, ln.quantity, ln.unit_price_fen, ln.paid_fen)
            for ln in paid.lines] == [("MUG-350-W", 3, 2990, 8970), ("", 1, 5000, 5000)]
    assert all(ln.status is LineStatus.OPEN for ln in paid.lines)
    assert all(ln.presale_ship_by == datetime(2026, 11, 20, 23, 59, 59, tzinfo=BEIJING)
               for ln in paid.lines)
    assert paid.address.name == "林**" and paid.address.phone == "159****8812"
    assert paid.address.detail == "科技园南区****"  # the mask, not the ciphertext
    assert paid.buyer_remark == "请用纸箱包装"
    assert paid.tracking_numbers == ()

    assert refunded.status is OrderStatus.REFUNDED and refunded.platform_status == "2/4"
    assert refunded.tracking_numbers == ("75312345678901", "75312345678902")
    assert all(ln.status is LineStatus.REFUNDED for ln in refunded.lines)
    assert refunded.lines[0].presale_ship_by is None
    assert refunded.seller_remark == "已拦截"
    assert_aware(paid.created_at, paid.modified_at, refunded.paid_at)


def test_information_fixture_is_a_shipped_order() -> None:
    raw = fixture("order_information_get.json")["order_info_get_response"]["order_info"]
    record = order_from_pdd(raw)
    assert record.status is OrderStatus.SHIPPED
    assert record.paid_fen == 8888
    assert record.tracking_numbers == ("SF1402938475610",)
    assert PinduoduoConnector.carriers.to_canonical(parcels(raw)[0][0]) == "SF"
    assert all(line.status is LineStatus.SHIPPED for line in record.lines)


def test_goods_detail_fixture_listings() -> None:
    detail = fixture("goods_detail_get.json")["goods_detail_get_response"]
    white, black = listings_of(goods_from_detail(detail))
    assert (white.platform_item_id, white.platform_sku_id) == ("412300001", "1203400011")
    assert (white.price_fen, white.quantity, white.on_sale) == (2990, 120, True)
    assert white.item_merchant_code == "MUG-350"
    assert (black.price_fen, black.on_sale) == (3090, False)
    single = listings_of(goods_from_detail(detail), price="single")
    assert [s.price_fen for s in single] == [3290, 3390]
    # the goods list says off sale: nothing sells
    assert not any(x.on_sale for x in listings_of(goods_from_detail(detail),
                                                  goods_on_sale=False))


def test_token_refresh_fixture_keeps_the_rotated_refresh_token() -> None:
    body = fixture("pop_auth_token_refresh.json")["pop_auth_token_refresh_response"]
    tokens = token_set(body, TokenSet("old", "old-refresh"))
    assert tokens.access_token == body["access_token"]
    assert tokens.refresh_token == body["refresh_token"]
    assert tokens.expires_at is not None and tokens.expires_at.timestamp() == 1794412800
    assert_aware(tokens.expires_at, tokens.refresh_expires_at)


# -- the status table ----------------------------------------------------------------------
def test_status_table_is_total_over_documented_statuses() -> None:
    combos = {f"{o}/{r}" for o in (1, 2, 3) for r in (1, 2, 3, 4)}
    assert combos | {"confirm_status=0", "confirm_status=2"} == set(STATUS_TABLE)
    assert PinduoduoConnector.status_table is STATUS_TABLE


def raw_for(key: str) -> dict[str, Any]:
    raw = fixture("order_information_get.json")["order_info_get_response"]["order_info"]
    if key.startswith("confirm_status="):
        return {**raw, "confirm_status": int(key.split("=")[1])}
    order_status, refund_status = key.split("/")
    return {**raw, "order_status": int(order_status), "refund_status": int(refund_status)}


@pytest.mark.parametrize(("key", "status"), sorted(STATUS_TABLE.items()))
def test_status_row(key: str, status: OrderStatus) -> None:
    raw = raw_for(key)
    assert platform_status(raw) == key
    record = order_from_pdd(raw)
    assert record.status is status
    assert record.platform_status == key


def test_unknown_status_is_a_bad_response_not_a_guess() -> None:
    raw = raw_for("1/1")
    with pytest.raises(BadResponse):
        order_from_pdd({**raw, "order_status": 0})


def test_float_money_is_refused() -> None:
    raw = raw_for("1/1")
    with pytest.raises(BadResponse):
        order_from_pdd({**raw, "pay_amount": 88.88})


# -- every fixture goes through the client -------------------------------------------------
@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_every_fixture_unwraps_or_maps_to_a_canonical_error(path: Path) -> None:


    body = fixture(path.name)
    (key,) = body
    connector = connect(PinduoduoConnector, PinduoduoSandbox(clock=ManualClock()))
    client = connector.client  # type: ignore[attr-defined]
    response = httpx.Response(200, content=path.read_bytes())
    if key == "error_response":
        with pytest.raises(ConnectorError):
            client.parse_response("pdd.order.information.get", response)
        return
    api = next(api for api, answer_key in RESPONSE_KEYS.items() if answer_key == key)
    assert client.parse_response(api, response) == body[key]


def test_goods_list_fixture_feeds_the_listing_join() -> None:
    summary = fixture("goods_list_get.json")["goods_list_get_response"]["goods_list"][0]
    detail = fixture("goods_detail_get.json")["goods_detail_get_response"]
    assert summary["goods_id"] == detail["goods_id"]
    listings = listings_of(goods_from_detail(detail),
                           goods_on_sale=str(summary["is_onsale"]) == "1")
    assert [x.merchant_code for x in listings] == [s["outer_id"] for s in summary["sku_list"]]
