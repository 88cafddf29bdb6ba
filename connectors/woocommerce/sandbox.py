"""A WooCommerce store as the connector sees it: `wc/v3` routes and the Shipment Tracking
extension's routes, over the shared sandbox state.

Reproduced because the connector must cope with it:
- authentication as WooCommerce does it: HTTP Basic or `consumer_key`/`consumer_secret` in
  the query only over HTTPS (ignored on plain HTTP), OAuth 1.0a one-legged with a 15-minute
  timestamp window and nonce replay refusal; an unknown or revoked key is *anonymous*
  (`401 woocommerce_rest_cannot_view`), a known key with the wrong secret is
  `401 woocommerce_rest_authentication_error`;
- `per_page` 1…100 (`400 rest_invalid_param`), `X-WP-Total`/`X-WP-TotalPages`/`Link`,
  exclusive `modified_after`/`modified_before` to the second, GMT or site-local by
  `dates_are_gmt`;
- batch routes: at most 100 items in total (`413`), per-item errors inside a 200 answer;
- absolute `stock_quantity` honoured only with `manage_stock` (negative values are accepted:
  WooCommerce stores them as backorders), `stock_status` derived;
- order statuses, the "completed" transition, tracking items (201 + Location; the extension
  does not refuse a second item, so "already shipped" is the connector's own check);
- webhooks: body is `wp_json_encode` output (slashes escaped), signed with the webhook
  secret, delivery id = hash(webhook id + unix second), an unsigned form-encoded ping.
Serve it with `https=True` (default) behind an https base URL, or set `https=False` and
`site_url` to the address the client signs (OAuth) when serving over plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote

from core.sandbox import (
    Fault,
    PushDelivery,
    Sandbox,
    SandboxItem,
    SandboxOrder,
    SandboxRequest,
    SandboxResponse,
    SandboxShipment,
    SandboxSku,
)
from core.signing import hmac_b64

MAX_PER_PAGE = 100
_ROOT_HEADER = "x-sandbox-root-path"
BATCH_LIMIT = 100
OAUTH_WINDOW = 15 * 60
ORDER_STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded",
                  "failed", "checkout-draft")
_STATE_STATUS = {"unpaid": "pending", "paid": "processing", "part_shipped": "processing",
                 "shipped": "processing", "completed": "completed", "cancelled": "cancelled",
                 "refunded": "refunded"}
PROVIDERS = {
    "United States": {"Fedex": "https://www.fedex.com/apps/fedextrack/?tracknumbers=%1$s",
                      "UPS": "https://www.ups.com/track?tracknum=%1$s",
                      "USPS": "https://tools.usps.com/go/TrackConfirmAction?tLabels=%1$s",
                      "DHL US": "https://www.logistics.dhl/us-en/home/tracking.html"
                                "?tracking-id=%1$s"},
    "Italy": {"DHL Express": "https://www.dhl.com/it-it/home/tracking.html?tracking-id=%1$s"},
    "United Kingdom": {"Royal Mail": "https://www.royalmail.com/track-your-item#/tracking-results/%1$s"},
}

Handler = Callable[[SandboxRequest, "re.Match[str]"], SandboxResponse]


def _php_json(payload: Any) -> bytes:
    """wp_json_encode with default flags: ASCII only, `/` escaped as `\\/`."""
    return json.dumps(payload, separators=(",", ":"), default=str).replace("/", "\\/").encode()


def _error(code: str, message: str, status: int, **data: Any) -> SandboxResponse:
    return SandboxResponse.of_json({"code": code, "message": message,
                                    "data": {"status": status, **data}}, status)


def _invalid_param(name: str, reason: str) -> SandboxResponse:
    return _error("rest_invalid_param", f"Invalid parameter(s): {name}", 400,
                  params={name: reason})


class _Refusal(Exception):
    def __init__(self, response: SandboxResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _pct(value: str) -> str:
    return quote(value, safe="~-._")


class WooCommerceSandbox(Sandbox):
    platform: ClassVar[str] = "woocommerce"
    # WordPress post ids: products, variations and orders share one sequence
    item_id_base: ClassVar[int] = 100
    sku_id_base: ClassVar[int] = 100
    order_id_base: ClassVar[int] = 700

    def __init__(self, *, https: bool = True, site_url: str | None = None,
                 site_timezone: tzinfo = timezone(timedelta(hours=-3)), currency: str = "USD",
                 webhook_secret: str = "wc_sandbox_webhook_secret", webhook_id: int = 11,
                 tracking_extension: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("app_key", "ck_sandbox000000000000000000000000000000001")
        kwargs.setdefault("app_secret", "cs_sandbox000000000000000000000000000000001")
        super().__init__(**kwargs)
        self.https = https
        self.site_url = site_url
        self.site_timezone = site_timezone
        self.currency = currency
        self.webhook_secret = webhook_secret
        self.webhook_id = webhook_id
        self.tracking_extension = tracking_extension
        self.unmanaged: set[str] = set()  # product/variation ids with manage_stock false
        self.variable_products: set[str] = set()  # created variable, maybe no variations yet
        self.status_override: dict[str, str] = {}
        # tracking items are the shared state's shipments; the extension adds a link and a
        # date to each: (order id, tracking number) -> (link, date shipped)
        self.tracking_details: dict[tuple[str, str], tuple[str, str]] = {}
        self.completed_at: dict[str, datetime] = {}
        self.nonces: set[tuple[str, str, str]] = set()
        self._line_ids = 300

    # -- ids and seeding -------------------------------------------------------------------
    def add_item(self, title: str, outer_id: str, price_fen: int, *,
                 skus: Sequence[tuple[str, int, int]] = (), quantity: int = 0,
                 on_sale: bool = True, category_id: str = "", spec_name: str = "Option",
                 ) -> SandboxItem:
        """Items with SKUs are variable products (the SKUs their variations); items
        without are simple products. Seeded stock is managed."""
        return super().add_item(title, outer_id, price_fen, skus=skus, quantity=quantity,
                                on_sale=on_sale, category_id=category_id, spec_name=spec_name)

    def place_order(self, lines: Sequence[tuple[str, int]], *, paid: bool = True,
                    buyer_remark: str = "", post_fee_fen: int = 0,
                    address: Mapping[str, str] | None = None) -> SandboxOrder:
        where = {"province": "BE", "city": "Berlin", "district": "",
                 "detail": "Hauptstraße 5", "receiver": "Anna Muster",
                 "phone": "+49 30 1234567", **(address or {})}
        return super().place_order(lines, paid=paid, buyer_remark=buyer_remark,
                                   post_fee_fen=post_fee_fen, address=where)

    def new_line_id(self, order_id: str, index: int) -> str:
        self._line_ids += 1
        return str(self._line_ids)

    def set_status(self, order_id: str, status: str) -> None:
        """Operator: put an order in a status the shared lifecycle has no state for
        (on-hold, failed, checkout-draft, trash)."""
        self.status_override[order_id] = status
        order = self.orders[order_id]
        order.modified = self.clock.now()
        order.version += 1
        self.notify(order, "updated")

    def status_of(self, order: SandboxOrder) -> str:
        return self.status_override.get(order.order_id) or _STATE_STATUS[order.state]

    def notify(self, order: SandboxOrder, topic: str) -> None:
        if order.state == "completed":
            self.completed_at.setdefault(order.order_id, self.clock.now())
        super().notify(order, topic)

    # -- rendering -------------------------------------------------------------------------
    def _amount(self, fen: int) -> str:
        exponent = {"JPY": 0, "KRW": 0, "KWD": 3}.get(self.currency, 2)
        return f"{Decimal(fen).scaleb(-exponent):.{exponent}f}"

    def _dates(self, name: str, moment: datetime | None) -> dict[str, str | None]:
        if moment is None:
            return {name: None, f"{name}_gmt": None}
        return {
            name: moment.astimezone(self.site_timezone).replace(tzinfo=None)
            .isoformat(timespec="seconds"),
            f"{name}_gmt": moment.astimezone(UTC).replace(tzinfo=None)
            .isoformat(timespec="seconds")}

    def _site(self, request: SandboxRequest | None = None, scheme: str | None = None) -> str:
        """The store's address as the client sees it: `site_url`, else rebuilt from the
        Host header and the path in front of /wp-json (or the mount point it is served
        under, which `asgi()` passes along)."""
        if self.site_url:
            return self.site_url.rstrip("/")
        host = (request.headers.get("host") if request else None) or "shop.example.com"
        prefix = ""
        if request is not None:
            prefix = request.headers.get(_ROOT_HEADER) or request.path.split("/wp-json", 1)[0]
        return f"{scheme or ('https' if self.https else 'http')}://{host}{prefix}"

    def client_secrets(self) -> dict[str, str]:
        return {"webhook_secret": self.webhook_secret}

    def asgi(self) -> Any:
        """Served under a mount (`core.sandbox.serve`), the base app strips the mount point
        from the path; OAuth signs the full URL, so the mount point is passed along."""
        app = super().asgi()

        async def with_root(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") == "http" and scope.get("root_path"):
                scope = {**scope, "headers": [*scope.get("headers", []),
                                              (_ROOT_HEADER.encode(),
                                               str(scope["root_path"]).encode())]}
            await app(scope, receive, send)

        return with_root

    def _links(self, route: str, collection: str) -> dict[str, Any]:
        site = self._site()
        return {"self": [{"href": f"{site}/wp-json/{route}"}],
                "collection": [{"href": f"{site}/wp-json/{collection}"}]}

    def order_json(self, order: SandboxOrder) -> dict[str, Any]:
        status = self.status_of(order)
        meta: list[dict[str, Any]] = []
        if order.shipments:
            meta.append({"id": int(order.order_id) * 10 + 1, "key": "_wc_shipment_tracking_items",
                         "value": [{k: v for k, v in t.items() if k != "_links"}
                                   for t in self.trackings_of(order)]})
        first, _, last = order.receiver.partition(" ")
        address = {"first_name": first, "last_name": last, "company": "",
                   "address_1": order.detail, "address_2": order.district, "city": order.city,
                   "state": order.province, "postcode": "10115", "country": "DE"}
        lines = []
        for line in order.lines:
            subtotal = line.price_fen * line.quantity
            lines.append({
                "id": int(line.line_id), "name": line.title, "product_id": int(line.item_id),
                "variation_id": int(line.sku_id) if line.sku_id else 0,
                "quantity": line.quantity, "tax_class": "", "subtotal": self._amount(subtotal),
                "subtotal_tax": "0.00", "total": self._amount(subtotal), "total_tax": "0.00",
                "taxes": [], "meta_data": [], "sku": line.outer_id,
                "price": float(Decimal(self._amount(line.price_fen)))})
        refunded = order.state == "refunded"
        return {
            "id": int(order.order_id), "parent_id": 0, "number": order.order_id,
            "order_key": f"wc_order_{hashlib.md5(order.order_id.encode()).hexdigest()[:13]}",
            "created_via": "checkout", "version": "9.4.0", "status": status,
            "currency": self.currency,
            **self._dates("date_created", order.created),
            **self._dates("date_modified", order.modified),
            "discount_total": self._amount(order.discount_fen), "discount_tax": "0.00",
            "shipping_total": self._amount(order.post_fee_fen), "shipping_tax": "0.00",
            "cart_tax": "0.00", "total": self._amount(order.paid_fen), "total_tax": "0.00",
            "prices_include_tax": False, "customer_id": 0, "customer_note": order.buyer_remark,
            "billing": {**address, "email": "buyer@example.com", "phone": order.phone},
            "shipping": {**address, "phone": order.phone},
            "payment_method": "stripe", "payment_method_title": "Credit card",
            "transaction_id": "", **self._dates("date_paid", order.paid_at),
            **self._dates("date_completed", self.completed_at.get(order.order_id)),
            "meta_data": meta, "line_items": lines, "tax_lines": [],
            "shipping_lines": [{"id": int(order.order_id) * 10 + 2, "method_title": "Flat rate",
                                "method_id": "flat_rate",
                                "total": self._amount(order.post_fee_fen), "total_tax": "0.00",
                                "taxes": [], "meta_data": []}],
            "fee_lines": [], "coupon_lines": [],
            "refunds": [{"id": int(order.order_id) * 10 + 3, "reason": "",
                         "total": f"-{self._amount(order.paid_fen)}"}] if refunded else [],
            "_links": self._links(f"wc/v3/orders/{order.order_id}", "wc/v3/orders"),
        }

    def _stock_fields(self, key: str, quantity: int) -> dict[str, Any]:
        managed = key not in self.unmanaged
        status = ("instock" if quantity > 0 else "outofstock") if managed else "instock"
        return {"manage_stock": managed, "stock_quantity": quantity if managed else None,
                "stock_status": status, "backorders": "no", "backorders_allowed": False,
                "backordered": False}

    def product_json(self, item: SandboxItem) -> dict[str, Any]:
        variable = bool(item.skus) or item.item_id in self.variable_products
        prices = [s.price_fen for s in item.skus]
        price = self._amount(min(prices)) if variable and prices else \
            ("" if variable else self._amount(item.price_fen))
        stock = {"manage_stock": False, "stock_quantity": None, "stock_status": "instock",
                 "backorders": "no", "backorders_allowed": False, "backordered": False} \
            if variable else self._stock_fields(item.item_id, item.quantity)
        names: dict[str, list[str]] = {}
        for sku in item.skus:
            for name, value in sku.spec.items():
                names.setdefault(name, [])
                if value not in names[name]:
                    names[name].append(value)
        return {
            "id": int(item.item_id), "name": item.title,
            "slug": re.sub(r"[^a-z0-9]+", "-", item.title.lower()).strip("-"),
            "permalink": f"{self._site()}/product/{item.item_id}/",
            **self._dates("date_created", item.created),
            **self._dates("date_modified", item.modified),
            "type": "variable" if variable else "simple",
            "status": "publish" if item.on_sale else "draft",
            "sku": item.outer_id, "price": price,
            "regular_price": "" if variable else price, "sale_price": "",
            "on_sale": False, "purchasable": bool(price), **stock,
            "attributes": [{"id": 0, "name": n, "position": i, "visible": True,
                            "variation": True, "options": v}
                           for i, (n, v) in enumerate(names.items())],
            "variations": [int(s.sku_id) for s in item.skus], "parent_id": 0,
            "meta_data": [],
            "_links": self._links(f"wc/v3/products/{item.item_id}", "wc/v3/products"),
        }

    def variation_json(self, item: SandboxItem, sku: SandboxSku) -> dict[str, Any]:
        return {
            "id": int(sku.sku_id), **self._dates("date_created", item.created),
            **self._dates("date_modified", item.modified), "description": "",
            "permalink": f"{self._site()}/product/{item.item_id}/?variation={sku.sku_id}",
            "sku": sku.outer_id, "price": self._amount(sku.price_fen),
            "regular_price": self._amount(sku.price_fen), "sale_price": "", "on_sale": False,
            "status": "publish", "purchasable": True,
            **self._stock_fields(sku.sku_id, sku.quantity),
            "attributes": [{"id": 0, "name": n, "option": v} for n, v in sku.spec.items()],
            "menu_order": 0, "meta_data": [],
            "_links": self._links(f"wc/v3/products/{item.item_id}/variations/{sku.sku_id}",
                                  f"wc/v3/products/{item.item_id}/variations"),
        }

    # -- protocol --------------------------------------------------------------------------
    def _routes(self) -> list[tuple[str, str, str, str, Handler]]:
        """(method, pattern, api name, permission, handler)."""
        st = "/wc-shipment-tracking/v3"
        return [
            ("GET", r"/?", "GET /", "public", self._index),
            ("GET", r"/wc/v3/orders", "GET /wc/v3/orders", "list", self._list_orders),
            ("GET", r"/wc/v3/orders/(\d+)", "GET /wc/v3/orders/{id}", "view", self._get_order),
            ("PUT", r"/wc/v3/orders/(\d+)", "PUT /wc/v3/orders/{id}", "edit",
             self._update_order),
            ("GET", r"/wc/v3/products", "GET /wc/v3/products", "list", self._list_products),
            ("POST", r"/wc/v3/products", "POST /wc/v3/products", "create",
             self._create_product),
            ("POST", r"/wc/v3/products/batch", "POST /wc/v3/products/batch", "batch",
             self._batch_products),
            ("GET", r"/wc/v3/products/(\d+)", "GET /wc/v3/products/{id}", "view",
             self._get_product),
            ("PUT", r"/wc/v3/products/(\d+)", "PUT /wc/v3/products/{id}", "edit",
             self._update_product),
            ("GET", r"/wc/v3/products/(\d+)/variations",
             "GET /wc/v3/products/{id}/variations", "list", self._list_variations),
            ("POST", r"/wc/v3/products/(\d+)/variations/batch",
             "POST /wc/v3/products/{id}/variations/batch", "batch", self._batch_variations),
            ("GET", st + r"/shipment-trackings/providers",
             "GET /wc-shipment-tracking/v3/shipment-trackings/providers", "public",
             self._providers),
            ("GET", st + r"/orders/(\d+)/shipment-trackings",
             "GET /wc-shipment-tracking/v3/orders/{id}/shipment-trackings", "list",
             self._list_trackings),
            ("POST", st + r"/orders/(\d+)/shipment-trackings",
             "POST /wc-shipment-tracking/v3/orders/{id}/shipment-trackings", "create",
             self._create_tracking),
        ]

    def _route(self, request: SandboxRequest) -> tuple[str, str, Handler, re.Match[str]] | None:
        _, found, rest = request.path.partition("/wp-json")
        if not found:
            return None
        for method, pattern, api, permission, handler in self._routes():
            if method != request.method:
                continue
            if pattern.startswith("/wc-shipment-tracking") and not self.tracking_extension:
                continue
            match = re.fullmatch(pattern, rest.rstrip("/") if rest != "/" else rest)
            if match:
                return api, permission, handler, match
        return None

    def api_name(self, request: SandboxRequest) -> str:
        routed = self._route(request)
        return routed[0] if routed else f"{request.method} {request.path}"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        routed = self._route(request)
        if routed is None:
            return _error("rest_no_route", "No route was found matching the URL and request "
                          "method.", 404)
        _, permission, handler, match = routed
        try:
            user = self._authenticate(request)
        except _Refusal as refusal:
            return refusal.response
        if permission != "public" and not user:
            return self._anonymous(permission)
        try:
            return handler(request, match)
        except _Refusal as refusal:
            return refusal.response

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if fault is Fault.RATE_LIMIT:  # the host's or WAF's answer: WooCommerce has none
            return SandboxResponse(429, b"<html><body><h1>429 Too Many Requests</h1></body>"
                                   b"</html>", {"content-type": "text/html", "retry-after": "3"})
        return _error("internal_server_error", "<p>There has been a critical error on this "
                      "website.</p>", 500)

    # -- authentication --------------------------------------------------------------------
    def _key_known(self, key: str) -> bool:
        # an expired "token" here means the key was revoked: WooCommerce then no longer
        # knows the key, and the request is anonymous
        return key == self.app_key and bool(self.access_tokens)

    def _authenticate(self, request: SandboxRequest) -> bool:
        query = request.query
        if any(k.startswith("oauth_") for k in query):
            return self._oauth(request)
        if not self.https:
            return False  # Basic and query keys are read over SSL only
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            try:
                key, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
        elif "consumer_key" in query:
            key, secret = query["consumer_key"], query.get("consumer_secret", "")
        else:
            return False
        if not self._key_known(key):
            return False
        if not hmac.compare_digest(secret.encode(), self.app_secret.encode()):
            raise _Refusal(_error("woocommerce_rest_authentication_error",
                                  "Consumer secret is invalid.", 401))
        return True

    def _oauth(self, request: SandboxRequest) -> bool:
        query = dict(request.query)

        def refuse(message: str) -> _Refusal:
            return _Refusal(_error("woocommerce_rest_authentication_error", message, 401))

        for name in ("oauth_consumer_key", "oauth_timestamp", "oauth_nonce",
                     "oauth_signature", "oauth_signature_method"):
            if not query.get(name):
                raise refuse(f"The {name} parameter is missing.")
        if not self._key_known(query["oauth_consumer_key"]):
            raise refuse("Consumer key is invalid.")
        method = query["oauth_signature_method"]
        if method not in ("HMAC-SHA1", "HMAC-SHA256"):
            raise refuse("Invalid signature method - must be HMAC-SHA1 or HMAC-SHA256.")
        given = query.pop("oauth_signature")
        route = "/wp-json" + request.path.partition("/wp-json")[2]
        pairs = sorted((_pct(k), _pct(v)) for k, v in query.items())
        params = _pct("&".join(f"{k}={v}" for k, v in pairs))
        digest = hashlib.sha256 if method == "HMAC-SHA256" else hashlib.sha1
        # the request does not say whether it came over TLS: either scheme may be signed
        schemes = [None] if self.site_url else ["http", "https"]
        for scheme in schemes:
            url = self._site(request, scheme) + route
            base = "&".join((request.method.upper(), _pct(url), params))
            expected = base64.b64encode(hmac.new(f"{self.app_secret}&".encode(),
                                                 base.encode(), digest).digest()).decode()
            if hmac.compare_digest(expected, given):
                break
        else:
            raise refuse("Invalid signature - provided signature does not match.")
        try:
            stamp = int(query["oauth_timestamp"])
        except ValueError:
            raise refuse("Invalid timestamp.") from None
        if abs(self.clock.now().timestamp() - stamp) > OAUTH_WINDOW:
            raise refuse("Invalid timestamp.")
        nonce = (query["oauth_consumer_key"], query["oauth_timestamp"], query["oauth_nonce"])
        if nonce in self.nonces:
            raise refuse("Invalid nonce - nonce has already been used.")
        self.nonces.add(nonce)
        return True

    @staticmethod
    def _anonymous(permission: str) -> SandboxResponse:
        code, message = {
            "list": ("woocommerce_rest_cannot_view", "Sorry, you cannot list resources."),
            "view": ("woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
            "create": ("woocommerce_rest_cannot_create",
                       "Sorry, you are not allowed to create resources."),
            "edit": ("woocommerce_rest_cannot_edit",
                     "Sorry, you are not allowed to edit this resource."),
            "batch": ("woocommerce_rest_cannot_batch",
                      "Sorry, you are not allowed to batch manipulate this resource."),
        }[permission]
        return _error(code, message, 401)

    # -- parameters ------------------------------------------------------------------------
    @staticmethod
    def _int_param(query: Mapping[str, str], name: str, default: int, low: int,
                   high: int | None = None) -> int:
        raw = query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _Refusal(_invalid_param(name, f"{name} is not of type integer.")) from None
        if value < low or (high is not None and value > high):
            reason = f"{name} must be between {low} (inclusive) and {high} (inclusive)" \
                if high is not None else f"{name} must be greater than or equal to {low}"
            raise _Refusal(_invalid_param(name, reason))
        return value

    @staticmethod
    def _enum_param(query: Mapping[str, str], name: str, default: str,
                    allowed: Sequence[str]) -> str:
        value = query.get(name, default)
        if value not in allowed:
            raise _Refusal(_invalid_param(name, f"{name} is not one of {', '.join(allowed)}."))
        return value

    def _date_param(self, query: Mapping[str, str], name: str, gmt: bool) -> datetime | None:
        raw = query.get(name)
        if raw is None:
            return None
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise _Refusal(_invalid_param(name, "Invalid date.")) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC if gmt else self.site_timezone)
        return moment

    def _page(self, request: SandboxRequest, rows: list[Any], route: str,
              render: Callable[[Any], Any]) -> SandboxResponse:
        query = request.query
        per_page = self._int_param(query, "per_page", 10, 1, MAX_PER_PAGE)
        page = self._int_param(query, "page", 1, 1)
        total = len(rows)
        pages = -(-total // per_page)
        chosen = rows[(page - 1) * per_page: page * per_page]
        base = f"{self._site(request)}/wp-json/{route}"
        links = []
        if page > 1:
            links.append(f'<{base}?page={page - 1}&per_page={per_page}>; rel="prev"')
        if page < pages:
            links.append(f'<{base}?page={page + 1}&per_page={per_page}>; rel="next"')
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        if links:
            headers["Link"] = ", ".join(links)
        return SandboxResponse.of_json([render(r) for r in chosen], headers=headers)

    def _json_body(self, request: SandboxRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            raise _Refusal(_error("rest_invalid_json", "Invalid JSON body passed.", 400)) \
                from None
        if not isinstance(body, dict):
            raise _Refusal(_error("rest_invalid_json", "Invalid JSON body passed.", 400))
        return body

    # -- routes: index ---------------------------------------------------------------------
    def _index(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        namespaces = ["oembed/1.0", "wc/v1", "wc/v2", "wc/v3", "wc/store/v1", "wp/v2"]
        if self.tracking_extension:
            namespaces.append("wc-shipment-tracking/v3")
        return SandboxResponse.of_json({"name": "Sandbox Store", "url": self._site(request),
                                        "namespaces": namespaces})

    # -- routes: orders --------------------------------------------------------------------
    def _order_or_404(self, order_id: str) -> SandboxOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise _Refusal(_error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404))
        return order

    def _list_orders(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        query = request.query
        gmt = query.get("dates_are_gmt", "false")
        if gmt not in ("true", "false", "1", "0"):
            raise _Refusal(_invalid_param("dates_are_gmt", "dates_are_gmt is not of type "
                                          "boolean."))
        in_gmt = gmt in ("true", "1")
        after = self._date_param(query, "modified_after", in_gmt)
        before = self._date_param(query, "modified_before", in_gmt)
        orderby = self._enum_param(query, "orderby", "date",
                                   ("date", "id", "include", "title", "slug", "modified"))
        direction = self._enum_param(query, "order", "desc", ("asc", "desc"))
        wanted = {s for s in query.get("status", "any").split(",") if s}
        allowed = {"any", "trash", *ORDER_STATUSES}
        if wanted - allowed:
            raise _Refusal(_invalid_param("status", "status is not one of "
                                          f"{', '.join(sorted(allowed))}."))
        rows = []
        for order in self.orders.values():
            status = self.status_of(order)
            if ("any" in wanted and status == "trash") or \
                    ("any" not in wanted and status not in wanted):
                continue
            modified = order.modified.replace(microsecond=0)
            if after is not None and not modified > after:
                continue
            if before is not None and not modified < before:
                continue
            rows.append(order)
        def sort_key(order: SandboxOrder) -> tuple[Any, ...]:
            if orderby == "id":
                return (int(order.order_id),)
            stamp = order.modified if orderby == "modified" else order.created
            return (stamp, int(order.order_id))

        rows.sort(key=sort_key, reverse=direction == "desc")
        return self._page(request, rows, "wc/v3/orders", self.order_json)

    def _get_order(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        return SandboxResponse.of_json(self.order_json(self._order_or_404(match.group(1))))

    def _update_order(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        order = self._order_or_404(match.group(1))
        body = self._json_body(request)
        status = body.get("status")
        if status is not None:
            if status not in ORDER_STATUSES:
                raise _Refusal(_invalid_param("status", "status is not one of "
                                              f"{', '.join(ORDER_STATUSES)}."))
            self._move(order, str(status))
        return SandboxResponse.of_json(self.order_json(order))

    def _move(self, order: SandboxOrder, status: str) -> None:
        if status == self.status_of(order):
            return
        self.status_override.pop(order.order_id, None)
        if status == "completed":
            if order.state == "unpaid":
                self.pay(order.order_id)
            if order.state != "completed":
                self.complete(order.order_id)
        elif status == "processing":
            if order.state == "unpaid":
                self.pay(order.order_id)
        elif status in ("cancelled", "refunded") and order.state not in (
                "cancelled", "refunded"):
            if order.shipments or order.state == "completed":
                self.refund_after_shipping(order.order_id)
            else:
                self.cancel(order.order_id)
            if status == "cancelled" and order.state == "refunded":
                self.status_override[order.order_id] = "cancelled"
        else:
            self.set_status(order.order_id, status)

    # -- routes: products ------------------------------------------------------------------
    def _product_or_404(self, product_id: str) -> SandboxItem:
        item = self.items.get(product_id)
        if item is None:
            raise _Refusal(_error("woocommerce_rest_product_invalid_id", "Invalid ID.", 404))
        return item

    def _list_products(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        query = request.query
        orderby = self._enum_param(query, "orderby", "date", (
            "date", "id", "include", "title", "slug", "price", "popularity", "rating",
            "modified"))
        direction = self._enum_param(query, "order", "desc", ("asc", "desc"))
        rows = list(self.items.values())
        if query.get("sku"):
            rows = [i for i in rows if i.outer_id == query["sku"]]
        if query.get("type"):
            rows = [i for i in rows if ("variable" if i.skus else "simple") == query["type"]]
        rows.sort(key=(lambda i: int(i.item_id)) if orderby == "id" else
                  (lambda i: (i.created, int(i.item_id))), reverse=direction == "desc")
        return self._page(request, rows, "wc/v3/products", self.product_json)

    def _get_product(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        return SandboxResponse.of_json(self.product_json(self._product_or_404(match.group(1))))

    def _sku_taken(self, code: str, exclude: str = "") -> bool:
        if not code:
            return False
        for item in self.items.values():
            if item.item_id != exclude and item.outer_id == code:
                return True
            if any(s.outer_id == code and s.sku_id != exclude for s in item.skus):
                return True
        return False

    def _apply_product(self, item: SandboxItem, body: Mapping[str, Any]) -> None:
        """Writable product fields; raise _Refusal with WooCommerce's error otherwise."""
        if "sku" in body and body["sku"] != item.outer_id:
            if self._sku_taken(str(body["sku"]), exclude=item.item_id):
                raise _Refusal(_error("product_invalid_sku", "Invalid or duplicated SKU.", 400,
                                      resource_id=int(item.item_id)))
            item.outer_id = str(body["sku"])
        if "name" in body:
            item.title = str(body["name"])
        if "status" in body:
            if body["status"] not in ("draft", "pending", "private", "publish"):
                raise _Refusal(_invalid_param("status", "status is not one of draft, pending, "
                                              "private, publish, future."))
            item.on_sale = body["status"] == "publish"
        if "regular_price" in body and not item.skus:
            item.price_fen = self._price(body["regular_price"], "regular_price")
        self._apply_stock(item.item_id, body, lambda q: setattr(item, "quantity", q))
        item.modified = self.clock.now()

    def _apply_stock(self, key: str, body: Mapping[str, Any],
                     write: Callable[[int], None]) -> None:
        if "manage_stock" in body:
            if body["manage_stock"] is True:
                self.unmanaged.discard(key)
            elif body["manage_stock"] is False:
                self.unmanaged.add(key)
            else:
                raise _Refusal(_invalid_param("manage_stock", "manage_stock is not of type "
                                              "boolean."))
        if "stock_quantity" in body:
            quantity = body["stock_quantity"]
            if isinstance(quantity, bool) or not isinstance(quantity, int):
                raise _Refusal(_invalid_param("stock_quantity", "stock_quantity is not of "
                                              "type integer."))
            if key not in self.unmanaged:
                write(quantity)

    def _price(self, value: Any, name: str) -> int:
        try:
            amount = Decimal(str(value))
            if amount < 0:
                raise InvalidOperation
        except InvalidOperation:
            raise _Refusal(_invalid_param(name, f"{name} is not of type string.")) from None
        return int(amount.scaleb(2))

    def _create_product(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        item = self._new_product(self._json_body(request))
        return SandboxResponse.of_json(self.product_json(item), 201, {
            "Location": f"{self._site(request)}/wp-json/wc/v3/products/{item.item_id}"})

    def _new_product(self, body: Mapping[str, Any]) -> SandboxItem:
        kind = body.get("type", "simple")
        if kind not in ("simple", "variable", "grouped", "external"):
            raise _Refusal(_invalid_param("type", "type is not one of simple, grouped, "
                                          "external, variable."))
        code = str(body.get("sku") or "")
        if self._sku_taken(code):
            raise _Refusal(_error("product_invalid_sku", "Invalid or duplicated SKU.", 400))
        now = self.clock.now()
        item = SandboxItem(item_id=self.new_item_id(), title=str(body.get("name") or "Product"),
                           outer_id=code, price_fen=0, on_sale=True, skus=[], category_id="",
                           modified=now, created=now)
        self.unmanaged.add(item.item_id)  # WooCommerce default: manage_stock false
        self._apply_product(item, {"status": "publish", **body})
        if kind == "variable":
            self.variable_products.add(item.item_id)
        self.items[item.item_id] = item
        return item

    def _update_product(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        item = self._product_or_404(match.group(1))
        self._apply_product(item, self._json_body(request))
        return SandboxResponse.of_json(self.product_json(item))

    def _batch_items(self, body: Mapping[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
        create = body.get("create") or []
        update = body.get("update") or []
        delete = body.get("delete") or []
        if len(create) + len(update) + len(delete) > BATCH_LIMIT:
            raise _Refusal(_error("woocommerce_rest_request_entity_too_large",
                                  f"Unable to accept more than {BATCH_LIMIT} items for this "
                                  "request.", 413))
        return create, update, delete

    @staticmethod
    def _item_error(item_id: Any, refusal: _Refusal) -> dict[str, Any]:
        payload = json.loads(refusal.response.body)
        return {"id": item_id, "error": payload}

    def _batch_products(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        create, update, delete = self._batch_items(self._json_body(request))
        out: dict[str, list[Any]] = {}
        if create:
            out["create"] = []
            for entry in create:
                try:
                    out["create"].append(self.product_json(self._new_product(entry)))
                except _Refusal as refusal:
                    out["create"].append(self._item_error(0, refusal))
        if update:
            out["update"] = []
            for entry in update:
                item_id = entry.get("id") if isinstance(entry, Mapping) else None
                try:
                    item = self.items.get(str(item_id))
                    if item is None:
                        raise _Refusal(_error("woocommerce_rest_product_invalid_id",
                                              "Invalid ID.", 400))
                    self._apply_product(item, entry)
                    out["update"].append(self.product_json(item))
                except _Refusal as refusal:
                    out["update"].append(self._item_error(item_id or 0, refusal))
        if delete:
            out["delete"] = []
            for item_id in delete:
                item = self.items.pop(str(item_id), None)
                out["delete"].append(self.product_json(item) if item else {
                    "id": item_id, "error": {"code": "woocommerce_rest_product_invalid_id",
                                             "message": "Invalid ID.", "data": {"status": 400}}})
        return SandboxResponse.of_json(out)

    def _variable_or_404(self, product_id: str) -> SandboxItem:
        item = self._product_or_404(product_id)
        if not item.skus and item.item_id not in self.variable_products:
            raise _Refusal(_error("woocommerce_rest_product_invalid_id", "Invalid ID.", 404))
        return item

    def _list_variations(self, request: SandboxRequest, match: re.Match[str]
                         ) -> SandboxResponse:
        item = self._variable_or_404(match.group(1))
        rows = sorted(item.skus, key=lambda s: int(s.sku_id),
                      reverse=request.query.get("order", "desc") == "desc")
        return self._page(request, rows, f"wc/v3/products/{item.item_id}/variations",
                          lambda sku: self.variation_json(item, sku))

    def _batch_variations(self, request: SandboxRequest, match: re.Match[str]
                          ) -> SandboxResponse:
        item = self._variable_or_404(match.group(1))
        create, update, delete = self._batch_items(self._json_body(request))
        out: dict[str, list[Any]] = {}
        if create:
            out["create"] = []
            for entry in create:
                try:
                    out["create"].append(self.variation_json(item, self._new_variation(item,
                                                                                        entry)))
                except _Refusal as refusal:
                    out["create"].append(self._item_error(0, refusal))
        if update:
            out["update"] = []
            for entry in update:
                sku_id = entry.get("id") if isinstance(entry, Mapping) else None
                sku = next((s for s in item.skus if s.sku_id == str(sku_id)), None)
                try:
                    if sku is None:
                        raise _Refusal(_error("woocommerce_rest_product_variation_invalid_id",
                                              "Invalid ID.", 400))
                    self._apply_variation(item, sku, entry)
                    out["update"].append(self.variation_json(item, sku))
                except _Refusal as refusal:
                    out["update"].append(self._item_error(sku_id or 0, refusal))
        if delete:
            out["delete"] = []
            for sku_id in delete:
                sku = next((s for s in item.skus if s.sku_id == str(sku_id)), None)
                if sku is not None:
                    item.skus.remove(sku)
                    out["delete"].append(self.variation_json(item, sku))
                else:
                    out["delete"].append({"id": sku_id, "error": {
                        "code": "woocommerce_rest_product_variation_invalid_id",
                        "message": "Invalid ID.", "data": {"status": 400}}})
        item.modified = self.clock.now()
        return SandboxResponse.of_json(out)

    def _apply_variation(self, item: SandboxItem, sku: SandboxSku,
                         body: Mapping[str, Any]) -> None:
        if "sku" in body and body["sku"] != sku.outer_id:
            if self._sku_taken(str(body["sku"]), exclude=sku.sku_id):
                raise _Refusal(_error("product_invalid_sku", "Invalid or duplicated SKU.", 400))
            sku.outer_id = str(body["sku"])
        if "regular_price" in body:
            sku.price_fen = self._price(body["regular_price"], "regular_price")
        if "attributes" in body:
            sku.spec = {str(a.get("name")): str(a.get("option"))
                        for a in body["attributes"] or []}
        self._apply_stock(sku.sku_id, body, lambda q: setattr(sku, "quantity", q))
        item.modified = self.clock.now()

    def _new_variation(self, item: SandboxItem, body: Mapping[str, Any]) -> SandboxSku:
        code = str(body.get("sku") or "")
        if self._sku_taken(code):
            raise _Refusal(_error("product_invalid_sku", "Invalid or duplicated SKU.", 400))
        sku = SandboxSku(self.new_sku_id(), code, 0, 0, {})
        self.unmanaged.add(sku.sku_id)
        self._apply_variation(item, sku, body)
        item.skus.append(sku)
        return sku

    # -- routes: shipment tracking ---------------------------------------------------------
    def _providers(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        return SandboxResponse.of_json(PROVIDERS)

    def trackings_of(self, order: SandboxOrder) -> list[dict[str, Any]]:
        """The extension's tracking items of an order, as its REST route renders them."""
        route = f"wc-shipment-tracking/v3/orders/{order.order_id}/shipment-trackings"
        items = []
        for index, shipment in enumerate(order.shipments):
            number = shipment.tracking_number
            link, shipped = self.tracking_details.get(
                (order.order_id, number),
                ("", shipment.shipped_at.astimezone(self.site_timezone).date().isoformat()))
            tracking_id = hashlib.md5(f"{order.order_id}-{number}-{index}".encode()).hexdigest()
            items.append({"tracking_id": tracking_id, "tracking_provider": shipment.carrier_code,
                          "tracking_link": link, "tracking_number": number,
                          "date_shipped": shipped,
                          "_links": self._links(f"{route}/{tracking_id}", route)})
        return items

    def _list_trackings(self, request: SandboxRequest, match: re.Match[str]) -> SandboxResponse:
        order = self._order_or_404(match.group(1))
        return SandboxResponse.of_json(self.trackings_of(order))

    def _create_tracking(self, request: SandboxRequest, match: re.Match[str]
                         ) -> SandboxResponse:
        order = self._order_or_404(match.group(1))
        body = self._json_body(request)
        number = str(body.get("tracking_number") or "").strip()
        if not number:
            raise _Refusal(_error("rest_missing_callback_param", "Missing parameter(s): "
                                  "tracking_number", 400, params=["tracking_number"]))
        shipped = body.get("date_shipped") or self.clock.now().astimezone(
            self.site_timezone).date().isoformat()
        try:
            date.fromisoformat(str(shipped))
        except ValueError:
            raise _Refusal(_invalid_param("date_shipped", "Invalid date.")) from None
        formats = {name: url for group in PROVIDERS.values() for name, url in group.items()}
        if body.get("custom_tracking_provider"):
            provider = str(body["custom_tracking_provider"])
            link_format = str(body.get("custom_tracking_link") or "")
        else:
            provider = str(body.get("tracking_provider") or "")
            link_format = formats.get(provider, "")
        link = link_format.replace("%1$s", number).replace("%2$s", "10115") \
            .replace("%3$s", "DE")
        self.tracking_details[(order.order_id, number)] = (link, str(shipped))
        if not order.shipments and any(line.state == "open" for line in order.lines):
            self.record_shipment(order, provider, number, ())
        else:  # the extension keeps adding items; the order's lines are already out
            order.shipments.append(SandboxShipment(provider, number, (), self.clock.now()))
            order.modified = self.clock.now()
        item = self.trackings_of(order)[-1]
        route = f"wc-shipment-tracking/v3/orders/{order.order_id}/shipment-trackings"
        return SandboxResponse.of_json(item, 201, {
            "Location": f"{self._site(request)}/wp-json/{route}/{item['tracking_id']}"})

    # -- webhooks --------------------------------------------------------------------------
    def render_push(self, order: SandboxOrder, topic: str) -> PushDelivery | None:
        event = "created" if order.version == 1 else "updated"
        body = _php_json(self.order_json(order))
        second = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "WooCommerce/9.4.0 Hookshot (WordPress/6.7.1)",
            "X-WC-Webhook-Source": self._site() + "/",
            "X-WC-Webhook-Topic": f"order.{event}",
            "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": hmac_b64(self.webhook_secret, body, "sha256"),
            "X-WC-Webhook-ID": str(self.webhook_id),
            "X-WC-Webhook-Delivery-ID": hashlib.md5(f"{self.webhook_id}{second}"
                                                    .encode()).hexdigest(),
        }
        return PushDelivery(f"order.{event}", headers, body)

    def ping_delivery(self) -> PushDelivery:
        """What WooCommerce POSTs when a webhook is saved: form-encoded and unsigned."""
        return PushDelivery("ping", {"Content-Type": "application/x-www-form-urlencoded"},
                            f"webhook_id={self.webhook_id}".encode())
