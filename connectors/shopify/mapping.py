"""Shopify JSON ⇄ canonical records.

Two order shapes arrive: GraphQL `Order` nodes (pulls) and the REST representation
(webhook bodies, snake_case with numeric ids). Both map to the same OrderRecord, with
Shopify's numeric ids as the canonical ids (GraphQL gids are cut to their tail), so a
pulled order and a pushed one are the same order to the core.

Shopify has no single order status: it reports a *financial* status and a *fulfilment*
status side by side (plus `cancelledAt`/`closedAt`). `FINANCIAL_STATUS` (the connector's
`status_table`, keyed by the lower-case financial status, which is also what
`platform_status` holds) decides the money side; `FULFILLMENT_PROGRESS` refines a paid order
into shipped; `closedAt` on a fulfilled order means completed.

Money: amounts are decimal strings in the shop currency; records keep integer minor units
(cents for USD/AUD, yen for JPY) in their `*_fen` fields, with `OrderRecord.currency` set.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from core.errors import BadResponse
from core.records import (
    Address,
    LineStatus,
    ListingRecord,
    OrderLineRecord,
    OrderRecord,
    OrderStatus,
)

# -- ids -------------------------------------------------------------------------------------

def gid(kind: str, value: str | int) -> str:
    text = str(value)
    return text if text.startswith("gid://") else f"gid://shopify/{kind}/{text}"


def numeric_id(value: Any) -> str:
    """`gid://shopify/Order/123` or 123 -> "123"; None/"" -> ""."""
    if value in (None, ""):
        return ""
    text = str(value)
    return text.rsplit("/", 1)[-1].split("?", 1)[0]


# -- money -----------------------------------------------------------------------------------

# ISO 4217 minor-unit exponents that are not 2
CURRENCY_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def minor_units(amount: Any, currency: str = "") -> int:
    """'19.99' USD -> 1999; '1000' JPY -> 1000. Exact: a value with more decimals than the
    currency has is refused (no silent rounding)."""
    if isinstance(amount, float):
        amount = Decimal(repr(amount))
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise BadResponse(f"shopify: not an amount: {amount!r}") from exc
    if not value.is_finite():
        raise BadResponse(f"shopify: not an amount: {amount!r}")
    scaled = value.scaleb(CURRENCY_EXPONENTS.get(currency.upper(), 2))
    if scaled != scaled.to_integral_value():
        raise BadResponse(f"shopify: {amount!r} has more decimals than {currency or 'the currency'}")
    return int(scaled.to_integral_value(rounding=ROUND_HALF_UP))


def decimal_amount(minor: int, currency: str) -> str:
    """1999 USD -> '19.99': the shop-currency string Shopify takes for prices."""
    return str(Decimal(minor).scaleb(-CURRENCY_EXPONENTS.get(currency.upper(), 2)))


def _money(node: Any, currency: str) -> int:
    """A GraphQL `MoneyBag` ({shopMoney {amount currencyCode}}) or a REST `*_set`
    ({shop_money {amount currency_code}}) or a plain amount string."""
    if node is None:
        return 0
    if isinstance(node, Mapping):
        shop = node.get("shopMoney") or node.get("shop_money") or node
        code = shop.get("currencyCode") or shop.get("currency_code") or currency
        return minor_units(shop.get("amount", "0"), str(code))
    return minor_units(node, currency)


# -- time ------------------------------------------------------------------------------------

def parse_time(text: Any) -> datetime | None:
    """ISO 8601 with offset or Z; the shop's offset is kept as Shopify rendered it."""
    if text in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise BadResponse(f"shopify: not a timestamp: {text!r}") from exc
    if moment.tzinfo is None:
        raise BadResponse(f"shopify: timestamp without offset: {text!r}")
    return moment


def _required_time(text: Any, what: str) -> datetime:
    moment = parse_time(text)
    if moment is None:
        raise BadResponse(f"shopify: order has no {what}")
    return moment


# -- statuses --------------------------------------------------------------------------------

# OrderDisplayFinancialStatus (GraphQL, upper case) == REST financial_status (lower case)
FINANCIAL_STATUS: dict[str, OrderStatus] = {
    "pending": OrderStatus.UNPAID,
    "authorized": OrderStatus.PAID,  # authorised, awaiting capture: the buyer has paid
    "partially_paid": OrderStatus.PAID,
    "paid": OrderStatus.PAID,
    "partially_refunded": OrderStatus.PAID,  # goods still owed for the rest
    "refunded": OrderStatus.REFUNDED,
    "voided": OrderStatus.CANCELLED,  # authorisation voided: no money will come
    "expired": OrderStatus.UNPAID,  # authorisation lapsed uncaptured: not paid
}


def was_paid(financial: str) -> bool:
    return FINANCIAL_STATUS.get(financial.lower()) in (OrderStatus.PAID, OrderStatus.REFUNDED)


class Progress(enum.Enum):
    NONE = "none"
    SOME = "some"
    ALL = "all"


# OrderDisplayFulfillmentStatus (GraphQL) and REST fulfillment_status, lower case
FULFILLMENT_PROGRESS: dict[str, Progress] = {
    "unfulfilled": Progress.NONE,
    "open": Progress.NONE,  # legacy name of UNFULFILLED
    "restocked": Progress.NONE,  # legacy: items returned to stock before shipping
    "pending_fulfillment": Progress.NONE,  # legacy name of IN_PROGRESS
    "pending": Progress.NONE,  # REST legacy
    "in_progress": Progress.NONE,
    "on_hold": Progress.NONE,
    "scheduled": Progress.NONE,
    "request_declined": Progress.NONE,
    "partially_fulfilled": Progress.SOME,
    "partial": Progress.SOME,  # REST
    "fulfilled": Progress.ALL,
    "fulfillment_not_required": Progress.ALL,  # 2026-10: nothing physical to ship
}


def order_status(financial: str, fulfillment: str | None, *, cancelled: bool,
                 closed: bool) -> OrderStatus:
    try:
        money = FINANCIAL_STATUS[financial.lower()]
    except KeyError:
        raise BadResponse(f"shopify: unknown financial status {financial!r}") from None
    if money is OrderStatus.REFUNDED:
        return money
    if cancelled:
        return OrderStatus.CANCELLED
    if money is not OrderStatus.PAID:
        return money
    progress = FULFILLMENT_PROGRESS.get((fulfillment or "unfulfilled").lower())
    if progress is None:
        raise BadResponse(f"shopify: unknown fulfillment status {fulfillment!r}")
    if progress is Progress.ALL:
        return OrderStatus.COMPLETED if closed else OrderStatus.SHIPPED
    return OrderStatus.PAID


def _line_status(*, quantity: int, current: int, unfulfilled: int, fulfilled: bool,
                 order: OrderStatus) -> LineStatus:
    if quantity > 0 and current <= 0:
        return LineStatus.CANCELLED if order is OrderStatus.CANCELLED and not fulfilled \
            else LineStatus.REFUNDED
    if fulfilled or unfulfilled <= 0:
        return LineStatus.SHIPPED
    if order is OrderStatus.REFUNDED:
        return LineStatus.REFUNDED
    if order is OrderStatus.CANCELLED:
        return LineStatus.CANCELLED
    return LineStatus.OPEN


# -- addresses -------------------------------------------------------------------------------

def _address(node: Mapping[str, Any] | None) -> Address:
    """Address has no country/postcode fields: they go at the end of `detail`."""
    if not node:
        return Address("", "", "", "")
    street = " ".join(str(p) for p in (node.get("address1"), node.get("address2")) if p)
    country = node.get("countryCodeV2") or node.get("country_code") or ""
    tail = " ".join(str(p) for p in (node.get("zip"), country) if p)
    return Address(
        province=str(node.get("province") or ""), city=str(node.get("city") or ""),
        district="", detail=", ".join(p for p in (street, tail) if p),
        name=str(node.get("name") or ""), phone=str(node.get("phone") or ""))


_DEAD_FULFILMENTS = {"cancelled", "error", "failure"}


def _numbers(fulfillments: Iterable[Mapping[str, Any]], *, graphql: bool) -> tuple[str, ...]:
    seen: list[str] = []
    for fulfillment in fulfillments:
        if str(fulfillment.get("status", "")).lower() in _DEAD_FULFILMENTS:
            continue
        if graphql:
            numbers = [t.get("number") for t in fulfillment.get("trackingInfo") or []]
        else:
            numbers = list(fulfillment.get("tracking_numbers") or [])
            if not numbers and fulfillment.get("tracking_number"):
                numbers = [fulfillment["tracking_number"]]
        for number in numbers:
            if number and number not in seen:
                seen.append(str(number))
    return tuple(seen)


# -- orders: GraphQL ---------------------------------------------------------------------------

def order_from_graphql(node: Mapping[str, Any],
                       extra_lines: Iterable[Mapping[str, Any]] = ()) -> OrderRecord:
    """A GraphQL `Order` (fragment ErpsyncOrderFields) -> OrderRecord. `extra_lines` are
    line nodes read past the first page of `lineItems`."""
    try:
        currency = str(node.get("currencyCode") or "")
        financial = str(node["displayFinancialStatus"]).lower()
        cancelled = bool(node.get("cancelledAt"))
        status = order_status(financial, node.get("displayFulfillmentStatus"),
                              cancelled=cancelled, closed=bool(node.get("closedAt")))
        line_nodes = [*((node.get("lineItems") or {}).get("nodes") or []), *extra_lines]
        lines = tuple(_line_from_graphql(line, currency, status) for line in line_nodes)
        paid_at = parse_time(node.get("processedAt")) if was_paid(financial) else None
        return OrderRecord(
            platform_order_id=numeric_id(node["id"]),
            status=status,
            platform_status=financial,
            created_at=_required_time(node.get("createdAt"), "createdAt"),
            modified_at=_required_time(node.get("updatedAt"), "updatedAt"),
            paid_at=paid_at,
            total_fen=sum(line.unit_price_fen * line.quantity for line in lines),
            paid_fen=_money(node.get("totalPriceSet"), currency),
            post_fee_fen=_money(node.get("totalShippingPriceSet"), currency),
            address=_address(node.get("shippingAddress") or node.get("billingAddress")),
            lines=lines,
            buyer_remark=str(node.get("note") or ""),
            currency=currency,
            tracking_numbers=_numbers(node.get("fulfillments") or [], graphql=True),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadResponse(f"shopify: order does not map: {exc!r}") from exc


def _line_from_graphql(line: Mapping[str, Any], currency: str,
                       order: OrderStatus) -> OrderLineRecord:
    quantity = int(line["quantity"])
    current = int(line.get("currentQuantity", quantity))
    unfulfilled = int(line.get("unfulfilledQuantity", current))
    return OrderLineRecord(
        platform_line_id=numeric_id(line["id"]),
        platform_item_id=numeric_id((line.get("product") or {}).get("id")),
        platform_sku_id=numeric_id((line.get("variant") or {}).get("id")),
        merchant_code=str(line.get("sku") or ""),
        title=str(line.get("title") or ""),
        quantity=quantity,
        unit_price_fen=_money(line.get("originalUnitPriceSet"), currency),
        paid_fen=_money(line.get("discountedTotalSet"), currency),
        status=_line_status(quantity=quantity, current=current, unfulfilled=unfulfilled,
                            fulfilled=False, order=order),
    )


# -- orders: REST (webhook bodies) ---------------------------------------------------------

def order_from_rest(body: Mapping[str, Any]) -> OrderRecord:
    """A REST-shaped order (webhook body, or `{"order": {...}}` from the REST API)."""
    if "order" in body and isinstance(body["order"], Mapping):
        body = body["order"]
    try:
        currency = str(body.get("currency") or "")
        financial = str(body.get("financial_status") or "pending").lower()
        status = order_status(financial, body.get("fulfillment_status"),
                              cancelled=bool(body.get("cancelled_at")),
                              closed=bool(body.get("closed_at")))
        refunded = _refunded_quantities(body.get("refunds") or [])
        lines = tuple(_line_from_rest(line, currency, status, refunded)
                      for line in body.get("line_items") or [])
        goods = body.get("total_line_items_price_set") or body.get("total_line_items_price")
        shipping = body.get("total_shipping_price_set")
        post_fee = _money(shipping, currency) if shipping is not None else sum(
            _money(s.get("price_set") or s.get("price"), currency)
            for s in body.get("shipping_lines") or [])
        paid_at = parse_time(body.get("processed_at")) if was_paid(financial) else None
        return OrderRecord(
            platform_order_id=str(body["id"]),
            status=status,
            platform_status=financial,
            created_at=_required_time(body.get("created_at"), "created_at"),
            modified_at=_required_time(body.get("updated_at") or body.get("created_at"),
                                       "updated_at"),
            paid_at=paid_at,
            total_fen=_money(goods, currency) if goods is not None else sum(
                line.unit_price_fen * line.quantity for line in lines),
            paid_fen=_money(body.get("total_price_set") or body.get("total_price"), currency),
            post_fee_fen=post_fee,
            address=_address(body.get("shipping_address") or body.get("billing_address")),
            lines=lines,
            buyer_remark=str(body.get("note") or ""),
            currency=currency,
            tracking_numbers=_numbers(body.get("fulfillments") or [], graphql=False),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadResponse(f"shopify: order does not map: {exc!r}") from exc


def _refunded_quantities(refunds: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for refund in refunds:
        for item in refund.get("refund_line_items") or []:
            key = str(item.get("line_item_id"))
            out[key] = out.get(key, 0) + int(item.get("quantity") or 0)
    return out


def _line_from_rest(line: Mapping[str, Any], currency: str, order: OrderStatus,
                    refunded: Mapping[str, int]) -> OrderLineRecord:
    quantity = int(line["quantity"])
    line_id = str(line["id"])
    unit = _money(line.get("price_set") or line.get("price"), currency)
    discount = _money(line.get("total_discount_set") or line.get("total_discount") or "0",
                      currency)
    fulfilled = str(line.get("fulfillment_status") or "").lower() == "fulfilled"
    current = quantity - refunded.get(line_id, 0)
    return OrderLineRecord(
        platform_line_id=line_id,
        platform_item_id=numeric_id(line.get("product_id")),
        platform_sku_id=numeric_id(line.get("variant_id")),
        merchant_code=str(line.get("sku") or ""),
        title=str(line.get("name") or line.get("title") or ""),
        quantity=quantity,
        unit_price_fen=unit,
        paid_fen=unit * quantity - discount,
        status=_line_status(quantity=quantity, current=current,
                            unfulfilled=0 if fulfilled else current, fulfilled=fulfilled,
                            order=order),
    )


def order_name(node: Mapping[str, Any]) -> str:
    """The number the merchant and buyer see ("#1001"); OrderRecord has no field for it."""
    body = node.get("order", node) if isinstance(node.get("order"), Mapping) else node
    return str(body.get("name") or "")


def cancelled_at(node: Mapping[str, Any]) -> datetime | None:
    body = node.get("order", node) if isinstance(node.get("order"), Mapping) else node
    return parse_time(body.get("cancelledAt") or body.get("cancelled_at"))


# -- listings --------------------------------------------------------------------------------

def listing_from_variant(node: Mapping[str, Any], currency: str) -> ListingRecord:
    """A `ProductVariant` -> one sellable unit. Shopify does not count stock of untracked
    inventory items: their quantity is reported as 0 (ListingRecord cannot say
    "unknown"; see `stock_tracked`)."""
    try:
        product = node["product"]
        title = str(product.get("title") or "")
        variant_title = str(node.get("title") or "")
        if variant_title and variant_title != "Default Title":
            title = f"{title} - {variant_title}"
        tracked = stock_tracked(node)
        return ListingRecord(
            platform_item_id=numeric_id(product["id"]),
            platform_sku_id=numeric_id(node["id"]),
            merchant_code=str(node.get("sku") or ""),
            title=title,
            price_fen=minor_units(node.get("price") or "0", currency),
            quantity=int(node.get("inventoryQuantity") or 0) if tracked else 0,
            on_sale=str(product.get("status", "")).upper() == "ACTIVE",
            modified_at=parse_time(node.get("updatedAt")),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadResponse(f"shopify: variant does not map: {exc!r}") from exc


def stock_tracked(variant: Mapping[str, Any]) -> bool:
    return bool((variant.get("inventoryItem") or {}).get("tracked", True))


def available_of(variant: Mapping[str, Any]) -> int | None:
    """`available` at the location asked for, None when the item is not stocked there."""
    level = (variant.get("inventoryItem") or {}).get("inventoryLevel")
    if not level:
        return None
    for quantity in level.get("quantities") or []:
        if quantity.get("name") == "available":
            return int(quantity["quantity"])
    return None
