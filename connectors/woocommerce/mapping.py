"""WooCommerce JSON ⇄ canonical records.

Shapes are the `wc/v3` REST representations (webhook bodies are the same). Times: the
`date_*_gmt` twins are UTC without an offset; the plain `date_*` fields are site-local and
not used. Money: totals are decimal strings in the order's currency, but a line's `price`
is a JSON *number* (after discounts, possibly with many decimals): the unit price is taken
from the line `subtotal` (before discounts) divided by the quantity instead, so no float
ever becomes money. Stock: `stock_quantity` means something only when `manage_stock` is
true; a variable product's own price is "" and its SKUs are its variations.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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

# every core status, plus those of the block checkout; plugins may add their own
STATUS_TABLE: dict[str, OrderStatus] = {
    "pending": OrderStatus.UNPAID,  # awaiting payment
    "on-hold": OrderStatus.UNPAID,  # awaiting a manual payment (bank transfer, cheque)
    "failed": OrderStatus.UNPAID,  # payment failed; the buyer may pay again
    "checkout-draft": OrderStatus.UNPAID,  # block checkout in progress
    "processing": OrderStatus.PAID,  # paid, to be fulfilled
    "completed": OrderStatus.COMPLETED,  # fulfilled
    "cancelled": OrderStatus.CANCELLED,
    "refunded": OrderStatus.REFUNDED,
    "trash": OrderStatus.CANCELLED,  # deleted by the merchant
}

_LINE_STATUS = {
    OrderStatus.SHIPPED: LineStatus.SHIPPED,
    OrderStatus.COMPLETED: LineStatus.SHIPPED,
    OrderStatus.CANCELLED: LineStatus.CANCELLED,
    OrderStatus.REFUNDED: LineStatus.REFUNDED,
}

# -- money -----------------------------------------------------------------------------------

CURRENCY_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def _decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise BadResponse(f"woocommerce: not an amount: {value!r}") from exc
    if not amount.is_finite():
        raise BadResponse(f"woocommerce: not an amount: {value!r}")
    return amount


def minor_units(value: Any, currency: str = "") -> int:
    """'21.99' -> 2199 (two decimals unless the currency says otherwise); exact."""
    scaled = _decimal(value).scaleb(CURRENCY_EXPONENTS.get(currency.upper(), 2))
    if scaled != scaled.to_integral_value():
        raise BadResponse(f"woocommerce: {value!r} has more decimals than "
                          f"{currency or 'the currency'} allows")
    return int(scaled)


def optional_minor_units(value: Any, currency: str = "") -> int | None:
    """'' (a variable product's price) -> None, not 0."""
    if value in (None, ""):
        return None
    return minor_units(value, currency)


def decimal_amount(minor: int, currency: str = "") -> str:
    """2199 -> '21.99': the string WooCommerce takes for prices."""
    exponent = CURRENCY_EXPONENTS.get(currency.upper(), 2)
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"


# -- time ------------------------------------------------------------------------------------

def parse_gmt(text: Any) -> datetime | None:
    """`2017-03-22T19:28:02` (a `_gmt` field) -> aware UTC datetime."""
    if text in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise BadResponse(f"woocommerce: not a timestamp: {text!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_gmt(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("woocommerce: window bounds must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


# -- orders ----------------------------------------------------------------------------------

def order_status(status: str) -> OrderStatus:
    try:
        return STATUS_TABLE[status]
    except KeyError:
        raise BadResponse(f"woocommerce: unknown order status {status!r} (a plugin's custom "
                          f"status? map it in the connector's status table)") from None


def _address(shipping: Mapping[str, Any] | None, billing: Mapping[str, Any] | None) -> Address:
    """Shipping address, else billing (virtual orders have no shipping). Address has no
    country or postcode fields: they end `detail`."""
    node = shipping if shipping and (shipping.get("address_1") or shipping.get("city")) \
        else (billing or {})
    street = " ".join(str(p) for p in (node.get("address_1"), node.get("address_2")) if p)
    tail = " ".join(str(p) for p in (node.get("postcode"), node.get("country")) if p)
    name = " ".join(str(p) for p in (node.get("first_name"), node.get("last_name")) if p)
    phone = node.get("phone") or (billing or {}).get("phone") or ""
    return Address(province=str(node.get("state") or ""), city=str(node.get("city") or ""),
                   district="", detail=", ".join(p for p in (street, tail) if p),
                   name=name, phone=str(phone))


def _unit_price(line: Mapping[str, Any], currency: str) -> int:
    quantity = int(line.get("quantity") or 0)
    subtotal = line.get("subtotal")
    if subtotal in (None, "") or quantity <= 0:
        return minor_units(line.get("price") or 0, currency)
    exponent = CURRENCY_EXPONENTS.get(currency.upper(), 2)
    unit = _decimal(subtotal).scaleb(exponent) / quantity
    return int(unit.to_integral_value(rounding=ROUND_HALF_UP))


def tracking_numbers_from_meta(meta: Iterable[Mapping[str, Any]]) -> tuple[str, ...] | None:
    """Numbers in `_wc_shipment_tracking_items`; None when the key is not exposed."""
    for entry in meta:
        if entry.get("key") == "_wc_shipment_tracking_items":
            items = entry.get("value") or []
            return tuple(str(i["tracking_number"]) for i in items
                         if isinstance(i, Mapping) and i.get("tracking_number"))
    return None


def order_from_rest(body: Mapping[str, Any],
                    tracking_numbers: Iterable[str] | None = None) -> OrderRecord:
    """A `wc/v3` order (GET orders/{id}, a list element, or a webhook body). Tracking
    numbers come from the order meta unless given (read from the tracking route)."""
    try:
        currency = str(body.get("currency") or "")
        platform_status = str(body["status"])
        status = order_status(platform_status)
        numbers = tuple(tracking_numbers) if tracking_numbers is not None else \
            tracking_numbers_from_meta(body.get("meta_data") or []) or ()
        if status is OrderStatus.PAID and numbers:
            # no "shipped" status in WooCommerce: paid and holding a waybill is shipped
            status = OrderStatus.SHIPPED
        line_status = _LINE_STATUS.get(status, LineStatus.OPEN)
        lines = tuple(OrderLineRecord(
            platform_line_id=str(line["id"]),
            platform_item_id=str(line.get("product_id") or ""),
            platform_sku_id=str(line["variation_id"]) if line.get("variation_id") else "",
            merchant_code=str(line.get("sku") or ""),
            title=html.unescape(str(line.get("name") or "")),
            quantity=int(line["quantity"]),
            unit_price_fen=_unit_price(line, currency),
            paid_fen=minor_units(line.get("total") or "0", currency)
            + minor_units(line.get("total_tax") or "0", currency),
            status=line_status,
        ) for line in body.get("line_items") or [])
        created = parse_gmt(body.get("date_created_gmt"))
        modified = parse_gmt(body.get("date_modified_gmt")) or created
        if created is None or modified is None:
            raise BadResponse(f"woocommerce: order {body.get('id')} has no GMT dates")
        return OrderRecord(
            platform_order_id=str(body["id"]),
            status=status,
            platform_status=platform_status,
            created_at=created,
            modified_at=modified,
            paid_at=parse_gmt(body.get("date_paid_gmt")),
            total_fen=sum(minor_units(line.get("subtotal") or "0", currency)
                          for line in body.get("line_items") or []),
            paid_fen=minor_units(body.get("total") or "0", currency),
            post_fee_fen=minor_units(body.get("shipping_total") or "0", currency),
            address=_address(body.get("shipping"), body.get("billing")),
            lines=lines,
            buyer_remark=str(body.get("customer_note") or ""),
            currency=currency,
            tracking_numbers=numbers,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadResponse(f"woocommerce: order does not map: {exc!r}") from exc


# -- listings --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StockFacts:
    """What WooCommerce says of one product or variation, before the canonical record
    forces numbers on it: `quantity` None = stock not managed (unknown, not zero);
    `price_fen` None = no price of its own (variable products)."""

    platform_id: str
    kind: str  # simple, variable, grouped, external, variation
    merchant_code: str | None
    price_fen: int | None
    quantity: int | None
    stock_status: str
    on_sale: bool
    modified_at: datetime | None
    variation_ids: tuple[str, ...] = ()


def stock_facts(node: Mapping[str, Any], currency: str = "", *,
                kind: str | None = None) -> StockFacts:
    try:
        managed = node.get("manage_stock") is True  # "parent" = the parent's stock
        return StockFacts(
            platform_id=str(node["id"]),
            kind=kind or str(node.get("type") or "simple"),
            merchant_code=str(node.get("sku")) if node.get("sku") else None,
            price_fen=optional_minor_units(node.get("price"), currency),
            quantity=int(node["stock_quantity"]) if managed and
            node.get("stock_quantity") is not None else None,
            stock_status=str(node.get("stock_status") or ""),
            on_sale=node.get("status", "publish") == "publish",
            modified_at=parse_gmt(node.get("date_modified_gmt")),
            variation_ids=tuple(str(v) for v in node.get("variations") or []),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"woocommerce: product does not map: {exc!r}") from exc


def listing_record(product: Mapping[str, Any], facts: StockFacts, *,
                   parent: StockFacts | None = None, title_suffix: str = "") -> ListingRecord:
    """One sellable unit. ListingRecord has no "unknown" quantity: unmanaged stock is
    published as 0 here, and `StockFacts.quantity` keeps the truth."""
    title = html.unescape(str(product.get("name") or ""))
    if title_suffix:
        title = f"{title} - {title_suffix}"
    return ListingRecord(
        platform_item_id=parent.platform_id if parent else facts.platform_id,
        platform_sku_id=facts.platform_id if parent else "",
        merchant_code=facts.merchant_code or "",
        title=title,
        price_fen=facts.price_fen or 0,
        quantity=facts.quantity or 0,
        on_sale=(parent.on_sale if parent else True) and facts.on_sale,
        item_merchant_code=(parent.merchant_code or "") if parent else "",
        modified_at=facts.modified_at,
    )


def variation_title(variation: Mapping[str, Any]) -> str:
    return ", ".join(str(a.get("option")) for a in variation.get("attributes") or []
                     if a.get("option"))
