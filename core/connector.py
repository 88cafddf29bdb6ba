"""The connector contract.

A connector declares its platform's facts as class attributes and implements a few async
methods over canonical records (`core.records`). It never touches the database; it raises
only canonical errors (`core.errors`). Optional capabilities raise NotImplementedError and
are left out of `capabilities`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from core.errors import UnmappedCarrier
from core.records import (
    Capability,
    ListingDraft,
    ListingPushResult,
    ListingRecord,
    OrderRecord,
    OrderStatus,
    PriceUpdate,
    PushAck,
    PushEvent,
    ShipRequest,
    StockUpdate,
    TokenSet,
    TrackingResult,
    TrackingStatus,
    UnreadableOrder,
    UpdateOutcome,
)
from core.secrets import Secret

if TYPE_CHECKING:
    from core.http import HttpSession
    from core.sandbox import Sandbox


@dataclass(frozen=True, slots=True)
class Limits:
    page_size: int
    max_window: timedelta
    max_batch: int
    requests_per_second: float
    burst: int = 1
    max_lookback: timedelta | None = None  # how far back the order API reaches
    modified_lag: timedelta = timedelta(minutes=1)  # platforms commit modified times late


class CarrierTable:
    """Canonical carrier code <-> platform carrier code. Data, not code: platforms rename
    and add carriers, so tables may be overridden from configuration."""

    def __init__(self, platform: str, codes: Mapping[str, str]) -> None:
        self.platform = platform
        self._to_platform = dict(codes)
        self._to_canonical = {v: k for k, v in codes.items()}

    def to_platform(self, canonical: str) -> str:
        try:
            return self._to_platform[canonical]
        except KeyError:
            raise UnmappedCarrier(self.platform, canonical) from None

    def to_canonical(self, platform_code: str) -> str | None:
        return self._to_canonical.get(platform_code)

    def with_overrides(self, overrides: Mapping[str, str]) -> CarrierTable:
        return CarrierTable(self.platform, {**self._to_platform, **overrides})

    def canonical_codes(self) -> frozenset[str]:
        return frozenset(self._to_platform)

    def items(self) -> list[tuple[str, str]]:
        return sorted(self._to_platform.items())


class TokenKeeper(Protocol):
    """Holds a shop's current token and refreshes it once when a call says it expired."""

    def current(self) -> TokenSet: ...

    async def refresh(self, stale: TokenSet) -> TokenSet: ...


class StaticTokens:
    """Tokens that cannot be refreshed from here (e.g. a long-lived key)."""

    def __init__(self, tokens: TokenSet) -> None:
        self._tokens = tokens

    def current(self) -> TokenSet:
        return self._tokens

    async def refresh(self, stale: TokenSet) -> TokenSet:
        from core.errors import AuthExpired

        raise AuthExpired("token expired and this shop cannot refresh it: re-authorise the shop")


@dataclass(slots=True)
class ShopContext:
    """Everything a connector knows of the shop it serves. Secrets stay wrapped."""

    name: str
    platform: str
    base_url: str
    app_key: str
    app_secret: Secret
    tokens: TokenKeeper
    extra_secrets: Mapping[str, Secret] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


class Connector(ABC):
    platform: ClassVar[str]
    title: ClassVar[str]
    version: ClassVar[str] = "1.0.0"
    capabilities: ClassVar[frozenset[Capability]]
    limits: ClassVar[Limits]
    carriers: ClassVar[CarrierTable]
    # every order status string the platform documents -> canonical status (total)
    status_table: ClassVar[Mapping[str, OrderStatus]]
    default_base_url: ClassVar[str]
    # the simulator of this platform; `None` only for connectors that ship none
    sandbox_class: ClassVar[type[Sandbox] | None] = None

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        self.shop = shop
        self.http = http

    def carrier_table(self) -> CarrierTable:
        overrides = self.shop.options.get("carriers")
        return self.carriers.with_overrides(overrides) if overrides else self.carriers

    # -- listings ------------------------------------------------------------------------
    def iter_listings(self) -> AsyncIterator[ListingRecord]:
        raise NotImplementedError

    async def upsert_listing(self, draft: ListingDraft) -> ListingPushResult:
        raise NotImplementedError

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        """Set absolute quantities; at most `limits.max_batch` per call."""
        raise NotImplementedError

    async def current_stock(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The platform's quantity now for (item id, sku id) keys; keys it does not know are
        left out. Used to ask whether a send cut short by a crash landed, so it is rare: the
        default reads the listings (LIST_LISTINGS) until every key was seen; a connector with
        a cheaper per-item read may override it."""
        wanted = set(keys)
        found: dict[tuple[str, str], int] = {}
        listings = self.iter_listings()
        try:
            async for record in listings:
                key = (record.platform_item_id, record.platform_sku_id)
                if key in wanted:
                    found[key] = record.quantity
                    if len(found) == len(wanted):
                        break
        finally:
            close = getattr(listings, "aclose", None)
            if close is not None:
                await close()
        return found

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        raise NotImplementedError

    async def set_on_sale(self, platform_item_id: str, on_sale: bool) -> None:
        raise NotImplementedError

    # -- orders --------------------------------------------------------------------------
    @abstractmethod
    def iter_orders(self, start: datetime, end: datetime,
                    ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        """Orders modified in [start, end); the window is at most `limits.max_window`.
        Every page is read to its end; an order may appear twice, never zero times.

        When one entry of a page does not map (missing field, unknown status, bad amount),
        yield `UnreadableOrder(platform_order_id, raw entry, error)` for it and go on: the
        core quarantines it and the rest of the window still flows. A page (or a detail
        call) that does not parse at all raises BadResponse as before: the window stops
        there and the cursor stays put."""

    @abstractmethod
    async def get_order(self, platform_order_id: str) -> OrderRecord: ...

    def verify_push(self, headers: Mapping[str, str], body: bytes) -> list[PushEvent]:
        """Check the push signature (raise SignatureInvalid) and parse it (BadResponse)."""
        raise NotImplementedError

    def push_ack(self, events: Sequence[PushEvent]) -> PushAck:
        return PushAck(200, b'{"code":0,"msg":"success"}')

    # -- logistics -----------------------------------------------------------------------
    @abstractmethod
    async def ship(self, request: ShipRequest) -> None:
        """Push a tracking number. Raise Rejected(reason="already_shipped") when the
        platform says the order (or these lines) already carry a waybill."""

    # -- auth ----------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        """Exchange the refresh token; the result keeps the rotated refresh token."""
        raise NotImplementedError


class TrackingProvider(ABC):
    """A parcel-tracking source (Kuaidi100, …): one capability, tracking events for
    (carrier, number), plus subscription callbacks where the provider pushes."""

    platform: ClassVar[str]
    title: ClassVar[str]
    version: ClassVar[str] = "1.0.0"
    capabilities: ClassVar[frozenset[Capability]]
    carriers: ClassVar[CarrierTable]
    # provider state code -> canonical tracking status (total)
    status_table: ClassVar[Mapping[str, TrackingStatus]]
    default_base_url: ClassVar[str]
    sandbox_class: ClassVar[type[Sandbox] | None] = None

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        self.shop = shop
        self.http = http

    @abstractmethod
    async def track(self, carrier: str, tracking_number: str, *, phone: str = "") -> TrackingResult:
        """The journey so far; raise NotFound when the provider knows no such parcel."""

    async def subscribe(self, carrier: str, tracking_number: str, callback_url: str, *,
                        phone: str = "") -> None:
        raise NotImplementedError

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> TrackingResult:
        """Check a pushed update's signature (SignatureInvalid) and parse it."""
        raise NotImplementedError

    def callback_ack(self) -> PushAck:
        return PushAck(200, b'{"result":true,"returnCode":"200","message":"ok"}')
