"""WooCommerce REST API (`/wp-json/wc/v3/…`, plus the Shipment Tracking extension's
`/wp-json/wc-shipment-tracking/v3/…`): authentication, paging headers, the error table.

An api name is `"<METHOD> <namespace/route>"`, e.g. `"GET wc/v3/orders"` or
`"POST wc/v3/products/22/variations/batch"`; GET/DELETE parameters go in the query string,
the others in a JSON body.

Authentication uses the REST key pair (`app_key` = consumer key `ck_…`, `app_secret` =
consumer secret `cs_…`):
- over HTTPS, HTTP Basic (WooCommerce ignores Basic credentials on plain HTTP);
- over plain HTTP, OAuth 1.0a one-legged: the query plus `oauth_*` parameters, RFC 3986
  encoded, sorted, `METHOD&url&params` signed with HMAC-SHA256 keyed `secret&`;
- on hosts that strip the Authorization header, `consumer_key`/`consumer_secret` in the
  query (HTTPS only) — option `auth = "query"`.
Keys do not expire. A revoked key makes WooCommerce treat the request as anonymous, so the
answer is `401 woocommerce_rest_cannot_view` (not an authentication error); both end in
AuthExpired, and since nothing can be refreshed the call fails, telling the operator to
issue a new key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from core.connector import ShopContext
from core.errors import (
    AuthExpired,
    BadResponse,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)
from core.http import ErrorRule, ErrorTable, HttpSession, PlatformClient, retry_after_header
from core.signing import hmac_b64

API_ROOT = "/wp-json/"


@dataclass(frozen=True, slots=True)
class WooSettings:
    """What this connector could not confirm about WooCommerce, or what differs per store —
    one place. Every field is overridden by the same key in `shop.options`."""

    # "" = Basic over https, OAuth 1.0a over http; or "basic" / "query" / "oauth1"
    auth: str = ""
    oauth_signature_method: str = "HMAC-SHA256"
    # the store currency decides the minor unit of product prices (orders carry their own)
    currency: str = ""
    # Shipment Tracking extension; the look-alike "Advanced Shipment Tracking" answers on
    # "wc-ast/v3" (corroborated only)
    tracking_namespace: str = "wc-shipment-tracking/v3"
    # carriers missing from the store's provider list become custom providers with this link
    custom_tracking_link: str = "https://t.17track.net/en#nums=%1$s"
    # the reference's advice: mark the order completed once tracking is on it
    complete_on_ship: bool = True
    # tracking items are read from order meta `_wc_shipment_tracking_items` (visible in
    # meta_data like the other `_` keys in the documented examples — unconfirmed); False:
    # one GET of the tracking list per order in `tracking_statuses`
    tracking_from_meta: bool = True
    tracking_statuses: frozenset[str] = frozenset({"processing", "completed"})

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> WooSettings:
        names = {f.name for f in fields(cls)}
        chosen: dict[str, Any] = {k: options[k] for k in names if k in options}
        if "tracking_statuses" in chosen:
            chosen["tracking_statuses"] = frozenset(chosen["tracking_statuses"])
        return replace(cls(), **chosen)


@dataclass(frozen=True, slots=True)
class WooReply:
    """A decoded answer with the paging headers of collection routes."""

    data: Any
    status: int
    total: int | None = None
    total_pages: int | None = None


WOO_ERRORS = ErrorTable({
    # 401 is "you are not (or no longer) authenticated", whatever the code says
    "401": AuthExpired,
    "woocommerce_rest_authentication_error": AuthExpired,
    "woocommerce_rest_cannot_view": Rejected,  # 403: the key lacks read permission
    "woocommerce_rest_cannot_create": Rejected,
    "woocommerce_rest_cannot_edit": Rejected,
    "woocommerce_rest_cannot_batch": Rejected,
    "rest_invalid_param": Rejected,
    "rest_missing_callback_param": Rejected,
    "woocommerce_rest_request_entity_too_large": Rejected,
    "woocommerce_rest_invalid_page_number": ErrorRule(Rejected, "page_out_of_range"),
    "rest_post_invalid_page_number": ErrorRule(Rejected, "page_out_of_range"),
    "woocommerce_rest_shop_order_invalid_id": NotFound,
    "woocommerce_rest_product_invalid_id": NotFound,
    "woocommerce_rest_product_variation_invalid_id": NotFound,
    "rest_no_route": ErrorRule(NotFound, "no_route"),
    "product_invalid_sku": ErrorRule(Rejected, "duplicate_sku"),
    "woocommerce_rest_product_not_created": Rejected,
    "internal_server_error": Transient,
    "429": RateLimited,
    "404": NotFound,
    "500": Transient,
    "502": Transient,
    "503": Transient,
    "504": Transient,
})


def site_url(shop: ShopContext) -> str:
    """The store's address: a configured base URL, or `https://{shop}` filled from the
    option `site` (else the shop's name)."""
    base = shop.base_url.rstrip("/")
    if "{shop}" in base:
        base = base.replace("{shop}", str(shop.options.get("site", shop.name)))
    return base


def webhook_signature(secret: str, raw_body: bytes) -> str:
    """X-WC-Webhook-Signature: base64 HMAC-SHA256 of the exact body bytes."""
    return hmac_b64(secret, raw_body, "sha256")


def _pct(value: str) -> str:
    return quote(value, safe="~-._")


def oauth1_base_string(method: str, url: str, params: Mapping[str, str]) -> str:
    """`METHOD&pct(url)&pct(k=v&…)`: every key and value RFC 3986-encoded, sorted by key,
    `oauth_signature` itself left out; `url` without its query string."""
    encoded = sorted((_pct(str(k)), _pct(str(v))) for k, v in params.items()
                     if k != "oauth_signature")
    param_string = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join((method.upper(), _pct(url), _pct(param_string)))


def oauth1_signature(method: str, url: str, params: Mapping[str, str], consumer_secret: str,
                     signature_method: str = "HMAC-SHA256") -> str:
    """WooCommerce's one-legged OAuth 1.0a signature (no token: the key is `secret&`)."""
    if signature_method not in ("HMAC-SHA256", "HMAC-SHA1"):
        raise ValueError("WooCommerce accepts HMAC-SHA1 or HMAC-SHA256 only")
    digest = hashlib.sha256 if signature_method == "HMAC-SHA256" else hashlib.sha1
    base = oauth1_base_string(method, url, params)
    raw = hmac.new(f"{consumer_secret}&".encode(), base.encode(), digest).digest()
    return base64.b64encode(raw).decode()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value)
    return str(value)


def load_json(api: str, response: httpx.Response) -> Any:
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError as exc:
        raise BadResponse(f"woocommerce {api}: body is not JSON (HTTP {response.status_code})",
                          body=response.content) from exc


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class WooClient(PlatformClient):
    platform: ClassVar[str] = "woocommerce"
    errors: ClassVar[ErrorTable] = WOO_ERRORS

    def __init__(self, shop: ShopContext, session: HttpSession, *, rate: float, burst: int,
                 settings: WooSettings) -> None:
        super().__init__(shop, session, rate=rate, burst=burst)
        self.settings = settings
        self.site = site_url(shop)
        mode = settings.auth or ("basic" if self.site.startswith("https://") else "oauth1")
        if mode in ("basic", "query") and not self.site.startswith("https://"):
            # WooCommerce reads these only over SSL; on http they would also leak the secret
            raise ValueError(f"woocommerce: auth {mode!r} needs an https store URL")
        self.auth_mode = mode

    async def call_once(self, api: str, params: Mapping[str, Any] | None = None) -> Any:
        """One attempt, no transport retry: for writes WooCommerce does not deduplicate
        (a tracking item POSTed twice is stored twice). The caller checks what happened."""
        token = self.shop.tokens.current()
        return await self._send_once(api, params or {}, token.access_token, 1)

    def build_request(self, api: str, params: Mapping[str, Any], access_token: str) -> httpx.Request:
        method, _, route = api.partition(" ")
        url = f"{self.site}{API_ROOT}{route}"
        headers = {"Accept": "application/json"}
        body: bytes | None = None
        query: dict[str, str] = {}
        if method in ("GET", "DELETE"):
            query = {k: _query_value(v) for k, v in params.items() if v is not None}
        else:
            headers["Content-Type"] = "application/json"
            body = json.dumps(dict(params), default=str).encode()
        key, secret = self.shop.app_key, self.shop.app_secret.reveal()
        if self.auth_mode == "basic":
            token = base64.b64encode(f"{key}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        elif self.auth_mode == "query":
            query.update(consumer_key=key, consumer_secret=secret)
        else:
            query.update(
                oauth_consumer_key=key,
                oauth_timestamp=str(int(self.clock.now().timestamp())),
                oauth_nonce=uuid.uuid4().hex,
                oauth_signature_method=self.settings.oauth_signature_method)
            query["oauth_signature"] = oauth1_signature(
                method, url, query, secret, self.settings.oauth_signature_method)
        return httpx.Request(method, url, params=query or None, headers=headers, content=body)

    def parse_response(self, api: str, response: httpx.Response) -> WooReply:
        status = response.status_code
        if status == 429:
            raise RateLimited(f"woocommerce {api}: HTTP 429", code="429",
                              retry_after=retry_after_header(response))
        text = response.content.strip()
        if status >= 500 and not text.startswith((b"{", b"[")):
            raise Transient(f"woocommerce {api}: HTTP {status}", code=str(status))
        payload = load_json(api, response)
        if status >= 300:
            code = str(payload.get("code", "")) if isinstance(payload, Mapping) else ""
            message = str(payload.get("message", "")) if isinstance(payload, Mapping) else ""
            if status == 401:
                rule_code = "401"
            elif code in self.errors.rules:
                rule_code = code
            else:
                rule_code = str(status) if str(status) in self.errors.rules else code
            error = self.errors.error(rule_code, f"{api}: HTTP {status} {code}: {message}"[:500])
            error.code = code or str(status)
            raise error
        return WooReply(payload, status, _header_int(response, "X-WP-Total"),
                        _header_int(response, "X-WP-TotalPages"))
