"""Sandboxes: stateful simulators of the platforms, for tests, the demo and benchmarks.

The base class owns what every platform shares — items with SKUs and stock, orders with
lines and shipments, tokens, the request log and the fault switches — and a small operator
API to seed and inspect that state. A platform sandbox (`connectors/<p>/sandbox.py`) adds
only its dialect: how requests are signed and routed, how state is rendered, which error
bodies it returns. A sandbox that accepts what the real platform would refuse is a bug.

Two ways in, one dispatcher:
- `transport()`: an httpx transport for in-process tests (a timeout fault raises
  httpx.ReadTimeout at once, optionally after the change was applied);
- `asgi()`: a Starlette app served over real HTTP on 127.0.0.1 (the timeout fault sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx

from core.clock import Clock, SystemClock
from core.http import WORK_HEADER


class Fault(enum.StrEnum):
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"  # the client gives up before the answer; the change is not applied
    TIMEOUT_AFTER_APPLY = "timeout_after_apply"  # the platform applied it, the answer is lost
    MALFORMED = "malformed"
    TOKEN_EXPIRED = "token_expired"


class PushFault(enum.StrEnum):
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    DROP = "drop"  # a webhook that never arrives: polling must catch it


class SoldOut(Exception):
    """The platform refuses an order above its listed quantity."""


@dataclass
class Faults:
    """Fault switches: queued one-shots (optionally for one API) and random rates."""

    seed: int = 0
    rates: dict[Fault, float] = field(default_factory=dict)
    push_rates: dict[PushFault, float] = field(default_factory=dict)
    _queue: list[tuple[Fault, str | None]] = field(default_factory=list)
    injected: list[tuple[Fault, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def inject(self, fault: Fault, times: int = 1, *, api: str | None = None) -> None:
        self._queue.extend([(fault, api)] * times)

    def clear(self) -> None:
        self._queue.clear()
        self.rates.clear()
        self.push_rates.clear()

    def draw(self, api: str) -> Fault | None:
        for index, (fault, only) in enumerate(self._queue):
            if only is None or only == api:
                del self._queue[index]
                self.injected.append((fault, api))
                return fault
        for fault, rate in self.rates.items():
            if rate and self.rng.random() < rate:
                self.injected.append((fault, api))
                return fault
        return None

    def draw_push(self, fault: PushFault) -> bool:
        rate = self.push_rates.get(fault, 0.0)
        return bool(rate) and self.rng.random() < rate


@dataclass
class SandboxSku:
    sku_id: str
    outer_id: str
    quantity: int
    price_fen: int
    spec: dict[str, str] = field(default_factory=dict)


@dataclass
class SandboxItem:
    item_id: str
    title: str
    outer_id: str
    price_fen: int
    on_sale: bool
    skus: list[SandboxSku]
    category_id: str
    modified: datetime
    created: datetime
    attributes: dict[str, str] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    quantity: int = 0  # only for items without SKUs

    @property
    def total_quantity(self) -> int:
        return sum(s.quantity for s in self.skus) if self.skus else self.quantity


@dataclass
class SandboxLine:
    line_id: str
    item_id: str
    sku_id: str
    outer_id: str
    title: str
    quantity: int
    price_fen: int
    state: str = "open"  # open, shipped, refunded, cancelled


@dataclass
class SandboxShipment:
    carrier_code: str  # the platform's carrier code
    tracking_number: str
    line_ids: tuple[str, ...]
    shipped_at: datetime


@dataclass
class SandboxOrder:
    order_id: str
    state: str  # unpaid, paid, part_shipped, shipped, completed, cancelled, refunded
    created: datetime
    modified: datetime
    paid_at: datetime | None
    lines: list[SandboxLine]
    post_fee_fen: int = 0
    discount_fen: int = 0
    buyer_remark: str = ""
    province: str = "浙江省"
    city: str = "杭州市"
    district: str = "西湖区"
    detail: str = "文三路 100 号"
    receiver: str = "张*"
    phone: str = "138****0000"
    shipments: list[SandboxShipment] = field(default_factory=list)
    version: int = 1

    @property
    def goods_fen(self) -> int:
        return sum(line.price_fen * line.quantity for line in self.lines)

    @property
    def paid_fen(self) -> int:
        return self.goods_fen + self.post_fee_fen - self.discount_fen


@dataclass(frozen=True, slots=True)
class SandboxRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass(frozen=True, slots=True)
class SandboxResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, payload: Any, status: int = 200,
                headers: Mapping[str, str] | None = None) -> SandboxResponse:
        return cls(status, json.dumps(payload, ensure_ascii=False).encode(),
                   {"content-type": "application/json;charset=UTF-8", **(headers or {})})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    api: str
    request: SandboxRequest
    at: datetime
    status: int


@dataclass(frozen=True, slots=True)
class PushDelivery:
    topic: str
    headers: Mapping[str, str]
    body: bytes


class Sandbox(ABC):
    platform: ClassVar[str]
    # id counters start at platform-looking numbers
    item_id_base: ClassVar[int] = 600_000_000_000
    sku_id_base: ClassVar[int] = 4_000_000_000_000
    order_id_base: ClassVar[int] = 2_000_000_000_000_000
    # platforms where one order holds one SKU line (a cart becomes several orders)
    max_lines_per_order: ClassVar[int | None] = None

    def __init__(self, *, app_key: str = "sandbox-app", app_secret: str = "sandbox-secret-0001",
                 access_token: str = "sandbox-access-token-1",
                 refresh_token: str = "sandbox-refresh-token-1",
                 clock: Clock | None = None, seed: int = 0,
                 timeout_seconds: float = 30.0) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.clock: Clock = clock or SystemClock()
        self.faults = Faults(seed=seed)
        self.timeout_seconds = timeout_seconds
        self.items: dict[str, SandboxItem] = {}
        self.orders: dict[str, SandboxOrder] = {}
        self.requests: list[RecordedRequest] = []
        self.access_tokens = {access_token}
        self.refresh_tokens = {refresh_token}
        self.token_generation = 1
        self.pushes: list[PushDelivery] = []  # pending deliveries (platforms that push)
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    def client_secrets(self) -> dict[str, str]:
        """Extra secrets a client of this sandbox needs (ShopContext.extra_secrets)."""
        return {}

    # -- ids -------------------------------------------------------------------------------
    def new_item_id(self) -> str:
        return str(self.item_id_base + next(self._ids))

    def new_sku_id(self) -> str:
        return str(self.sku_id_base + next(self._ids))

    def new_order_id(self) -> str:
        return str(self.order_id_base + next(self._ids))

    def new_line_id(self, order_id: str, index: int) -> str:
        return f"{order_id}{index:02d}"

    # -- operator API: seed and inspect ------------------------------------------------------
    def add_item(self, title: str, outer_id: str, price_fen: int, *,
                 skus: Sequence[tuple[str, int, int]] = (), quantity: int = 0,
                 on_sale: bool = True, category_id: str = "50010850",
                 spec_name: str = "规格") -> SandboxItem:
        """`skus`: (sku outer id, quantity, price fen). No skus: a single-SKU item."""
        now = self.clock.now()
        item = SandboxItem(
            item_id=self.new_item_id(), title=title, outer_id=outer_id, price_fen=price_fen,
            on_sale=on_sale, category_id=category_id, modified=now, created=now,
            skus=[SandboxSku(self.new_sku_id(), code, qty, price, {spec_name: code})
                  for code, qty, price in skus],
            quantity=quantity,
        )
        self.items[item.item_id] = item
        return item

    def find_sku(self, outer_id: str) -> tuple[SandboxItem, SandboxSku | None]:
        for item in self.items.values():
            for sku in item.skus:
                if sku.outer_id == outer_id:
                    return item, sku
            if not item.skus and item.outer_id == outer_id:
                return item, None
        raise KeyError(f"no SKU with outer id {outer_id!r} in the {self.platform} sandbox")

    def stock_of(self, outer_id: str) -> int:
        item, sku = self.find_sku(outer_id)
        return sku.quantity if sku else item.quantity

    def _set_stock(self, item: SandboxItem, sku: SandboxSku | None, quantity: int) -> None:
        if sku is None:
            item.quantity = quantity
        else:
            sku.quantity = quantity
        item.modified = self.clock.now()

    def place_order(self, lines: Sequence[tuple[str, int]], *, paid: bool = True,
                    buyer_remark: str = "", post_fee_fen: int = 0,
                    address: Mapping[str, str] | None = None) -> SandboxOrder:
        """A buyer orders (sku outer id, qty) lines; the platform deducts its own listed
        stock at once and refuses what it does not have listed (SoldOut)."""
        if self.max_lines_per_order is not None and len(lines) > self.max_lines_per_order:
            raise ValueError(f"a {self.platform} order holds at most {self.max_lines_per_order} "
                             "line(s): place one order per line")
        resolved = [(self.find_sku(code), qty) for code, qty in lines]
        for (item, sku), qty in resolved:
            have = sku.quantity if sku else item.quantity
            if not item.on_sale or have < qty:
                raise SoldOut(f"{item.title}: listed {have}, ordered {qty}")
        now = self.clock.now()
        order_id = self.new_order_id()
        order = SandboxOrder(order_id=order_id, state="paid" if paid else "unpaid",
                             created=now, modified=now, paid_at=now if paid else None,
                             lines=[], post_fee_fen=post_fee_fen, buyer_remark=buyer_remark)
        for key, value in (address or {}).items():
            setattr(order, key, value)
        for index, ((item, sku), qty) in enumerate(resolved, start=1):
            self._set_stock(item, sku, (sku.quantity if sku else item.quantity) - qty)
            order.lines.append(SandboxLine(
                line_id=self.new_line_id(order_id, index), item_id=item.item_id,
                sku_id=sku.sku_id if sku else "", outer_id=sku.outer_id if sku else item.outer_id,
                title=item.title, quantity=qty, price_fen=sku.price_fen if sku else item.price_fen))
        self.orders[order_id] = order
        self.notify(order, "created" if not paid else "paid")
        return order

    def _touch(self, order: SandboxOrder, state: str, topic: str) -> None:
        order.state = state
        order.modified = self.clock.now()
        order.version += 1
        self.notify(order, topic)

    def pay(self, order_id: str) -> None:
        order = self.orders[order_id]
        order.paid_at = self.clock.now()
        self._touch(order, "paid", "paid")

    def cancel(self, order_id: str) -> None:
        """Buyer cancels (unpaid) or the platform closes the order after a full refund
        before shipping. Listed stock comes back on the platform."""
        order = self.orders[order_id]
        refunded = order.state != "unpaid"
        for line in order.lines:
            if line.state == "open":
                item = self.items[line.item_id]
                sku = next((s for s in item.skus if s.sku_id == line.sku_id), None)
                self._set_stock(item, sku, (sku.quantity if sku else item.quantity)
                                + line.quantity)
                line.state = "refunded" if refunded else "cancelled"
        self._touch(order, "refunded" if refunded else "cancelled",
                    "refunded" if refunded else "cancelled")

    def refund_after_shipping(self, order_id: str) -> None:
        order = self.orders[order_id]
        for line in order.lines:
            line.state = "refunded"
        self._touch(order, "refunded", "refunded")

    def complete(self, order_id: str) -> None:
        self._touch(self.orders[order_id], "completed", "completed")

    def record_shipment(self, order: SandboxOrder, carrier_code: str, tracking_number: str,
                        line_ids: Sequence[str]) -> SandboxShipment:
        chosen = tuple(line_ids) or tuple(
            line.line_id for line in order.lines if line.state == "open")
        shipment = SandboxShipment(carrier_code, tracking_number, chosen, self.clock.now())
        order.shipments.append(shipment)
        for line in order.lines:
            if line.line_id in chosen:
                line.state = "shipped"
        open_left = any(line.state == "open" for line in order.lines)
        self._touch(order, "part_shipped" if open_left else "shipped", "shipped")
        return shipment

    def shipments_of(self, order_id: str) -> list[SandboxShipment]:
        return list(self.orders[order_id].shipments)

    # -- tokens --------------------------------------------------------------------------
    def expire_token(self) -> None:
        """Every current access token stops working (as after its lifetime)."""
        self.access_tokens.clear()

    def rotate_tokens(self, refresh_token: str) -> tuple[str, str] | None:
        """Exchange a refresh token: a new access token and a new (rotated) refresh token;
        the old refresh token stops working. None when the refresh token is unknown."""
        if refresh_token not in self.refresh_tokens:
            return None
        self.refresh_tokens.discard(refresh_token)
        self.token_generation += 1
        access = f"sandbox-access-token-{self.token_generation}"
        refresh = f"sandbox-refresh-token-{self.token_generation}"
        self.access_tokens = {access}
        self.refresh_tokens.add(refresh)
        return access, refresh

    def token_valid(self, token: str) -> bool:
        return token in self.access_tokens

    # -- pushes --------------------------------------------------------------------------
    def notify(self, order: SandboxOrder, topic: str) -> None:
        delivery = self.render_push(order, topic)
        if delivery is not None:
            self.pushes.append(delivery)

    def render_push(self, order: SandboxOrder, topic: str) -> PushDelivery | None:
        """The signed push the platform would send for this change; None if it does not push."""
        return None

    async def deliver_pushes(self, client: httpx.AsyncClient, url: str) -> list[int]:
        """POST pending pushes to `url`, applying the push faults (duplicates, reordering,
        drops). Returns the HTTP statuses received."""
        batch, self.pushes = self.pushes, []
        if len(batch) > 1 and self.faults.draw_push(PushFault.OUT_OF_ORDER):
            batch.reverse()
        statuses: list[int] = []
        for delivery in batch:
            if self.faults.draw_push(PushFault.DROP):
                continue
            copies = 2 if self.faults.draw_push(PushFault.DUPLICATE) else 1
            for _ in range(copies):
                response = await client.post(url, content=delivery.body,
                                             headers=dict(delivery.headers))
                statuses.append(response.status_code)
        return statuses

    # -- protocol ------------------------------------------------------------------------
    @abstractmethod
    def api_name(self, request: SandboxRequest) -> str:
        """Which API a request calls (for fault targeting and the request log)."""

    @abstractmethod
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Verify, route and answer one request exactly as the platform would."""

    @abstractmethod
    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        """The platform's own answer for a rate limit or a server error."""

    def malformed_response(self) -> SandboxResponse:
        return SandboxResponse(200, b'{"result": {"truncated', {"content-type": "application/json"})

    async def dispatch(self, request: SandboxRequest) -> tuple[SandboxResponse, Fault | None]:
        api = self.api_name(request)
        async with self._lock:
            fault = self.faults.draw(api)
            if fault is Fault.TOKEN_EXPIRED:
                self.expire_token()
                fault = None
            if fault in (Fault.RATE_LIMIT, Fault.SERVER_ERROR):
                response = self.fault_response(fault, api)
            elif fault is Fault.MALFORMED:
                response = self.malformed_response()
            elif fault is Fault.TIMEOUT:
                response = SandboxResponse(504, b"")
            else:
                response = self.handle(request)
            self.requests.append(RecordedRequest(api, request, self.clock.now(), response.status))
        return response, fault

    def calls(self, api: str) -> list[SandboxRequest]:
        return [r.request for r in self.requests if r.api == api]

    # -- serving -------------------------------------------------------------------------
    def transport(self) -> httpx.AsyncBaseTransport:
        return _SandboxTransport(self)

    def asgi(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        async def endpoint(request: Request) -> Response:
            body = await request.body()
            path = request.scope["path"]
            root = request.scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            sandbox_request = SandboxRequest(
                method=request.method, path=path,
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()}, body=body)
            response, fault = await self.dispatch(sandbox_request)
            if fault in (Fault.TIMEOUT, Fault.TIMEOUT_AFTER_APPLY):
                await asyncio.sleep(self.timeout_seconds)
            return Response(response.body, response.status, dict(response.headers))

        return Starlette(routes=[
            *self.admin_routes(),
            Route("/{path:path}", endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])

    def admin_routes(self) -> list[Any]:
        """The operator API over HTTP, for a sandbox served in another process (the
        simulator, crash tests): `/_sandbox/...`. Not part of any platform's API."""
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def orders(request: Request) -> JSONResponse:
            spec = await request.json()
            try:
                async with self._lock:
                    placed = self.place_order(
                        [(code, int(qty)) for code, qty in spec["lines"]],
                        paid=bool(spec.get("paid", True)),
                        buyer_remark=str(spec.get("buyer_remark", "")),
                        address=spec.get("address"))
            except (SoldOut, ValueError, KeyError) as exc:
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=409)
            return JSONResponse({"order_id": placed.order_id})

        async def change(request: Request) -> JSONResponse:
            action, order_id = request.path_params["action"], request.path_params["order_id"]
            operations = {"pay": self.pay, "cancel": self.cancel, "complete": self.complete,
                          "refund_after_shipping": self.refund_after_shipping}
            if action not in operations or order_id not in self.orders:
                return JSONResponse({"error": "unknown action or order"}, status_code=404)
            async with self._lock:
                operations[action](order_id)
            return JSONResponse({"order_id": order_id, "state": self.orders[order_id].state})

        async def faults(request: Request) -> JSONResponse:
            spec = await request.json()
            self.faults.rates = {Fault(k): float(v) for k, v in spec.get("rates", {}).items()}
            self.faults.push_rates = {PushFault(k): float(v)
                                      for k, v in spec.get("push_rates", {}).items()}
            for name, times in spec.get("inject", {}).items():
                self.faults.inject(Fault(name), int(times))
            return JSONResponse({"ok": True})

        async def state(_request: Request) -> JSONResponse:
            stock = {}
            for item in self.items.values():
                for sku in item.skus:
                    stock[sku.outer_id] = sku.quantity
                if not item.skus:
                    stock[item.outer_id] = item.quantity
            return JSONResponse({
                "stock": stock,
                "orders": {o.order_id: {
                    "state": o.state, "lines": [[ln.outer_id, ln.quantity] for ln in o.lines],
                    "shipments": [[s.carrier_code, s.tracking_number] for s in o.shipments]}
                    for o in self.orders.values()},
                "calls": len(self.requests)})

        async def calls(_request: Request) -> JSONResponse:
            # the platform's view of who asked for what: every API call with the node and
            # work it was made for (X-Erpsync-Work), for checks across processes
            return JSONResponse([
                {"api": r.api, "at": r.at.isoformat(), "status": r.status,
                 "work": r.request.headers.get(WORK_HEADER.lower(), "")}
                for r in self.requests])

        return [Route("/_sandbox/orders", orders, methods=["POST"]),
                Route("/_sandbox/calls", calls, methods=["GET"]),
                Route("/_sandbox/orders/{order_id}/{action}", change, methods=["POST"]),
                Route("/_sandbox/faults", faults, methods=["POST"]),
                Route("/_sandbox/state", state, methods=["GET"])]


class _SandboxTransport(httpx.AsyncBaseTransport):
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        sandbox_request = SandboxRequest(
            method=request.method, path=request.url.path,
            query=dict(parse_qsl(request.url.query.decode(), keep_blank_values=True)),
            headers={k.lower(): v for k, v in request.headers.items()}, body=body)
        response, fault = await self.sandbox.dispatch(sandbox_request)
        if fault in (Fault.TIMEOUT, Fault.TIMEOUT_AFTER_APPLY):
            raise httpx.ReadTimeout("sandbox: simulated timeout", request=request)
        return httpx.Response(response.status, headers=dict(response.headers),
                              content=response.body, request=request)


@contextlib.asynccontextmanager
async def serve(sandboxes: Mapping[str, Sandbox], host: str = "127.0.0.1", port: int = 0, *,
                root: Any = None) -> AsyncIterator[dict[str, str]]:
    """Serve sandboxes over real HTTP, each under `/<key>/` (and `root`, an ASGI app, at
    `/` when given); yields key -> base URL, with "" -> the server's own URL."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from core.serving import serve_asgi

    routes: list[Any] = [Mount(f"/{key}", app=sb.asgi()) for key, sb in sandboxes.items()]
    if root is not None:
        routes.append(Mount("", app=root))
    async with serve_asgi(Starlette(routes=routes), host, port) as url:
        yield {"": url, **{key: f"{url}/{key}" for key in sandboxes}}
