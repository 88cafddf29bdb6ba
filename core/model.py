"""The canonical model: SQLAlchemy 2 typed ORM, one class per record in ARCHITECTURE.md.

Unique keys make duplicates impossible rather than unlikely: (shop, platform order id) for
orders, one reservation per order line, (shop, platform item, platform sku) for listings,
(shop, event id) for pushed events, one open alert per (kind, subject), one outbox row per
(kind, dedup key). Money is BigInteger fen. Times are stored in UTC and come back aware.
Enumerations are short strings (portable across SQLite and PostgreSQL, no type migrations).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out — on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: erpsync stores aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Fen = BigInteger


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    platform: Mapped[str] = mapped_column(String(32))
    # names of the environment variables holding the credentials, never the secrets
    credentials_ref: Mapped[dict[str, Any]] = mapped_column(default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_code: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    categories: Mapped[dict[str, Any]] = mapped_column(default=dict)  # platform -> category id
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    images: Mapped[list[Any]] = mapped_column(default=list)
    detail_images: Mapped[list[Any]] = mapped_column(default=list)
    # the catalogue's wish for its listings: False takes them off sale on the next push
    on_sale: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    skus: Mapped[list[Sku]] = relationship(back_populates="product")


class Sku(Base):
    __tablename__ = "skus"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    merchant_code: Mapped[str] = mapped_column(String(64), unique=True)
    barcode: Mapped[str] = mapped_column(String(64), default="")
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    price_fen: Mapped[int] = mapped_column(Fen)
    weight_g: Mapped[int] = mapped_column(Integer, default=0)
    bulky: Mapped[bool] = mapped_column(Boolean, default=False)
    presale_days: Mapped[int | None] = mapped_column(Integer)
    # publishing overrides (sync_ratio, safety_stock, max_listed, zero_below); beat listing/shop
    publish: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_sold_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    product: Mapped[Product] = relationship(back_populates="skus")


class Warehouse(Base):
    __tablename__ = "warehouses"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    online: Mapped[bool] = mapped_column(Boolean, default=True)  # feeds online sale
    priority: Mapped[int] = mapped_column(Integer, default=0)


class StockLevel(Base):
    __tablename__ = "stock_levels"
    __table_args__ = (
        UniqueConstraint("sku_id", "warehouse_id"),
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("safety >= 0", name="safety_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), index=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    safety: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]


class StockMovement(Base):
    """Append-only ledger; a level always equals the sum of its movements."""

    __tablename__ = "stock_movements"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), index=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    kind: Mapped[str] = mapped_column(String(16))
    on_hand_delta: Mapped[int] = mapped_column(Integer, default=0)
    reserved_delta: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(200), default="")
    reference: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime]


class Listing(Base):
    __tablename__ = "listings"
    __table_args__ = (UniqueConstraint("shop_id", "platform_item_id", "platform_sku_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), index=True)
    platform_item_id: Mapped[str] = mapped_column(String(64))
    platform_sku_id: Mapped[str] = mapped_column(String(64), default="")
    sku_id: Mapped[int | None] = mapped_column(ForeignKey("skus.id"), index=True)
    merchant_code: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    price_fen: Mapped[int] = mapped_column(Fen, default=0)
    platform_quantity: Mapped[int] = mapped_column(Integer, default=0)  # last read from platform
    on_sale: Mapped[bool] = mapped_column(Boolean, default=True)
    publish: Mapped[dict[str, Any]] = mapped_column(default=dict)  # listing overrides
    publish_version: Mapped[int] = mapped_column(Integer, default=0)
    queued_quantity: Mapped[int | None] = mapped_column(Integer)
    last_pushed_quantity: Mapped[int | None] = mapped_column(Integer)
    last_pushed_version: Mapped[int] = mapped_column(Integer, default=0)
    last_pushed_at: Mapped[datetime | None]
    publish_at: Mapped[datetime | None]
    rejection: Mapped[str] = mapped_column(Text, default="")
    # what erpsync last had accepted for the fields a platform does not read back
    # (category, attributes, images, description, spec): the base of a listing plan's diff
    pushed_content: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pulled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("shop_id", "platform_order_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"))
    platform_order_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    platform_status: Mapped[str] = mapped_column(String(48))
    platform_created_at: Mapped[datetime]
    platform_modified_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    total_fen: Mapped[int] = mapped_column(Fen)
    paid_fen: Mapped[int] = mapped_column(Fen)
    post_fee_fen: Mapped[int] = mapped_column(Fen, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    buyer_remark: Mapped[str] = mapped_column(Text, default="")
    seller_remark: Mapped[str] = mapped_column(Text, default="")
    province: Mapped[str] = mapped_column(String(32), default="")
    city: Mapped[str] = mapped_column(String(32), default="")
    district: Mapped[str] = mapped_column(String(32), default="")
    address_detail: Mapped[str] = mapped_column(String(255), default="")
    receiver_name: Mapped[str] = mapped_column(String(64), default="")
    receiver_phone: Mapped[str] = mapped_column(String(32), default="")
    review: Mapped[str] = mapped_column(String(16), default="")  # approve, hold, wait
    review_rule: Mapped[str] = mapped_column(String(64), default="")
    hold_reason: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[bool] = mapped_column(Boolean, default=False)
    backorder: Mapped[bool] = mapped_column(Boolean, default=False)
    unbound_lines: Mapped[int] = mapped_column(Integer, default=0)
    ingested_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    lines: Mapped[list[OrderLine]] = relationship(back_populates="order",
                                                  order_by="OrderLine.id")


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "platform_line_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    platform_line_id: Mapped[str] = mapped_column(String(64))
    platform_item_id: Mapped[str] = mapped_column(String(64), default="")
    platform_sku_id: Mapped[str] = mapped_column(String(64), default="")
    merchant_code: Mapped[str] = mapped_column(String(64), default="")
    sku_id: Mapped[int | None] = mapped_column(ForeignKey("skus.id"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(Fen)
    paid_fen: Mapped[int] = mapped_column(Fen)
    status: Mapped[str] = mapped_column(String(16))
    short: Mapped[bool] = mapped_column(Boolean, default=False)  # backordered line
    presale_ship_by: Mapped[datetime | None]

    order: Mapped[Order] = relationship(back_populates="lines")


class OrderEvent(Base):
    """Every status change with its source (pull, push, operator, engine)."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    from_status: Mapped[str] = mapped_column(String(16), default="")
    to_status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class Reservation(Base):
    __tablename__ = "reservations"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), unique=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), index=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # reserved, released, shipped
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (UniqueConstraint("order_id", "tracking_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    carrier: Mapped[str] = mapped_column(String(16))
    tracking_number: Mapped[str] = mapped_column(String(64))
    line_ids: Mapped[list[Any]] = mapped_column(default=list)  # order_lines.id shipped
    carrier_rule: Mapped[str] = mapped_column(String(64), default="")
    shipped_at: Mapped[datetime]
    push_state: Mapped[str] = mapped_column(String(16), default="pending")
    push_error: Mapped[str] = mapped_column(Text, default="")
    pushed_at: Mapped[datetime | None]
    tracking_status: Mapped[str] = mapped_column(String(20), default="pending")
    first_event_at: Mapped[datetime | None]
    last_event_at: Mapped[datetime | None]
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    polled_at: Mapped[datetime | None]
    # when the tracking provider was asked to push this parcel's updates (NULL: not asked,
    # or the provider stopped watching and it must be asked again)
    subscribed_at: Mapped[datetime | None]


class TrackingEvent(Base):
    __tablename__ = "tracking_events"
    __table_args__ = (UniqueConstraint("shipment_id", "occurred_at", "status", "text_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), index=True)
    occurred_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20))
    location: Mapped[str] = mapped_column(String(100), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    text_hash: Mapped[str] = mapped_column(String(16))


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # "kind:subject" while open, NULL once resolved: one open alert per (kind, subject)
    open_key: Mapped[str | None] = mapped_column(String(170), unique=True)
    opened_at: Mapped[datetime]
    acked_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    # the "resolved" notice reached a sink (sinks are told when an alert clears, too)
    resolution_delivered_at: Mapped[datetime | None]


class SyncCursor(Base):
    __tablename__ = "sync_cursors"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), primary_key=True)
    stream: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[datetime]
    last_success_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Lease(Base):
    """A named lease: (shop, stream) pulls and scheduled jobs run on one node at a time."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class OutboxTask(Base):
    """One row per (kind, dedup key). A newer value rewrites the row with a higher version,
    so only the newest is ever sent; a send that finishes for an older version leaves the
    row pending for the newer one."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("kind", "dedup_key"),
        Index("ix_outbox_due", "state", "priority", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), index=True)
    target: Mapped[str] = mapped_column(String(128))
    dedup_key: Mapped[str] = mapped_column(String(160))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    sent_version: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    priority: Mapped[int] = mapped_column(Integer, default=1)  # 0 jumps the queue
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    lease_owner: Mapped[str] = mapped_column(String(128), default="")
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # since when the platform has been waiting for this row's value: set when it is queued
    # after its last value was settled (done, dropped), kept while newer values coalesce
    # and while it is retried — `updated_at` moves with every claim and retry
    queued_at: Mapped[datetime]


class InboxEvent(Base):
    """A pushed event, stored before it is acknowledged; processed asynchronously."""

    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("shop_id", "event_id"),
                      Index("ix_inbox_due", "state", "next_attempt_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"))
    event_id: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(64), default="")
    platform_order_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    # the verified event in canonical form (core.intake), the order included when pushed
    event: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending, done, quarantined
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(Text, default="")


class QuarantinedPayload(Base):
    """A payload that did not parse or map: kept with its error, never dropped silently."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"))
    source: Mapped[str] = mapped_column(String(16))  # pull, push
    reference: Mapped[str] = mapped_column(String(128), default="")
    # the order it holds, when known: `quarantine retry` re-reads it with get_order
    platform_order_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), default="open")  # open, resolved, dropped
    # "shop:order" (or "shop:source:reference") while open, NULL after: a payload seen again
    # updates its open row instead of adding one per re-read window
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    seen: Mapped[int] = mapped_column(Integer, default=1)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
