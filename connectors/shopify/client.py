"""Shopify Admin GraphQL API: the envelope, the cost budget and the one error table.

Every call is a POST of a named operation (`operations.DOCUMENTS`) to
`{shop}/admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`. Shopify limits by
*cost*, not by request count: a leaky bucket per app and store whose state comes back in
`extensions.cost` on every answer. A throttled answer has no `data`; newer bodies say
`extensions.code == "THROTTLED"`, older ones only `"message": "Throttled"`, and the HTTP
status has been seen as both 200 and 429 — so the body decides, never the status. The wait
is `(requestedQueryCost - currentlyAvailable) / restoreRate`.

Expiring offline tokens (Shopify, December 2025) last an hour and are renewed at
`POST {shop}/admin/oauth/access_token` with `grant_type=refresh_token`; every refresh
rotates the refresh token. Non-expiring tokens (custom apps) have no refresh token: an
expired or revoked one ends in AuthExpired, which is the truth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from connectors.shopify.operations import DOCUMENTS
from core.connector import ShopContext
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)
from core.http import ErrorRule, ErrorTable, HttpSession, PlatformClient, retry_after_header
from core.signing import hmac_b64

TOKEN_API = "oauth/access_token"
GRAPHQL_PATH = "/admin/api/{version}/graphql.json"
TOKEN_PATH = "/admin/oauth/access_token"


@dataclass(frozen=True, slots=True)
class ShopifySettings:
    """What this connector could not confirm from Shopify's own pages, or what a shop may
    want differently — one place. Every field is overridden by the same key in
    `shop.options` (e.g. `options = {"api_version": "2027-01", "location_id": "123"}`)."""

    # newest stable version in Nov 2026 [confirmed]; pin per shop when upgrading
    api_version: str = "2026-10"
    # "" = the shop's primary location, read with `location { id }` (the argument-less
    # form returning the primary location is unconfirmed: set the id to be sure)
    location_id: str = ""
    # `correction` is confirmed in Shopify examples; the full reason list is not
    inventory_reason: str = "correction"
    reference_document_uri: str = "gid://erpsync/StockSync/{shop}"
    # compare-and-swap mismatches re-read and retried inside one set_stock call
    stale_retries: int = 3
    notify_customer: bool = True
    # a throttled body whose cost block cannot give a positive wait (seen in SDK fixtures)
    min_throttle_wait: float = 1.0
    # fulfillmentCreate userErrors carry no code; a closed fulfillment order answers
    # "Fulfillment order N has an unfulfillable status= closed." [corroborated]
    closed_fulfillment_pattern: str = r"unfulfillable status= ?closed"
    unfulfillable_pattern: str = r"unfulfillable status"
    # carrier names Shopify recognises build their own tracking URL; others get ours
    # [the recognised list is Shopify's and changes; unconfirmed for Chinese carriers]
    recognised_companies: frozenset[str] = frozenset({
        "UPS", "FedEx", "USPS", "DHL Express", "SF Express", "China Post",
        "China EMS (ePacket)", "YunExpress", "4PX",
    })
    fallback_tracking_url: str = "https://t.17track.net/en#nums={number}"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ShopifySettings:
        names = {f.name for f in fields(cls)} - {"extra"}
        chosen: dict[str, Any] = {k: options[k] for k in names if k in options}
        if "recognised_companies" in chosen:
            chosen["recognised_companies"] = frozenset(chosen["recognised_companies"])
        return replace(cls(), **chosen)


SHOPIFY_ERRORS = ErrorTable({
    # top-level GraphQL error codes
    "THROTTLED": RateLimited,
    "MAX_COST_EXCEEDED": Rejected,
    "ACCESS_DENIED": Rejected,
    "SHOP_INACTIVE": Rejected,
    "INTERNAL_SERVER_ERROR": Transient,
    "BAD_REQUEST": Rejected,
    "INVALID_VARIABLE": Rejected,
    # HTTP statuses that come with a REST-style {"errors": "..."} body
    "401": AuthExpired,
    "402": ErrorRule(Rejected, "shop_frozen"),
    "403": Rejected,
    "404": NotFound,
    "423": ErrorRule(Rejected, "shop_locked"),
    "429": RateLimited,
    "500": Transient,
    "502": Transient,
    "503": Transient,
    "504": Transient,
    # token endpoint (OAuth 2.0 error names)
    "invalid_grant": AuthExpired,
    "invalid_client": AuthExpired,
    "invalid_request": AuthExpired,
    # userErrors codes
    "CHANGE_FROM_QUANTITY_STALE": ErrorRule(Rejected, "stale_quantity"),
    "COMPARE_QUANTITY_STALE": ErrorRule(Rejected, "stale_quantity"),
    "IDEMPOTENCY_CONCURRENT_REQUEST": Transient,
    "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED": ErrorRule(Rejected, "idempotency_key_spent"),
    "IDEMPOTENCY_KEY_PARAMETER_MISMATCH": Rejected,
    "INVALID_INVENTORY_ITEM": NotFound,
    "INVALID_LOCATION": Rejected,
    "INVALID_NAME": Rejected,
    "INVALID_REASON": Rejected,
    "INVALID_QUANTITY_NEGATIVE": Rejected,
    "ITEM_NOT_STOCKED_AT_LOCATION": ErrorRule(Rejected, "not_stocked_at_location"),
    "NON_MUTABLE_INVENTORY_ITEM": Rejected,
    "SERVICE_UNAVAILABLE": Transient,
    "PRODUCT_DOES_NOT_EXIST": NotFound,
    "PRODUCT_VARIANT_DOES_NOT_EXIST": NotFound,
    # fulfillmentCreate userErrors have no code; the client names them from the message
    "FULFILLMENT_ORDER_CLOSED": ErrorRule(Rejected, "already_shipped"),
    "FULFILLMENT_ORDER_UNFULFILLABLE": ErrorRule(Rejected, "not_fulfillable"),
})


def shop_base_url(shop: ShopContext) -> str:
    """`https://{shop}.myshopify.com` with the shop's handle filled in (option `shop`,
    else the shop's name); a configured base URL (sandbox, proxy) is used as it is."""
    base = shop.base_url.rstrip("/")
    if "{shop}" in base:
        base = base.replace("{shop}", str(shop.options.get("shop", shop.name)))
    return base


def webhook_signature(secret: str, raw_body: bytes) -> str:
    """X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the raw body, keyed by the app secret."""
    return hmac_b64(secret, raw_body, "sha256")


def load_json(api: str, response: httpx.Response) -> Any:
    """JSON with decimals kept exact (money and costs never become floats)."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError as exc:
        raise BadResponse(f"shopify {api}: body is not JSON (HTTP {response.status_code})",
                          body=response.content) from exc


class CostBudget:
    """The shop's cost bucket as Shopify last reported it, plus the requested cost each
    operation had last time: before sending, wait until the bucket can pay for it, so a
    busy shop is throttled by us rather than by Shopify."""

    def __init__(self) -> None:
        self.maximum = 0.0
        self.available = 0.0
        self.restore = 0.0
        self.stamp = 0.0
        self.requested: dict[str, float] = {}

    def update(self, api: str, cost: Mapping[str, Any], now: float) -> None:
        status = cost.get("throttleStatus") or {}
        try:
            self.maximum = float(status["maximumAvailable"])
            self.available = float(status["currentlyAvailable"])
            self.restore = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        self.stamp = now
        requested = cost.get("requestedQueryCost")
        if requested is not None:
            self.requested[api] = float(requested)

    def wait_before(self, api: str, now: float) -> float:
        need = self.requested.get(api)
        if need is None or self.restore <= 0:
            return 0.0
        current = min(self.maximum, self.available + (now - self.stamp) * self.restore)
        return max(0.0, (need - current) / self.restore)


def throttle_wait(extensions: Any, minimum: float) -> float | None:
    """Seconds until the bucket holds the requested cost, or None when unknown."""
    cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
    if not isinstance(cost, Mapping):
        return None
    status = cost.get("throttleStatus") or {}
    try:
        requested = float(cost["requestedQueryCost"])
        available = float(status["currentlyAvailable"])
        restore = float(status["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return None
    if restore <= 0:
        return None
    return max((requested - available) / restore, minimum)


def _is_throttle(error: Mapping[str, Any]) -> bool:
    ext = error.get("extensions")
    code = ext.get("code") if isinstance(ext, Mapping) else None
    message = str(error.get("message", ""))
    return code == "THROTTLED" or message.startswith("Throttled")


class ShopifyClient(PlatformClient):
    platform: ClassVar[str] = "shopify"
    errors: ClassVar[ErrorTable] = SHOPIFY_ERRORS

    def __init__(self, shop: ShopContext, session: HttpSession, *, rate: float, burst: int,
                 settings: ShopifySettings) -> None:
        super().__init__(shop, session, rate=rate, burst=burst)
        self.settings = settings
        self.base = shop_base_url(shop)
        self.budget = CostBudget()

    @property
    def graphql_url(self) -> str:
        return self.base + GRAPHQL_PATH.format(version=self.settings.api_version)

    async def call(self, api: str, params: Mapping[str, Any] | None = None, *,
                   authenticated: bool = True) -> Any:
        wait = self.budget.wait_before(api, self.clock.monotonic())
        if wait > 0:
            await self.clock.sleep(wait)
        return await super().call(api, params, authenticated=authenticated)

    # -- envelope ------------------------------------------------------------------------
    def build_request(self, api: str, params: Mapping[str, Any], access_token: str) -> httpx.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api == TOKEN_API:
            body = {
                "client_id": self.shop.app_key,
                "client_secret": self.shop.app_secret.reveal(),
                "grant_type": "refresh_token",
                "refresh_token": params["refresh_token"],
            }
            return httpx.Request("POST", self.base + TOKEN_PATH, headers=headers,
                                 content=json.dumps(body).encode())
        try:
            document = DOCUMENTS[api]
        except KeyError:
            raise ValueError(f"unknown Shopify operation {api!r}") from None
        body = {"query": document, "operationName": api, "variables": dict(params)}
        headers["X-Shopify-Access-Token"] = access_token
        return httpx.Request("POST", self.graphql_url, headers=headers,
                             content=json.dumps(body).encode())

    def parse_response(self, api: str, response: httpx.Response) -> Any:
        if api == TOKEN_API:
            return self._parse_token(response)
        status = response.status_code
        if status >= 500 and not response.content.strip().startswith(b"{"):
            raise Transient(f"shopify {api}: HTTP {status}", code=str(status))
        payload = load_json(api, response)
        if not isinstance(payload, Mapping):
            raise BadResponse(f"shopify {api}: body is not an object", body=response.content)
        extensions = payload.get("extensions")
        errors = payload.get("errors")
        if isinstance(errors, list) and errors:
            self._raise_graphql_errors(api, errors, extensions, response)
        if status >= 300 or errors:
            self._raise_http(api, status, errors, response)
        if isinstance(extensions, Mapping) and isinstance(extensions.get("cost"), Mapping):
            self.budget.update(api, extensions["cost"], self.clock.monotonic())
        data = payload.get("data")
        if not isinstance(data, Mapping):
            raise BadResponse(f"shopify {api}: answer has no data", body=response.content)
        return data

    def _raise_graphql_errors(self, api: str, errors: list[Any], extensions: Any,
                              response: httpx.Response) -> None:
        first = errors[0] if isinstance(errors[0], Mapping) else {"message": str(errors[0])}
        message = "; ".join(str(e.get("message", e)) if isinstance(e, Mapping) else str(e)
                            for e in errors)[:500]
        if any(isinstance(e, Mapping) and _is_throttle(e) for e in errors):
            wait = throttle_wait(extensions, self.settings.min_throttle_wait)
            if wait is None:
                wait = retry_after_header(response)
            raise self.errors.error("THROTTLED", f"{api}: {message}", retry_after=wait)
        ext = first.get("extensions")
        code = str(ext.get("code")) if isinstance(ext, Mapping) and ext.get("code") else ""
        if not code and response.status_code >= 300:
            code = str(response.status_code)
        raise self.errors.error(code or "GRAPHQL_ERROR", f"{api}: {message}")

    def _raise_http(self, api: str, status: int, errors: Any, response: httpx.Response) -> None:
        text = errors if isinstance(errors, str) else json.dumps(errors, default=str)
        code = str(status) if status >= 300 else "GRAPHQL_ERROR"
        if status >= 500 and code not in self.errors.rules:
            raise Transient(f"shopify {api}: HTTP {status}", code=code)
        retry = retry_after_header(response) if status == 429 else None
        raise self.errors.error(code, f"{api}: {text}"[:500], retry_after=retry)

    def _parse_token(self, response: httpx.Response) -> Mapping[str, Any]:
        status = response.status_code
        if status >= 500:
            raise Transient(f"shopify token refresh: HTTP {status}", code=str(status))
        payload = load_json(TOKEN_API, response)
        if status == 200 and isinstance(payload, Mapping) and payload.get("access_token"):
            return payload
        code = str(payload.get("error", status)) if isinstance(payload, Mapping) else str(status)
        # the refresh token is spent, expired or revoked: only the merchant can fix it
        if code not in self.errors.rules:
            code = "invalid_grant"
        raise self.errors.error(code, "token refresh refused: re-authorise the shop")

    # -- mutation payloads ---------------------------------------------------------------
    def user_error(self, api: str, user_errors: list[Mapping[str, Any]]) -> ConnectorError:
        """The canonical error for a mutation's userErrors (the first one decides)."""
        first = user_errors[0]
        message = "; ".join(str(e.get("message", "")) for e in user_errors)[:500]
        code = str(first.get("code") or "")
        if not code:
            if re.search(self.settings.closed_fulfillment_pattern, message):
                code = "FULFILLMENT_ORDER_CLOSED"
            elif re.search(self.settings.unfulfillable_pattern, message):
                code = "FULFILLMENT_ORDER_UNFULFILLABLE"
            else:
                code = "USER_ERROR"
        return self.errors.error(code, f"{api}: {message}")
