"""The connector contract suite: every promise a connector makes, checked against its sandbox.

A connector author gets the whole suite with one class (the singer-sdk way)::

    from core.testing.contract import ConnectorContract

    class TestMyPlatform(ConnectorContract):
        connector_class = MyConnector

Each test builds a fresh `connector_class.sandbox_class` on a `ManualClock` (no sleeps, no
network), wires the connector to it with `core.testing.connect` exactly as the core wires a
shop, drives the sandbox through the operator API every sandbox shares (`add_item`,
`place_order`, `pay`, `record_shipment`, `cancel`, fault switches …) and checks what the
connector makes of it. The suite knows no platform: it uses only the connector contract
(`core.connector`), the sandbox base (`core.sandbox`) and the canonical tables
(`core.records`, `core.carriers`). A check that fails says what is wrong in plain words and
what to change.

What a passing suite guarantees:

- orders: `iter_orders` pages a window to its end and yields every order modified in
  [start, end) — the one modified exactly at `start` included, the one at `end` left to
  the next window — each once on a quiet sandbox; `get_order` maps every canonical field
  (aware datetimes, integer money ≥ 0, lines with the merchant codes and quantities that were
  ordered) and answers NotFound for an unknown id; every base lifecycle state (unpaid, paid,
  part shipped, shipped, completed, cancelled, refunded) maps to its canonical status through
  a status the table knows;
- listings and stock: `iter_listings` reaches the last page; `set_stock` is absolute and
  idempotent (7 twice holds 7; 0 works) and splits batches larger than `limits.max_batch`;
- logistics: `ship` sends the platform's code for the canonical carrier and the waybill;
  shipping again is `Rejected(reason="already_shipped")`; partial shipment ships only the
  named lines (when PARTIAL_SHIP); the carrier table covers the canonical carriers and the
  sandbox accepts every code in it;
- errors: each fault switch of the sandbox comes out as its canonical error — RATE_LIMIT as
  RateLimited once retries are spent (and success when it clears), SERVER_ERROR and TIMEOUT
  as Transient, MALFORMED as BadResponse —, no secret appears in an error message;
- auth: a call made with wrong secrets (app secret and every extra secret) is refused and
  changes nothing; an expired token is refreshed exactly once, the call retried, and the
  rotated refresh token kept (a dead refresh token is AuthExpired); without REFRESH_TOKEN an
  expired token is AuthExpired;
- push (PUSH_ORDERS): `verify_push` accepts the sandbox's own push, names the order, and
  refuses the same body with one byte changed (SignatureInvalid).

Knobs, all optional, for what only the author knows: `make_sandbox` / `client_secrets`
(sandbox construction and extra secrets), `shop_options`, `base_url`, `listing_page_size`
(the platform's item page size, if above 200), `signed_requests = False` for platforms
whose calls carry a bearer token only, `expiring_tokens = False` for long-lived API keys,
`push_body_signed = False` where a push's signature does not cover its body (then only hints
may come out of it).

Paging is exercised past the first page while `limits.page_size` ≤ 200: the suite seeds
`page_size + 1` orders. Above that it seeds 200 and checks only that all come back, to keep
each connector's run well under ten seconds.

The class is marked `pytest.mark.asyncio`, and its fixture is a `pytest_asyncio` fixture,
so it runs whether or not the author's project sets `asyncio_mode = "auto"`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, NoReturn, TypeVar, cast

import httpx
import pytest
import pytest_asyncio

from core.carriers import CARRIERS, DOMESTIC, INTERNATIONAL, tracking_matches
from core.clock import ManualClock
from core.connector import CarrierTable, Connector
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    NotFound,
    RateLimited,
    Rejected,
    SignatureInvalid,
    Transient,
)
from core.records import (
    Capability,
    LineStatus,
    OrderRecord,
    OrderStatus,
    ShipRequest,
    StockUpdate,
    UnreadableOrder,
)
from core.sandbox import Fault, Sandbox, SandboxItem, SandboxOrder
from core.testing import connect
from core.tokens import RefreshingTokens

T = TypeVar("T")

MAX_SEEDED_ORDERS = 200  # above this page size the suite does not walk past page one
MAX_SEEDED_BATCH = 200
PERSISTENT = 20  # injected more often than any retry policy tries

# Waybills that pass `core.carriers` formats: prefix + this many digits.
_WAYBILL_SHAPES: dict[str, tuple[str, int]] = {
    "SF": ("SF", 12), "ZTO": ("75", 12), "YTO": ("YT", 13), "STO": ("77", 12),
    "YUNDA": ("31", 12), "JT": ("JT", 13), "EMS": ("1", 12), "POSTB": ("9", 12),
    "JD": ("JDVA", 11), "DBL": ("DPK", 12), "UPS": ("1Z", 16), "FEDEX": ("", 12),
    "DHL": ("", 10), "USPS": ("9", 21),
}
_PREFERRED_CARRIERS = ("ZTO", "SF", "YTO", "STO", "YUNDA", "JT", "EMS", "POSTB", "JD", "DBL",
                       "UPS", "FEDEX", "DHL", "USPS")
_serials = itertools.count(1)

# The base sandbox's lifecycle states and what a connector must make of each.
LIFECYCLE: dict[str, tuple[OrderStatus, tuple[LineStatus, ...]]] = {
    "unpaid": (OrderStatus.UNPAID, (LineStatus.OPEN, LineStatus.OPEN)),
    "paid": (OrderStatus.PAID, (LineStatus.OPEN, LineStatus.OPEN)),
    "part_shipped": (OrderStatus.PAID, (LineStatus.SHIPPED, LineStatus.OPEN)),
    "shipped": (OrderStatus.SHIPPED, (LineStatus.SHIPPED, LineStatus.SHIPPED)),
    "completed": (OrderStatus.COMPLETED, (LineStatus.SHIPPED, LineStatus.SHIPPED)),
    "cancelled": (OrderStatus.CANCELLED, (LineStatus.CANCELLED, LineStatus.CANCELLED)),
    "refunded": (OrderStatus.REFUNDED, (LineStatus.REFUNDED, LineStatus.REFUNDED)),
    "refunded_after_shipping": (OrderStatus.REFUNDED,
                                (LineStatus.REFUNDED, LineStatus.REFUNDED)),
}
# States a platform may hide from sellers (JD and PDD never show unpaid orders).
_MAY_BE_HIDDEN = frozenset({"unpaid", "cancelled"})
_CONNECTOR_STATUSES = frozenset(OrderStatus) - {OrderStatus.APPROVED, OrderStatus.ON_HOLD}

# fault switch -> (times injected, canonical error expected or None for success, advice)
FAULTS: dict[str, tuple[Fault, int, type[ConnectorError] | None, str]] = {
    "rate_limit_persistent": (
        Fault.RATE_LIMIT, PERSISTENT, RateLimited,
        "map the platform's rate-limit answer (the sandbox's fault_response(RATE_LIMIT)) to "
        "RateLimited in the client's ErrorTable, with retry_after when the platform says"),
    "rate_limit_once": (
        Fault.RATE_LIMIT, 1, None,
        "a single rate-limit answer must be retried by PlatformClient.call: map it to "
        "RateLimited (retriable), not Rejected"),
    "server_error": (
        Fault.SERVER_ERROR, PERSISTENT, Transient,
        "map the platform's 'system busy' / 5xx answer (fault_response(SERVER_ERROR)) to "
        "Transient"),
    "server_error_once": (
        Fault.SERVER_ERROR, 1, None,
        "a single 'system busy' answer must be retried: map it to Transient"),
    "timeout": (
        Fault.TIMEOUT, PERSISTENT, Transient,
        "send requests through PlatformClient.call, which turns httpx timeouts into Transient"),
    "malformed": (
        Fault.MALFORMED, PERSISTENT, BadResponse,
        "a body that does not parse must raise BadResponse (core.http.parse_json does)"),
}


def sample_waybill(carrier: str) -> str:
    """A fresh tracking number in `carrier`'s format (`core.carriers`), unique per process."""
    prefix, digits = _WAYBILL_SHAPES.get(carrier, ("T", 12))
    body = 3 * 10 ** (digits - 1) + 7919 * next(_serials)
    number = f"{prefix}{body % 10 ** digits:0{digits}d}"
    if carrier in CARRIERS and not tracking_matches(carrier, number):
        raise AssertionError(f"contract suite bug: {number} is not a {carrier} waybill")
    return number


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=True)


def _check(condition: bool, message: str) -> None:
    if not condition:
        _fail(message)


def _aware(moment: datetime | None) -> bool:
    return moment is not None and moment.tzinfo is not None and moment.utcoffset() is not None


def _same_second(a: datetime, b: datetime) -> bool:
    return abs((a - b).total_seconds()) < 1


def _is_money(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tamper(body: bytes, hint: str) -> bytes:
    """The body with one byte changed, keeping it the same kind of text: a digit of `hint`
    (the order id) when it appears in plain text, else a letter or digit near the middle."""
    data = bytearray(body)
    at = body.find(hint.encode()) if hint else -1
    index = at + len(hint) - 1 if at >= 0 else len(data) // 2
    for probe in itertools.chain(range(index, len(data)), range(index - 1, -1, -1)):
        char = chr(data[probe])
        if char.isdigit():
            data[probe] = ord("0" if char != "0" else "1")
            return bytes(data)
        if char.isascii() and char.isalpha():
            data[probe] = ord("A" if char != "A" else "B")
            return bytes(data)
    data[index] ^= 0x01
    return bytes(data)


class ContractShop:
    """One test's world: a manual clock, a fresh sandbox and a connector wired to it."""

    def __init__(self, suite: ConnectorContract, clock: ManualClock, sandbox: Sandbox) -> None:
        self.suite = suite
        self.clock = clock
        self.sandbox = sandbox
        self.capabilities = suite.connector_class.capabilities
        self.limits = suite.connector_class.limits
        # platforms where an order holds one SKU line (a cart becomes several orders)
        self.max_lines = sandbox.max_lines_per_order or 2
        self._carrier: str | None = None  # the first carrier the platform took
        self._opened: list[Connector] = []
        self.connector = self.connect()

    def connect(self, *, wrong_secrets: bool = False) -> Connector:
        """A connector for the shop; `wrong_secrets`: every secret it holds is wrong."""
        refreshable = Capability.REFRESH_TOKEN in self.capabilities
        extra = self.suite.client_secrets(self.sandbox)
        if wrong_secrets:
            extra = {name: _wrong(value) for name, value in extra.items()}
        connector = connect(
            self.suite.connector_class, self.sandbox, clock=self.clock,
            base_url=self.suite.base_url, options=dict(self.suite.shop_options),
            extra_secrets=extra,
            access_token=next(iter(self.sandbox.access_tokens), ""),
            # a shop of a platform without refresh holds no refresh token
            refresh_token=next(iter(self.sandbox.refresh_tokens), "") if refreshable else "",
            app_secret=_wrong(self.sandbox.app_secret) if wrong_secrets else None)
        self._opened.append(connector)
        return connector

    @property
    def tokens(self) -> RefreshingTokens:
        return cast(RefreshingTokens, self.connector.shop.tokens)

    async def close(self) -> None:
        for connector in self._opened:
            await connector.http.aclose()

    # -- seeding -----------------------------------------------------------------------------
    def add_item(self, code: str, *, skus: int = 2, quantity: int = 1000,
                 prices: Sequence[int] = (9900, 12900)) -> SandboxItem:
        """An item `code` with SKUs `code-0`, `code-1`, … priced from `prices` in turn."""
        return self.sandbox.add_item(
            f"Contract {code}", code, prices[0],
            skus=[(f"{code}-{n}", quantity, prices[n % len(prices)]) for n in range(skus)])

    def place(self, lines: Sequence[tuple[str, int]], **options: Any) -> SandboxOrder:
        """A buyer's order of `lines`, cut to as many lines as one order may hold here."""
        return self.sandbox.place_order(lines[:self.max_lines], **options)

    def tick(self, seconds: float = 1) -> None:
        self.clock.advance(seconds)

    def settle(self) -> None:
        """Move past the platform's late-commit lag so every window asked for is closed."""
        self.clock.advance(self.limits.modified_lag + timedelta(minutes=5))

    def carriers(self) -> list[str]:
        """The table's canonical carriers, most common first."""
        codes = self.connector.carrier_table().canonical_codes()
        if not codes:
            _fail(f"{self.suite.connector_class.__name__}.carriers maps no carrier: map the "
                  "canonical codes of core.carriers to the platform's carrier codes")
        rank = {code: n for n, code in enumerate(_PREFERRED_CARRIERS)}
        return sorted(codes, key=lambda c: (rank.get(c, len(rank)), c))

    def carrier(self) -> tuple[str, str]:
        """(canonical code, platform code) of the carrier the suite ships with."""
        chosen = self._carrier or self.carriers()[0]
        return chosen, self.connector.carrier_table().to_platform(chosen)

    async def ship(self, order_id: str, line_ids: Sequence[str] = ()) -> tuple[str, str]:
        """Ship through the connector with the first carrier the platform takes for such an
        order (some refuse carriers per order type: Rejected(reason="bad_carrier"));
        returns (canonical carrier, waybill)."""
        for canonical in [self._carrier] if self._carrier else self.carriers():
            waybill = sample_waybill(canonical)
            try:
                await self.connector.ship(ShipRequest(order_id, canonical, waybill,
                                                      tuple(line_ids)))
            except Rejected as exc:
                if exc.reason == "bad_carrier" and self._carrier is None:
                    continue
                raise
            self._carrier = canonical
            return canonical, waybill
        _fail("ship() refused every carrier of the table (Rejected, reason bad_carrier)")

    def drive(self, state: str) -> SandboxOrder:
        """A two-line order brought to one of the base sandbox's lifecycle states."""
        if not self._has("CL-0"):
            self.add_item("CL", skus=2)
        paid = state not in ("unpaid", "cancelled")
        order = self.place([("CL-0", 1), ("CL-1", 2)], paid=paid)
        self.tick()
        canonical, code = self.carrier()
        if state == "part_shipped":
            self.sandbox.record_shipment(order, code, sample_waybill(canonical),
                                         [order.lines[0].line_id])
        elif state in ("shipped", "completed", "refunded_after_shipping"):
            self.sandbox.record_shipment(order, code, sample_waybill(canonical), [])
        self.tick()
        if state == "completed":
            self.sandbox.complete(order.order_id)
        elif state in ("cancelled", "refunded"):
            self.sandbox.cancel(order.order_id)
        elif state == "refunded_after_shipping":
            self.sandbox.refund_after_shipping(order.order_id)
        self.tick()
        return order

    def listing_code(self, merchant_code: str, platform_sku_id: str) -> str:
        """The seeded outer id a listing stands for: its merchant code, or — on platforms
        whose SKUs carry no merchant code (Dewu's catalogue) — the SKU with its id."""
        if merchant_code:
            return merchant_code
        for item in self.sandbox.items.values():
            for sku in item.skus:
                if sku.sku_id == platform_sku_id:
                    return sku.outer_id
        return ""

    def _has(self, outer_id: str) -> bool:
        try:
            self.sandbox.find_sku(outer_id)
        except KeyError:
            return False
        return True

    async def stock_ids(self, codes: Iterable[str]) -> dict[str, tuple[str, str]]:
        """merchant code -> (platform item id, platform sku id), as the connector lists them
        (or as the sandbox holds them when the connector cannot list)."""
        wanted = list(codes)
        if Capability.LIST_LISTINGS not in self.capabilities:
            found: dict[str, tuple[str, str]] = {}
            for code in wanted:
                item, sku = self.sandbox.find_sku(code)
                found[code] = (item.item_id, sku.sku_id if sku else "")
            return found
        listed = {self.listing_code(r.merchant_code, r.platform_sku_id):
                  (r.platform_item_id, r.platform_sku_id)
                  async for r in self.connector.iter_listings()}
        missing = [c for c in wanted if c not in listed]
        _check(not missing, f"iter_listings did not list the SKUs {missing} the sandbox holds: "
                            "each SKU's merchant code (outer id) must come back")
        return {code: listed[code] for code in wanted}


def _wrong(secret: str) -> str:
    return "wrong-" + secret[::-1]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _no_secrets(exc: BaseException, secrets: Iterable[str], what: str) -> None:
    text = f"{exc} {getattr(exc, 'platform_message', '')}"
    leaked = [s for s in secrets if s and len(s) >= 6 and s in text]
    _check(not leaked, f"the error raised by {what} shows a secret ({len(leaked)} found): "
                       "never put app secrets, tokens or signatures into error messages")


async def _refused(call: Awaitable[T], what: str) -> ConnectorError:
    try:
        await call
    except ConnectorError as exc:
        return exc
    _fail(f"{what} with a wrong app secret (and every extra secret wrong too) succeeded: "
          "the sandbox must check the signature and refuse the call as the platform does (a sandbox that accepts what the "
          "platform refuses is a bug). If this platform does not sign calls with the app "
          "secret, set `signed_requests = False` on the test class.")


@pytest.mark.asyncio
class ConnectorContract:
    """Subclass as `TestSomething(ConnectorContract)` and set `connector_class`."""

    connector_class: ClassVar[type[Connector]]
    shop_options: ClassVar[Mapping[str, Any]] = {}
    base_url: ClassVar[str | None] = None  # None: the connector's default_base_url
    listing_page_size: ClassVar[int] = 200  # seeds this + 1 listings
    signed_requests: ClassVar[bool] = True
    expiring_tokens: ClassVar[bool] = True
    push_body_signed: ClassVar[bool] = True

    # -- hooks ---------------------------------------------------------------------------------
    def make_sandbox(self, clock: ManualClock) -> Sandbox:
        """A fresh sandbox on `clock`; override when the sandbox needs arguments."""
        sandbox_class = self.connector_class.sandbox_class
        assert sandbox_class is not None
        return sandbox_class(clock=clock)

    def client_secrets(self, sandbox: Sandbox) -> dict[str, str]:
        """Extra secrets the connector needs (ShopContext.extra_secrets)."""
        return sandbox.client_secrets()

    @pytest_asyncio.fixture
    async def shop(self) -> AsyncIterator[ContractShop]:
        if getattr(self, "connector_class", None) is None:
            _fail(f"{type(self).__name__} does not say which connector to test: set "
                  "`connector_class = YourConnector` on the class")
        if self.connector_class.sandbox_class is None:
            pytest.skip(f"{self.connector_class.__name__} ships no sandbox "
                        "(sandbox_class is None): the contract runs against a sandbox")
        clock = ManualClock()
        world = ContractShop(self, clock, self.make_sandbox(clock))
        try:
            yield world
        finally:
            await world.close()

    def require(self, capability: Capability) -> None:
        if capability not in self.connector_class.capabilities:
            pytest.skip(f"{self.connector_class.__name__} does not declare {capability.name}")

    # -- what the class declares ----------------------------------------------------------------
    async def test_declares_its_platform_facts(self) -> None:
        cls = self.connector_class
        problems = []
        if not getattr(cls, "platform", "") or cls.platform != cls.platform.lower():
            problems.append("`platform` must be the lower-case name the entry point uses")
        if not getattr(cls, "title", ""):
            problems.append("`title` is empty: give the platform's display name")
        caps = getattr(cls, "capabilities", None)
        if not isinstance(caps, frozenset) or not all(isinstance(c, Capability) for c in caps):
            problems.append("`capabilities` must be a frozenset of core.records.Capability")
        else:
            if caps & {Capability.TRACKING, Capability.TRACKING_PUSH}:
                problems.append("tracking capabilities belong to a TrackingProvider")
            if Capability.PARTIAL_SHIP in caps and Capability.SHIP not in caps:
                problems.append("PARTIAL_SHIP is declared without SHIP")
        limits = getattr(cls, "limits", None)
        if limits is None:
            problems.append("`limits` is missing: declare page size, window, batch and rate")
        elif not (limits.page_size >= 1 and limits.max_window > timedelta(0)
                  and limits.max_batch >= 1 and limits.requests_per_second > 0):
            problems.append(f"`limits` has a non-positive value: {limits}")
        if not isinstance(getattr(cls, "carriers", None), CarrierTable):
            problems.append("`carriers` must be a CarrierTable")
        sandbox_class = getattr(cls, "sandbox_class", None)
        if sandbox_class is not None and sandbox_class.platform != getattr(cls, "platform", ""):
            problems.append(f"sandbox_class.platform is {sandbox_class.platform!r}, the "
                            f"connector's platform {getattr(cls, 'platform', '')!r}")
        _check(not problems, f"{cls.__name__} declares its facts incompletely:\n- "
                             + "\n- ".join(problems))

    async def test_status_table_maps_onto_canonical_statuses(self) -> None:
        table = self.connector_class.status_table
        _check(len(table) > 0, "status_table is empty: map every order status string the "
                               "platform documents to a canonical OrderStatus")
        wrong = {k: v for k, v in table.items() if not isinstance(v, OrderStatus)}
        _check(not wrong, f"status_table values must be OrderStatus members: {wrong}")
        review = {k: v for k, v in table.items() if v not in _CONNECTOR_STATUSES}
        _check(not review, f"status_table maps {sorted(review)} to the core's own review "
                           "states (APPROVED/ON_HOLD); platforms map to UNPAID, PAID, SHIPPED, "
                           "COMPLETED, CANCELLED or REFUNDED")
        blank = [k for k in table if not isinstance(k, str) or not k]
        _check(not blank, "status_table keys must be the platform's status strings")

    async def test_carrier_table_covers_the_canonical_carriers(self) -> None:
        codes = self.connector_class.carriers.canonical_codes()
        _check(bool(codes), "carriers maps no carrier: map every canonical code of "
                            "core.carriers.DOMESTIC (Chinese platforms) or INTERNATIONAL")
        unknown = sorted(codes - CARRIERS.keys())
        _check(not unknown, f"carriers maps {unknown}, which are not canonical carrier codes "
                            "(core.carriers.CARRIERS)")
        if codes >= INTERNATIONAL:
            return  # an international platform with a subset of domestic carriers
        required = DOMESTIC if codes & DOMESTIC else INTERNATIONAL
        missing = sorted(required - codes)
        kind = "domestic" if required is DOMESTIC else "international"
        _check(not missing, f"the carrier table maps some {kind} carriers but not {missing}: "
                            f"a platform that ships {kind} parcels must map every one of them")

    # -- orders ----------------------------------------------------------------------------------
    async def test_iter_orders_pages_to_the_end_and_yields_each_order_once(
            self, shop: ContractShop) -> None:
        self.require(Capability.PULL_ORDERS)
        page_size = shop.limits.page_size
        count = page_size + 1 if page_size <= MAX_SEEDED_ORDERS else MAX_SEEDED_ORDERS
        shop.add_item("CP", skus=1, quantity=count + 10)
        step = 1 if shop.limits.max_window > timedelta(seconds=count + 1) else 0
        start = shop.clock.now()
        placed = []
        for _ in range(count):
            placed.append(shop.sandbox.place_order([("CP-0", 1)]).order_id)
            shop.tick(step)
        end = start + timedelta(seconds=max(step * count, 1))
        shop.settle()
        records = await _pulled(shop.connector.iter_orders(start, end))
        ids = Counter(r.platform_order_id for r in records)
        missing = [p for p in placed if p not in ids]
        if missing:
            remainder = count % page_size
            if remainder and len(missing) == remainder:
                why = "the last page was not read"
            elif len(missing) % page_size == 0:
                why = f"{len(missing) // page_size} whole page(s) of {page_size} were not read"
            else:
                why = "orders were lost between pages"
            _fail(f"iter_orders yielded {count - len(missing)} of {count} orders modified in "
                  f"[{start}, {end}): {why} (page size {page_size}; e.g. {missing[:3]} "
                  "missing). Page until the platform says there is no more — by its total "
                  "count, has_next flag or cursor — never stop at a short or a full page.")
        twice = sorted(i for i, n in ids.items() if n > 1)
        _check(not twice, f"iter_orders yielded {len(twice)} orders more than once (e.g. "
                          f"{twice[:3]}) although nothing changed while paging: a page was "
                          "read twice — check the page numbering")
        unpaid = [r.platform_order_id for r in records
                  if r.platform_order_id in placed and r.status is not OrderStatus.PAID]
        _check(not unpaid, f"orders placed paid came back with another status: {unpaid[:3]}")

    async def test_iter_orders_loses_no_order_at_the_window_boundaries(
            self, shop: ContractShop) -> None:
        self.require(Capability.PULL_ORDERS)
        width = min(shop.limits.max_window, timedelta(minutes=10))
        one = timedelta(seconds=1)
        shop.add_item("CB", skus=1)
        start = shop.clock.now() + timedelta(hours=1)
        end = start + width
        # created an hour before: a connector that filters by creation time misses them all
        moments = {"before the window": start - one, "at the window start": start,
                   "one second before the window end": end - one, "at the window end": end}
        orders = {label: shop.sandbox.place_order([("CB-0", 1)], paid=False)
                  for label in moments}
        for label, moment in moments.items():
            shop.clock.set(moment)
            shop.sandbox.pay(orders[label].order_id)
        shop.clock.set(end + width)
        shop.settle()
        first = {r.platform_order_id for r in await _pulled(shop.connector.iter_orders(start, end))}
        second = {r.platform_order_id
                  for r in await _pulled(shop.connector.iter_orders(end, end + width))}
        for label in ("at the window start", "one second before the window end"):
            _check(orders[label].order_id in first,
                   f"an order modified {label} ({moments[label]}) was not yielded by "
                   f"iter_orders({start}, {end}): [start, end) includes its start; query the "
                   "platform by modified (update) time, not creation time, and do not shift "
                   "or shrink the bounds")
        _check(orders["at the window end"].order_id in first | second,
               f"an order modified exactly at {end} was yielded by neither [{start}, {end}) "
               f"nor [{end}, {end + width}): the moment between two windows is lost")

    async def test_get_order_maps_every_canonical_field(self, shop: ContractShop) -> None:
        shop.add_item("CF", skus=2, prices=(9900, 12900))
        order = shop.place([("CF-0", 2), ("CF-1", 1)], post_fee_fen=800,
                           buyer_remark="请尽快发货")
        shop.tick()
        record = await shop.connector.get_order(order.order_id)
        _check(isinstance(record, OrderRecord), f"get_order returned {type(record).__name__}, "
                                                "not an OrderRecord")
        problems = _order_problems(record, order, self.connector_class.status_table)
        goods = order.goods_fen
        if record.total_fen != goods:
            problems.append(f"total_fen is {record.total_fen}, the goods total is {goods} fen "
                            "(money is integer fen: 99.00 yuan is 9900)")
        if record.post_fee_fen != 800:
            problems.append(f"post_fee_fen is {record.post_fee_fen}, the post fee is 800 fen")
        if record.paid_fen != goods + 800:
            problems.append(f"paid_fen is {record.paid_fen}; the buyer paid {goods + 800} fen "
                            "(goods plus post fee)")
        if record.status is not OrderStatus.PAID:
            problems.append(f"a paid order maps to {record.status}, not PAID")
        prices = {"CF-0": 9900, "CF-1": 12900}
        for line in record.lines:
            expected = prices.get(line.merchant_code)
            if expected is not None and line.unit_price_fen != expected:
                problems.append(f"line {line.merchant_code} has unit_price_fen "
                                f"{line.unit_price_fen}; the SKU costs {expected} fen")
        _check(not problems, f"get_order({order.order_id}) maps an incomplete OrderRecord:\n- "
                             + "\n- ".join(problems))

    async def test_get_order_of_an_unknown_id_is_not_found(self, shop: ContractShop) -> None:
        unknown = shop.sandbox.new_order_id()
        try:
            await shop.connector.get_order(unknown)
        except NotFound:
            return
        except ConnectorError as exc:
            _fail(f"get_order of an id the platform does not know raised {_describe(exc)}; "
                  "expected NotFound — map the platform's 'no such order' answer to NotFound")
        _fail(f"get_order({unknown!r}) returned a record for an order that does not exist")

    @pytest.mark.parametrize("state", list(LIFECYCLE))
    async def test_every_lifecycle_state_maps_to_its_canonical_status(
            self, shop: ContractShop, state: str) -> None:
        if state == "part_shipped":
            self.require(Capability.PARTIAL_SHIP)
            if shop.max_lines < 2:
                pytest.skip("an order holds one line here: nothing to ship in part")
        expected, line_states = LIFECYCLE[state]
        order = shop.drive(state)
        try:
            record = await shop.connector.get_order(order.order_id)
        except NotFound:
            if state in _MAY_BE_HIDDEN:
                pytest.skip(f"the platform hides {state} orders (get_order answered NotFound)")
            raise
        table = self.connector_class.status_table
        _check(record.platform_status in table,
               f"a {state} order comes back with platform status {record.platform_status!r}, "
               "which status_table does not map: the table must list every status the "
               "platform documents")
        _check(record.status is expected,
               f"a {state} order (platform status {record.platform_status!r}) maps to "
               f"{record.status.name}; expected {expected.name}")
        by_code = {line.merchant_code: line.status for line in record.lines}
        for line, wanted in zip(order.lines, line_states, strict=False):
            code = line.outer_id
            got = by_code.get(code)
            # OPEN is tolerated where the order status says it all: the core derives it
            tolerated = {wanted} if state == "part_shipped" else {wanted, LineStatus.OPEN}
            _check(got in tolerated,
                   f"in a {state} order, line {code} maps to "
                   f"{got.name if got else 'nothing'}; expected {wanted.name}"
                   + ("" if state == "part_shipped" else " (or OPEN)"))

    # -- listings and stock ----------------------------------------------------------------------
    async def test_iter_listings_pages_to_the_end(self, shop: ContractShop) -> None:
        self.require(Capability.LIST_LISTINGS)
        count = self.listing_page_size + 1
        seeded = {}
        for n in range(count):
            code = f"CI{n:04d}"
            shop.sandbox.add_item(f"Contract item {n}", code, 1000 + n,
                                  skus=[(f"{code}-0", n % 7 + 1, 1000 + n)])
            seeded[f"{code}-0"] = (n % 7 + 1, 1000 + n)
        records = [r async for r in shop.connector.iter_listings()]
        codes = [shop.listing_code(r.merchant_code, r.platform_sku_id) for r in records]
        listed = Counter(codes)
        missing = sorted(set(seeded) - set(listed))
        _check(not missing, f"iter_listings yielded {count - len(missing)} of {count} seeded "
                            f"SKUs (e.g. {missing[:3]} missing): page the item list to its "
                            "end (seeded one more than `listing_page_size`)")
        twice = sorted(c for c, n in listed.items() if c in seeded and n > 1)
        _check(not twice, f"iter_listings yielded {twice[:3]} more than once")
        wrong = [f"{code}: quantity {r.quantity}, price {r.price_fen}"
                 for code, r in zip(codes, records, strict=True) if code in seeded
                 and (r.quantity, r.price_fen) != seeded[code]]
        _check(not wrong, "listings map quantity or price wrongly (expected the sandbox's "
                          f"quantity and integer fen): {wrong[:3]}")

    async def test_set_stock_is_absolute_and_idempotent(self, shop: ContractShop) -> None:
        self.require(Capability.SET_STOCK)
        shop.add_item("CS", skus=2, quantity=100)
        ids = await shop.stock_ids(["CS-0"])
        for quantity, attempt in ((7, "once"), (7, "twice"), (0, "to 0")):
            outcomes = await shop.connector.set_stock([StockUpdate(*ids["CS-0"], quantity)])
            errors = [o.error for o in outcomes if o.error is not None]
            _check(len(outcomes) == 1 and not errors,
                   f"set_stock of one SKU to {quantity} ({attempt}) answered {outcomes!r}: "
                   "expected one outcome without error")
            held = shop.sandbox.stock_of("CS-0")
            _check(held == quantity,
                   f"after setting CS-0 to {quantity} {attempt}, the platform holds {held}: "
                   "stock is set as an absolute quantity, never as a delta")
            shop.tick()
        _check(shop.sandbox.stock_of("CS-1") == 100,
               "setting the stock of CS-0 changed CS-1: only the named SKU may change")

    async def test_set_stock_splits_batches_larger_than_max_batch(
            self, shop: ContractShop) -> None:
        self.require(Capability.SET_STOCK)
        count = min(shop.limits.max_batch + 1, MAX_SEEDED_BATCH + 1)
        codes = []
        for n in range(-(-count // 5)):
            shop.add_item(f"CK{n:03d}", skus=5, quantity=100)
            codes += [f"CK{n:03d}-{k}" for k in range(5)]
        codes = codes[:count]
        ids = await shop.stock_ids(codes)
        wanted = {code: index % 50 for index, code in enumerate(codes)}
        outcomes = await shop.connector.set_stock(
            [StockUpdate(*ids[code], quantity) for code, quantity in wanted.items()])
        _check(len(outcomes) == count, f"set_stock returned {len(outcomes)} outcomes for "
                                       f"{count} SKUs: one outcome per SKU")
        failed = [o for o in outcomes if o.error is not None]
        _check(not failed, f"set_stock of {count} SKUs (limits.max_batch is "
                           f"{shop.limits.max_batch}) failed for {len(failed)}, e.g. "
                           f"{failed[0].error if failed else ''!r}: split batches into chunks "
                           "of at most limits.max_batch")
        wrong = [c for c, q in wanted.items() if shop.sandbox.stock_of(c) != q]
        _check(not wrong, f"after one set_stock of {count} SKUs, {len(wrong)} hold another "
                          f"quantity (e.g. {wrong[:3]})")

    # -- logistics -------------------------------------------------------------------------------
    async def test_ship_sends_the_platform_carrier_code_and_waybill(
            self, shop: ContractShop) -> None:
        self.require(Capability.SHIP)
        shop.add_item("CH", skus=2)
        order = shop.place([("CH-0", 1), ("CH-1", 1)])
        canonical, waybill = await shop.ship(order.order_id)
        code = shop.connector.carrier_table().to_platform(canonical)
        shipments = shop.sandbox.shipments_of(order.order_id)
        _check(len(shipments) == 1, f"after one ship() the platform holds {len(shipments)} "
                                    "shipments for the order")
        _check(shipments[0].carrier_code == code,
               f"ship() with carrier {canonical} sent the platform code "
               f"{shipments[0].carrier_code!r}; the carrier table maps {canonical} to {code!r}")
        _check(shipments[0].tracking_number == waybill,
               f"ship() sent waybill {shipments[0].tracking_number!r} instead of {waybill!r}")
        open_lines = [line.outer_id for line in shop.sandbox.orders[order.order_id].lines
                      if line.state != "shipped"]
        _check(not open_lines, "ship() without line_ids must ship the whole order; the "
                               f"platform left {open_lines} unshipped")
        shop.tick()
        record = await shop.connector.get_order(order.order_id)
        # where shipping closes the order (WooCommerce's "completed") COMPLETED is right too
        _check(record.status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED),
               f"a shipped order maps to {record.status.name}, not SHIPPED")
        _check(waybill in record.tracking_numbers,
               f"OrderRecord.tracking_numbers is {record.tracking_numbers}: it must list the "
               f"waybills the platform holds ({waybill})")

    async def test_shipping_twice_is_rejected_as_already_shipped(
            self, shop: ContractShop) -> None:
        self.require(Capability.SHIP)
        shop.add_item("CT", skus=1)
        order = shop.sandbox.place_order([("CT-0", 1)])
        canonical, waybill = await shop.ship(order.order_id)
        request = ShipRequest(order.order_id, canonical, waybill)
        shop.tick()
        # the same request again is a retry: done (some platforms answer success), never twice
        await _expect_already_shipped(shop.connector.ship(request), "sending the same "
                                      "shipment again", success_allowed=True)
        await _expect_already_shipped(
            shop.connector.ship(ShipRequest(order.order_id, canonical,
                                            sample_waybill(canonical))),
            "shipping an already shipped order with another waybill")
        _check(len(shop.sandbox.shipments_of(order.order_id)) == 1,
               "shipping again added a second shipment on the platform")

    async def test_partial_shipment_ships_only_the_named_lines(self, shop: ContractShop) -> None:
        self.require(Capability.PARTIAL_SHIP)
        if shop.max_lines < 2:
            _fail("PARTIAL_SHIP is declared, but an order holds one line on this platform")
        shop.add_item("CQ", skus=2)
        order = shop.sandbox.place_order([("CQ-0", 1), ("CQ-1", 1)])
        record = await shop.connector.get_order(order.order_id)
        line_ids = {line.merchant_code: line.platform_line_id for line in record.lines}
        canonical, first = await shop.ship(order.order_id, (line_ids["CQ-0"],))
        states = {line.outer_id: line.state for line in shop.sandbox.orders[order.order_id].lines}
        _check(states == {"CQ-0": "shipped", "CQ-1": "open"},
               f"ship(line_ids=[CQ-0's line]) left the lines {states}: only the named line "
               "may ship")
        shop.tick()
        record = await shop.connector.get_order(order.order_id)
        by_code = {line.merchant_code: line.status for line in record.lines}
        _check(record.status is OrderStatus.PAID
               and by_code == {"CQ-0": LineStatus.SHIPPED, "CQ-1": LineStatus.OPEN},
               f"a partly shipped order maps to {record.status.name} with lines "
               f"{ {k: v.name for k, v in by_code.items()} }; expected PAID with CQ-0 SHIPPED "
               "and CQ-1 OPEN")
        await _expect_already_shipped(
            shop.connector.ship(ShipRequest(order.order_id, canonical,
                                            sample_waybill(canonical), (line_ids["CQ-0"],))),
            "shipping an already shipped line again with another waybill")
        second = sample_waybill(canonical)
        await shop.connector.ship(ShipRequest(order.order_id, canonical, second,
                                              (line_ids["CQ-1"],)))
        shop.tick()
        record = await shop.connector.get_order(order.order_id)
        _check(record.status is OrderStatus.SHIPPED,
               f"with every line shipped the order maps to {record.status.name}, not SHIPPED")
        _check({first, second} <= set(record.tracking_numbers),
               f"tracking_numbers {record.tracking_numbers} must list both waybills")

    async def test_every_carrier_in_the_table_is_accepted(self, shop: ContractShop) -> None:
        self.require(Capability.SHIP)
        table = shop.connector.carrier_table()
        shop.add_item("CC", skus=1, quantity=100)
        problems = []
        for canonical, code in table.items():
            order = shop.sandbox.place_order([("CC-0", 1)])
            try:
                await shop.connector.ship(ShipRequest(order.order_id, canonical,
                                                      sample_waybill(canonical)))
            except ConnectorError as exc:
                problems.append(f"{canonical} -> {code!r}: {_describe(exc)}")
                continue
            sent = [s.carrier_code for s in shop.sandbox.shipments_of(order.order_id)]
            if sent != [code]:
                problems.append(f"{canonical} -> {code!r}: the platform recorded {sent}")
            shop.tick()
        _check(not problems, "shipping with these carriers of the table failed (the sandbox "
                             "must know every platform code the table uses, and the code "
                             "must be the platform's):\n- " + "\n- ".join(problems))

    # -- errors ----------------------------------------------------------------------------------
    @pytest.mark.parametrize("case", list(FAULTS))
    async def test_fault_switches_map_to_canonical_errors(
            self, shop: ContractShop, case: str) -> None:
        fault, times, expected, advice = FAULTS[case]
        shop.add_item("CE", skus=1)
        order = shop.sandbox.place_order([("CE-0", 1)])
        shop.sandbox.faults.inject(fault, times)
        what = f"get_order with the sandbox's {fault.value} switch on " + (
            "for every call" if times > 1 else "for one call")
        try:
            await shop.connector.get_order(order.order_id)
        except ConnectorError as exc:
            if expected is None:
                _fail(f"{what} raised {_describe(exc)}; the retry should have succeeded — "
                      f"{advice}")
            if not isinstance(exc, expected):
                _fail(f"{what} raised {_describe(exc)}; expected {expected.__name__} — {advice}")
            _no_secrets(exc, _secrets(shop), what)
        else:
            if expected is not None:
                _fail(f"{what} returned a record; expected {expected.__name__} — {advice}")
        shop.sandbox.faults.clear()
        record = await shop.connector.get_order(order.order_id)
        _check(record.platform_order_id == order.order_id,
               "after the fault cleared, get_order did not return the order")

    # -- auth ------------------------------------------------------------------------------------
    async def test_a_wrong_secret_is_refused_and_changes_nothing(
            self, shop: ContractShop) -> None:
        if not self.signed_requests:
            pytest.skip("the platform does not sign calls with the app secret")
        shop.add_item("CW", skus=1, quantity=10)
        order = shop.sandbox.place_order([("CW-0", 1)])
        ids = (await shop.stock_ids(["CW-0"]) if Capability.SET_STOCK in shop.capabilities
               else {})
        generation = shop.sandbox.token_generation
        wrong = shop.connect(wrong_secrets=True)
        secrets = [*_secrets(shop), _wrong(shop.sandbox.app_secret)]
        exc = await _refused(wrong.get_order(order.order_id), "get_order")
        _no_secrets(exc, secrets, "a call with a wrong app secret")
        if Capability.SHIP in shop.capabilities:
            canonical, _ = shop.carrier()
            await _refused(wrong.ship(ShipRequest(order.order_id, canonical,
                                                  sample_waybill(canonical))), "ship")
            _check(not shop.sandbox.shipments_of(order.order_id),
                   "ship() with a wrong app secret left a shipment on the platform")
        if ids:
            try:
                outcomes = await wrong.set_stock([StockUpdate(*ids["CW-0"], 3)])
            except ConnectorError:
                outcomes = []
            _check(all(o.error is not None for o in outcomes),
                   "set_stock with a wrong app secret reported success")
            _check(shop.sandbox.stock_of("CW-0") == 9,
                   "set_stock with a wrong app secret changed the platform's stock")
        _check(shop.sandbox.token_generation == generation,
               "a call with a wrong app secret rotated the shop's tokens on the platform")

    async def test_an_expired_token_is_refreshed_once_and_the_rotation_kept(
            self, shop: ContractShop) -> None:
        shop.add_item("CA", skus=1)
        order = shop.sandbox.place_order([("CA-0", 1)])
        if Capability.REFRESH_TOKEN not in shop.capabilities:
            if not self.expiring_tokens:
                pytest.skip("the platform's credentials do not expire")
            shop.sandbox.expire_token()
            try:
                await shop.connector.get_order(order.order_id)
            except AuthExpired:
                return
            except ConnectorError as exc:
                _fail(f"with the access token expired, get_order raised {_describe(exc)}; "
                      "without REFRESH_TOKEN it must be AuthExpired (the operator "
                      "re-authorises the shop): map the platform's expired-token answer to "
                      "AuthExpired")
            _fail("the sandbox answered a call made with an expired access token: it must "
                  "refuse it as the platform does")
        before = shop.tokens.current()
        for round_no in (1, 2):
            shop.sandbox.expire_token()
            try:
                record = await shop.connector.get_order(order.order_id)
            except AuthExpired as exc:
                _fail(f"after the access token expired (round {round_no}), get_order raised "
                      f"AuthExpired: {exc}. The connector must refresh once and retry: map the "
                      "platform's expired-token answer to AuthExpired and make refresh_token "
                      "work (round 2 fails when the rotated refresh token was not kept)")
            _check(record.platform_order_id == order.order_id,
                   "after the refresh, get_order returned another order")
            _check(shop.tokens.refreshes == round_no,
                   f"one expiry caused {shop.tokens.refreshes - round_no + 1} refreshes; "
                   "expected exactly one")
            now = shop.tokens.current()
            _check(shop.sandbox.token_valid(now.access_token),
                   "the access token kept after the refresh is not the one the platform issued")
            _check(now.refresh_token in shop.sandbox.refresh_tokens,
                   "the refresh token kept after the refresh is not the one the platform "
                   "rotated to: refresh_token must return the new refresh token")
        _check(shop.tokens.current().access_token != before.access_token,
               "the access token did not change after two refreshes")

    async def test_a_dead_refresh_token_is_auth_expired(self, shop: ContractShop) -> None:
        self.require(Capability.REFRESH_TOKEN)
        shop.add_item("CD", skus=1)
        order = shop.sandbox.place_order([("CD-0", 1)])
        shop.sandbox.expire_token()
        shop.sandbox.refresh_tokens.clear()
        try:
            await shop.connector.get_order(order.order_id)
        except AuthExpired:
            return
        except ConnectorError as exc:
            _fail(f"with both tokens dead, get_order raised {_describe(exc)}; expected "
                  "AuthExpired so the operator is told to re-authorise the shop — map the "
                  "platform's invalid-refresh-token answer to AuthExpired")
        _fail("with both tokens dead, get_order succeeded: the sandbox must refuse an "
              "unknown refresh token")

    # -- push ------------------------------------------------------------------------------------
    async def test_push_verification_accepts_the_platform_push_and_refuses_tampering(
            self, shop: ContractShop) -> None:
        self.require(Capability.PUSH_ORDERS)
        shop.add_item("CU", skus=1)
        shop.sandbox.pushes.clear()
        order = shop.sandbox.place_order([("CU-0", 1)])
        deliveries = list(shop.sandbox.pushes)
        _check(bool(deliveries), "the sandbox rendered no push for a new paid order: "
                                 "PUSH_ORDERS is declared, so implement render_push")
        accepted = None
        for delivery in deliveries:
            headers = httpx.Headers(dict(delivery.headers))
            try:
                events = shop.connector.verify_push(headers, delivery.body)
            except SignatureInvalid as exc:
                _fail(f"verify_push refused the sandbox's own {delivery.topic!r} push: {exc} — "
                      "the connector's check and the sandbox's render_push disagree")
            if any(e.platform_order_id == order.order_id for e in events):
                accepted = delivery
                break
        if accepted is None:
            _fail(f"verify_push accepted the sandbox's pushes but no event names order "
                  f"{order.order_id}: PushEvent.platform_order_id must carry the order id")
        tampered = _tamper(accepted.body, order.order_id)
        try:
            events = shop.connector.verify_push(httpx.Headers(dict(accepted.headers)), tampered)
        except SignatureInvalid:
            return
        except BadResponse as exc:
            if self.push_body_signed:
                _fail(f"verify_push of the push with one byte changed raised {_describe(exc)}; "
                      "expected SignatureInvalid — verify the signature over the raw body "
                      "before parsing or decrypting it")
            return
        if self.push_body_signed:
            _fail("verify_push accepted the push with one byte of its body changed: the "
                  "signature must cover the raw body (if the platform signs no body, set "
                  "`push_body_signed = False` and return hints only)")
        trusted = [e.event_id for e in events if e.order is not None]
        _check(not trusted, "verify_push accepted a push with one byte of its unsigned body "
                            "changed and trusted its content (PushEvent.order is set): when "
                            "the platform does not sign the body, return hints only "
                            "(order=None) so the core re-reads the order")


async def _pulled(orders: AsyncIterator[OrderRecord | UnreadableOrder]) -> list[OrderRecord]:
    """The records of an iter_orders run; an order the connector could not map fails."""
    records, unreadable = [], []
    async for found in orders:
        if isinstance(found, UnreadableOrder):
            unreadable.append(found)
        else:
            records.append(found)
    if unreadable:
        first = unreadable[0]
        _fail(f"iter_orders could not map {len(unreadable)} orders its sandbox rendered (e.g. "
              f"{first.platform_order_id!r}: {first.error}): the mapping and the sandbox "
              "disagree about the platform's shapes")
    return records


def _secrets(shop: ContractShop) -> list[str]:
    tokens = shop.tokens.current()
    return [shop.sandbox.app_secret, tokens.access_token, tokens.refresh_token,
            *shop.suite.client_secrets(shop.sandbox).values()]


async def _expect_already_shipped(call: Awaitable[None], what: str, *,
                                  success_allowed: bool = False) -> None:
    try:
        await call
    except Rejected as exc:
        _check(exc.reason == "already_shipped",
               f"{what} raised Rejected with reason {exc.reason!r}: map the platform's "
               "'already shipped' answer to ErrorRule(Rejected, 'already_shipped')")
        return
    except ConnectorError as exc:
        _fail(f"{what} raised {_describe(exc)}; expected Rejected(reason='already_shipped') "
              "— the core treats that answer as done")
    if not success_allowed:
        _fail(f"{what} succeeded: the sandbox must refuse it with the platform's 'already "
              "shipped' answer")


def _order_problems(record: OrderRecord, order: SandboxOrder,
                    table: Mapping[str, OrderStatus]) -> list[str]:
    problems = []
    if record.platform_order_id != order.order_id:
        problems.append(f"platform_order_id is {record.platform_order_id!r}, the platform's id "
                        f"is {order.order_id!r}")
    if record.platform_status not in table:
        problems.append(f"platform_status {record.platform_status!r} is not in status_table")
    for name, mapped, truth in (("created_at", record.created_at, order.created),
                                ("modified_at", record.modified_at, order.modified),
                                ("paid_at", record.paid_at, order.paid_at)):
        if not _aware(mapped):
            problems.append(f"{name} is {mapped!r}: times must be timezone-aware "
                            "(platform times are usually Beijing time, core.clock.BEIJING)")
        elif truth is not None and mapped is not None and not _same_second(mapped, truth):
            problems.append(f"{name} is {mapped.isoformat()}, the platform says "
                            f"{truth.isoformat()} ({(mapped - truth).total_seconds():+.0f} s)")
    for name in ("total_fen", "paid_fen", "post_fee_fen"):
        if not _is_money(getattr(record, name)):
            problems.append(f"{name} is {getattr(record, name)!r}: money is an int of fen ≥ 0")
    ordered: Counter[str] = Counter()
    for placed in order.lines:
        ordered[placed.outer_id] += placed.quantity
    mapped_lines: Counter[str] = Counter()
    for line in record.lines:
        mapped_lines[line.merchant_code] += line.quantity
        if not line.platform_line_id or not line.platform_item_id:
            problems.append(f"line {line.merchant_code} lacks platform_line_id or "
                            "platform_item_id")
        if not (_is_money(line.unit_price_fen) and _is_money(line.paid_fen)):
            problems.append(f"line {line.merchant_code} money is not int fen ≥ 0")
        if not isinstance(line.quantity, int) or line.quantity <= 0:
            problems.append(f"line {line.merchant_code} quantity is {line.quantity!r}")
    if mapped_lines != ordered:
        problems.append(f"lines by merchant code are {dict(mapped_lines)}; the buyer ordered "
                        f"{dict(ordered)} (merchant code = the SKU's outer id)")
    if len({line.platform_line_id for line in record.lines}) != len(record.lines):
        problems.append("two lines share a platform_line_id")
    if not (record.address.province or record.address.detail):
        problems.append("the address is empty: map province/city/district/detail")
    return problems
