"""Canonical records exchanged between connectors and the core.

Frozen, slotted dataclasses: a connector builds them from platform JSON (`mapping.py`) and
the core never sees a platform's dialect. Money is integer fen; times are timezone-aware.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class OrderStatus(enum.StrEnum):
    """Canonical order status. Connectors map onto UNPAID, PAID, SHIPPED, COMPLETED,
    CANCELLED and REFUNDED; APPROVED and ON_HOLD are the core's own review states."""

    UNPAID = "unpaid"
    PAID = "paid"
    APPROVED = "approved"
    ON_HOLD = "on_hold"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class LineStatus(enum.StrEnum):
    OPEN = "open"  # not shipped yet (unpaid or paid)
    SHIPPED = "shipped"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class TrackingStatus(enum.StrEnum):
    PENDING = "pending"  # no scan yet
    COLLECTED = "collected"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    PROBLEM = "problem"  # 疑难
    REFUSED = "refused"
    RETURNING = "returning"
    RETURNED = "returned"


class Capability(enum.StrEnum):
    LIST_LISTINGS = "listings.list"
    UPSERT_LISTING = "listings.upsert"
    SET_STOCK = "listings.stock"
    SET_PRICE = "listings.price"
    SHELVE = "listings.shelve"
    PULL_ORDERS = "orders.pull"
    GET_ORDER = "orders.get"
    PUSH_ORDERS = "orders.push"
    SHIP = "logistics.ship"
    PARTIAL_SHIP = "logistics.partial_ship"
    REFRESH_TOKEN = "auth.refresh"
    TRACKING = "tracking.query"
    TRACKING_PUSH = "tracking.push"


@dataclass(frozen=True, slots=True)
class Address:
    province: str
    city: str
    district: str
    detail: str
    name: str = ""  # platforms mask these; we keep what they give
    phone: str = ""


@dataclass(frozen=True, slots=True)
class OrderLineRecord:
    platform_line_id: str
    platform_item_id: str
    platform_sku_id: str
    merchant_code: str  # SKU outer id (商家编码); "" when the seller left it empty
    title: str
    quantity: int
    unit_price_fen: int
    paid_fen: int
    status: LineStatus = LineStatus.OPEN
    presale_ship_by: datetime | None = None


@dataclass(frozen=True, slots=True)
class OrderRecord:
    platform_order_id: str
    status: OrderStatus
    platform_status: str
    created_at: datetime
    modified_at: datetime
    paid_at: datetime | None
    total_fen: int  # goods total before discounts
    paid_fen: int  # what the buyer paid, post fee included
    post_fee_fen: int
    address: Address
    lines: tuple[OrderLineRecord, ...]
    buyer_remark: str = ""
    seller_remark: str = ""
    currency: str = "CNY"
    tracking_numbers: tuple[str, ...] = ()  # waybills the platform already holds


@dataclass(frozen=True, slots=True)
class UnreadableOrder:
    """One entry of a pulled page whose mapping failed (missing field, unknown status, bad
    amount). `iter_orders` yields it in place of the order, so one bad order is quarantined
    by the core while the rest of the window keeps flowing. `payload` is the entry as the
    platform sent it."""

    platform_order_id: str
    payload: bytes
    error: str

    @classmethod
    def of(cls, platform_order_id: object, raw: object, error: Exception) -> UnreadableOrder:
        """From the raw entry and the mapping error (its `body` when it carries one)."""
        body = getattr(error, "body", b"")
        if not isinstance(body, bytes) or not body:
            body = json.dumps(raw, ensure_ascii=False, default=str).encode()
        return cls(str(platform_order_id or ""), body, str(error))


def mapped_or_unreadable(raw: Any, to_order: Callable[[Any], OrderRecord],
                         *id_path: str) -> OrderRecord | UnreadableOrder:
    """Map one page entry; when the mapping raises BadResponse, an UnreadableOrder naming
    the entry by the value at `id_path` (e.g. "orderBaseInfo", "oid") instead."""
    from core.errors import BadResponse

    try:
        return to_order(raw)
    except BadResponse as exc:
        found: Any = raw
        for key in id_path:
            found = found.get(key) if isinstance(found, Mapping) else None
        return UnreadableOrder.of(found or "", raw, exc)


@dataclass(frozen=True, slots=True)
class ListingRecord:
    """One sellable unit on a platform: an item's SKU, or the item itself when it has none
    (then `platform_sku_id` is "")."""

    platform_item_id: str
    platform_sku_id: str
    merchant_code: str
    title: str
    price_fen: int
    quantity: int
    on_sale: bool
    item_merchant_code: str = ""
    modified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DraftSku:
    merchant_code: str
    price_fen: int
    quantity: int
    spec: Mapping[str, str] = field(default_factory=dict)  # e.g. {"颜色": "红", "尺码": "M"}


@dataclass(frozen=True, slots=True)
class ListingDraft:
    """What the core wants a platform listing to look like."""

    merchant_code: str
    title: str
    category_id: str
    price_fen: int
    skus: tuple[DraftSku, ...]
    description: str = ""
    images: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    platform_item_id: str | None = None  # None: create


@dataclass(frozen=True, slots=True)
class ListingPushResult:
    platform_item_id: str
    sku_ids: Mapping[str, str]  # merchant code -> platform sku id


@dataclass(frozen=True, slots=True)
class StockUpdate:
    platform_item_id: str
    platform_sku_id: str
    quantity: int  # absolute, never a delta

    def __post_init__(self) -> None:
        if self.quantity < 0:
            raise ValueError("stock to publish cannot be negative")


@dataclass(frozen=True, slots=True)
class PriceUpdate:
    platform_item_id: str
    platform_sku_id: str
    price_fen: int


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    """Per-SKU result of a batch call: `error` is None when the platform took it."""

    platform_item_id: str
    platform_sku_id: str
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class ShipRequest:
    platform_order_id: str
    carrier: str  # canonical carrier code
    tracking_number: str
    line_ids: tuple[str, ...] = ()  # empty: the whole order


class PushKind(enum.StrEnum):
    ORDER = "order"
    REFUND = "refund"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class PushEvent:
    """A verified push. Pushes are hints: when `order` is None the core re-reads the order."""

    event_id: str
    kind: PushKind
    topic: str
    platform_order_id: str | None
    occurred_at: datetime | None = None
    order: OrderRecord | None = None


@dataclass(frozen=True, slots=True)
class PushAck:
    """What the platform expects back from a push receiver."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str = ""
    expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TrackingEventRecord:
    occurred_at: datetime
    status: TrackingStatus
    location: str
    text: str
    raw_state: str = ""


@dataclass(frozen=True, slots=True)
class TrackingResult:
    carrier: str
    tracking_number: str
    status: TrackingStatus
    events: tuple[TrackingEventRecord, ...]
    final: bool
    note: str = ""  # why the provider stopped watching, when it did ("60天无变化")
