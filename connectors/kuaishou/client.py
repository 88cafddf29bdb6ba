"""Kuaishou e-commerce (快手电商开放平台) envelope: signSecret signing, the error table, the
OAuth refresh call and the AES-CBC message crypto.

Every business call goes to `https://openapi.kwaixiaodian.com/<method with . → />` with the
public parameters `appkey, method, version=1, param (JSON text), access_token, timestamp (ms),
signMethod, sign`. The sign uses the app's separate *signSecret* (ShopContext.extra_secrets
["sign_secret"]), never the appSecret. Pushes are AES-128-CBC ciphertext under the app's
*msgSecret* (extra_secrets["msg_secret"]).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core.clock import BEIJING
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)
from core.http import ErrorRule, ErrorTable, PlatformClient, http_status_error, parse_json
from core.signing import hmac_b64, md5_hex

VERSION = "1"
SUCCESS = 1
REFRESH_API = "oauth2.refresh_token"  # OAuth endpoint: not signed, app_secret in the form
SIGNED_PARAMS = ("access_token", "appkey", "method", "param", "signMethod", "timestamp",
                 "version")
# HTTP method per API, from the official schema export
GET_APIS = frozenset({
    "open.order.cursor.list", "open.order.detail", "open.item.list.get", "open.item.get",
    "open.item.sku.list.get", "open.seller.order.refund.pcursor.list",
    "open.seller.order.refund.detail", "open.address.seller.list",
})


@dataclass(frozen=True, slots=True)
class KuaishouFacts:
    """What the public material leaves open about Kuaishou, in one place.

    Override per shop with `shop.options["kuaishou"] = {field: value}`. The documented limits
    (≤ 50 per page, ≤ 7-day window, ≤ 90 days back, ms timestamps) are constants elsewhere.
    """

    sign_method: str = "HMAC_SHA256"  # the doc recommends it; MD5 also accepted
    # timestamp tolerance is not published; the simulator notes suggest ±10 min
    timestamp_skew: timedelta = timedelta(minutes=10)
    # Numeric codes seen only in community SDKs: 27 = sign check failed, 28 = token
    # expired / no scope ("鉴权失败" / "TOKEN过期" are the official texts, numbers unshown).
    bad_sign_result: int = 27
    token_expired_result: int = 28
    # QPS answers carry the official text "Exceed qps limit, KEY [...]"; the number is
    # community-only (15/16/17/1016/802000 appear)
    rate_limit_result: int = 802000
    # no "system busy" body is published: the gateway's own 5xx is assumed
    system_busy_http_status: int = 503
    # deliver on an already shipped order with a *different* waybill: text unpublished
    # (the same waybill again succeeds idempotently since 2024-11-25)
    already_shipped_text: str = "订单已发货"
    # stock is a delta on this platform: how often a write whose outcome is unknown is
    # re-read and re-decided before giving up
    stock_attempts: int = 3
    requests_per_second: float = 50.0  # open.order.cursor.list: 300/app; others unpublished

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> KuaishouFacts:
        overrides = dict(options.get("kuaishou", {}))
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown kuaishou option(s): {sorted(unknown)}")
        if "timestamp_skew" in overrides and not isinstance(overrides["timestamp_skew"],
                                                            timedelta):
            overrides["timestamp_skew"] = timedelta(seconds=float(overrides["timestamp_skew"]))
        return replace(cls(), **overrides)


# -- signing -------------------------------------------------------------------------------
def param_text(params: Mapping[str, Any]) -> str:
    """`param` is signed as sent; the platform does not re-sort it. One canonical text:
    compact, insertion order, UTF-8 kept."""
    return json.dumps(dict(params), ensure_ascii=False, separators=(",", ":"))


def sign_string(public: Mapping[str, Any], sign_secret: str) -> str:
    pairs = [f"{k}={public[k]}" for k in sorted(SIGNED_PARAMS) if public.get(k) is not None]
    return "&".join(pairs) + f"&signSecret={sign_secret}"


def sign(public: Mapping[str, Any], sign_secret: str) -> str:
    text = sign_string(public, sign_secret)
    if public.get("signMethod") == "MD5":
        return md5_hex(text)
    return hmac_b64(sign_secret, text.encode(), "sha256")


# -- push crypto ---------------------------------------------------------------------------
_ZERO_IV = bytes(16)


def _cipher(msg_secret: str) -> Cipher[modes.CBC]:
    key = base64.b64decode(msg_secret)
    return Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV))


def encrypt_push(msg_secret: str, plaintext: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = _cipher(msg_secret).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize())


def decrypt_push(msg_secret: str, body: bytes) -> bytes:
    """Raises ValueError when the body is not ciphertext under this secret."""
    raw = base64.b64decode(body.strip(), validate=True)
    if not raw or len(raw) % 16:
        raise ValueError("ciphertext is not whole AES blocks")
    decryptor = _cipher(msg_secret).decryptor()
    padded = decryptor.update(raw) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


# -- errors --------------------------------------------------------------------------------
QUOTA_KEYS = frozenset({"exceed quota limit", "1017"})


def build_errors(facts: KuaishouFacts) -> ErrorTable:
    """The one Kuaishou error table (uncertain codes come from `facts`). Message texts come
    first and are matched before result codes: one code (11, 21) carries many meanings."""
    return ErrorTable({
        "Exceed qps limit": RateLimited,
        "exceed quota limit": RateLimited,  # daily quota: retry_after = next Beijing midnight
        "鉴权失败": AuthExpired,
        "TOKEN过期": AuthExpired,
        "token中无scope权限": ErrorRule(Rejected, "missing_scope"),
        "运单号已被其他商家使用": ErrorRule(Rejected, "foreign_waybill"),
        "同一个运单号对应收件地址超过1个": ErrorRule(Rejected, "foreign_waybill"),
        "快递公司不存在": ErrorRule(Rejected, "bad_carrier"),
        "运单号和物流公司不匹配": ErrorRule(Rejected, "bad_carrier"),
        "订单不存在": NotFound,
        "商品不存在": NotFound,
        facts.already_shipped_text: ErrorRule(Rejected, "already_shipped"),
        "11": ErrorRule(Rejected, "delivery_blocked"),
        "21": Rejected,
        "22": ErrorRule(Rejected, "missing_scope"),
        "25": ErrorRule(Rejected, "missing_scope"),
        "24": AuthExpired,  # AUTHORIZATION_REVOKED: refresh once, then re-authorise
        "26": ErrorRule(Rejected, "wrong_token_kind"),
        str(facts.bad_sign_result): ErrorRule(Rejected, "bad_signature"),
        str(facts.token_expired_result): AuthExpired,
        "15": RateLimited, "16": RateLimited, "17": RateLimited, "1016": RateLimited,
        str(facts.rate_limit_result): RateLimited,
        "1017": RateLimited,
        "804000": Rejected,
        "300003": Rejected, "300004": Rejected, "300005": Rejected, "300019": Rejected,
        "300011": NotFound,
        "300014": Transient,  # refund updated meanwhile: read again and retry
        # OAuth
        "100200100": Rejected, "100200101": ErrorRule(Rejected, "bad_app_credentials"),
        "100200102": AuthExpired, "100200105": AuthExpired, "100200107": AuthExpired,
        "100200104": Rejected, "100200106": ErrorRule(Rejected, "missing_scope"),
        "100200500": Transient,
    })


def error_key(table: ErrorTable, result: str, message: str) -> str:
    for key in table.rules:
        if not key.isdigit() and key in message:
            return key
    return result


def seconds_to_beijing_midnight(now: datetime) -> float:
    local = now.astimezone(BEIJING)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - local).total_seconds()


class KuaishouClient(PlatformClient):
    platform = "kuaishou"
    errors = build_errors(KuaishouFacts())

    def __init__(self, *args: Any, facts: KuaishouFacts, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.facts = facts
        self.table = build_errors(facts)

    def _secret(self, name: str) -> str:
        secret = self.shop.extra_secrets.get(name)
        if not secret:
            raise Rejected(f"kuaishou shop {self.shop.name}: extra secret {name!r} is missing",
                           reason="missing_secret")
        return secret.reveal()

    def build_request(self, api: str, params: Mapping[str, Any], access_token: str) -> httpx.Request:
        root = self.shop.base_url.rstrip("/")
        if api == REFRESH_API:
            form = {"grant_type": "refresh_token", "refresh_token": params["refresh_token"],
                    "app_id": self.shop.app_key, "app_secret": self.shop.app_secret.reveal()}
            return httpx.Request("POST", f"{root}/oauth2/refresh_token", data=form)
        public: dict[str, str] = {
            "appkey": self.shop.app_key, "method": api, "version": VERSION,
            "param": param_text(params), "access_token": access_token,
            "timestamp": str(int(self.clock.now().timestamp() * 1000)),
            "signMethod": self.facts.sign_method,
        }
        public["sign"] = sign(public, self._secret("sign_secret"))
        url = root + "/" + api.replace(".", "/")
        if api in GET_APIS:
            return httpx.Request("GET", url, params=public)
        return httpx.Request("POST", url, data=public)

    def parse_response(self, api: str, response: httpx.Response) -> Any:
        failure = http_status_error(self.platform, api, response)
        if failure is not None:
            raise failure
        payload = parse_json(self.platform, api, response)
        if not isinstance(payload, dict) or "result" not in payload:
            raise BadResponse(f"kuaishou {api}: envelope without result", body=response.content)
        if payload["result"] == SUCCESS:
            return payload if api == REFRESH_API else (payload.get("data") or {})
        raise self.platform_error(payload)

    def platform_error(self, payload: Mapping[str, Any]) -> ConnectorError:
        result = str(payload.get("result"))
        message = " / ".join(str(payload[k]) for k in ("error_msg", "error", "msg", "sub_msg")
                             if payload.get(k))
        key = error_key(self.table, result, message)
        retry_after = (seconds_to_beijing_midnight(self.clock.now()) if key in QUOTA_KEYS
                       else None)
        error = self.table.error(key, message or result, retry_after=retry_after)
        error.code = result
        return error

    async def call_once(self, api: str, params: Mapping[str, Any]) -> Any:
        """One attempt, no retries: for writes that are not idempotent (stock deltas). An
        expired token refuses before anything is applied, so that one case is retried."""
        token = self.shop.tokens.current()
        try:
            return await self._send_once(api, params, token.access_token, 1)
        except AuthExpired:
            fresh = await self.shop.tokens.refresh(token)
            return await self._send_once(api, params, fresh.access_token, 2)
