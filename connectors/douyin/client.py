"""Douyin Shop (抖店开放平台) envelope: param_json, HMAC-SHA256 signing, the error table.

Every call is `POST https://openapi-fxg.jinritemai.com/<method with . → />` with the public
parameters in the query string and the business parameters as one JSON text (`param_json`)
in the body. The signature covers the exact `param_json` text, so the text is built once per
attempt and sent byte for byte as signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any

import httpx

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

SUCCESS_CODE = 10000
SIGN_VERSION = "2"
TOKEN_METHODS = frozenset({"token.create", "token.refresh"})  # signed, but without access_token


@dataclass(frozen=True, slots=True)
class DouyinFacts:
    """What the public material leaves open about Douyin, in one place.

    Every field can be overridden per shop with `shop.options["douyin"] = {field: value}`.
    Sources: reference/platforms/douyin.md plus the per-API error tables of a public SDK
    generated from the official docs (order.searchList: "最大支持查询近90天的数据",
    "翻页查询最多支持查询到5万"; token.refresh lifetimes).
    """

    # order.searchList documents no maximum update-time window, only a 90-day look-back and
    # a 50 000-row paging depth; short windows keep each one far below that depth.
    order_window: timedelta = timedelta(hours=6)
    order_lookback: timedelta = timedelta(days=90)
    order_paging_depth: int = 50_000
    # per-app QPS is published nowhere; throttling answers code 60000
    requests_per_second: float = 10.0
    # sku.syncStockBatch states no batch size; the multi-product variant caps at 50
    stock_batch_max: int = 50
    # newer doc demo: [now-300 s, now+300 s]; the older page says 10 minutes
    timestamp_skew: timedelta = timedelta(seconds=300)
    # push ack: community SDKs answer this; the official page was not found
    push_ack_body: bytes = b'{"code":0,"msg":"success"}'

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DouyinFacts:
        overrides = dict(options.get("douyin", {}))
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown douyin option(s): {sorted(unknown)}")
        for name in ("order_window", "order_lookback", "timestamp_skew"):
            if name in overrides and not isinstance(overrides[name], timedelta):
                overrides[name] = timedelta(seconds=float(overrides[name]))
        return replace(cls(), **overrides)


def _drop_empty(value: Any) -> Any:
    """The official SDK serialises with omitempty: no `null` ever reaches param_json."""
    if isinstance(value, Mapping):
        return {k: _drop_empty(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_empty(v) for v in value]
    return value


def param_json(params: Mapping[str, Any]) -> str:
    """Keys sorted at every level, compact, UTF-8 kept, no HTML escaping."""
    return json.dumps(_drop_empty(params), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def sign_input(app_key: str, secret: str, method: str, params_text: str, timestamp: str) -> str:
    pattern = (f"app_key{app_key}method{method}param_json{params_text}"
               f"timestamp{timestamp}v{SIGN_VERSION}")
    return f"{secret}{pattern}{secret}"


def sign(app_key: str, secret: str, method: str, params_text: str, timestamp: str,
         sign_method: str = "hmac-sha256") -> str:
    text = sign_input(app_key, secret, method, params_text, timestamp)
    if sign_method == "md5":  # legacy
        return hashlib.md5(text.encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def push_sign(app_key: str, body: bytes, secret: str) -> str:
    """`event-sign` header of a message push: md5(app_key + raw body + app_secret)."""
    return hashlib.md5(app_key.encode() + body + secret.encode()).hexdigest()


def method_path(method: str) -> str:
    return "/" + method.replace(".", "/")


# One table: main codes, sub-code families (the part before ':') and exact sub codes.
# Lookup order is exact sub code, then family, then main code (`error_key`).
ERRORS = ErrorTable({
    "20000": Transient,
    "20001": Transient,
    "isp.service-error": Transient,
    "30001": ErrorRule(Rejected, "permission"),
    "30002": ErrorRule(Rejected, "ip_not_whitelisted"),
    "40001": Rejected,
    "40002": Rejected,
    "40003": Rejected,
    "40004": Rejected,
    "isv.access-token-expired": AuthExpired,
    "isv.access-token-no-existed": AuthExpired,
    "isv.access-token-invalid": AuthExpired,
    "isv.signature-invalid": ErrorRule(Rejected, "bad_signature"),
    "isv.timestamp-invalid": ErrorRule(Rejected, "clock_skew"),
    "50001": Rejected,
    "dop.token-generate-failed": AuthExpired,  # refresh token expired/invalid: re-authorise
    "50002": Rejected,
    # order.logisticsAdd / logisticsAddMultiPack
    "isv.business-failed:60110": ErrorRule(Rejected, "already_shipped"),
    "isv.business-failed:70023": ErrorRule(Rejected, "already_shipped"),
    "isv.business-failed:60018": ErrorRule(Rejected, "bad_carrier"),
    "isv.business-failed:70022": ErrorRule(Rejected, "foreign_waybill"),
    "isv.business-failed:60027": ErrorRule(Rejected, "missing_sender_address"),
    "isv.business-failed:60072": ErrorRule(Rejected, "missing_sender_address"),
    "isv.business-failed:60033": NotFound,
    "isv.business-failed:60102": NotFound,
    "isv.business-failed:60106": Transient,
    "isv.business-failed:60114": Transient,
    "isv.business-failed:60121": Transient,
    # sku.syncStock(Batch): "系统繁忙" under the business code
    "isv.business-failed:2010401": Transient,
    # token.refresh: "刷新token失败，有并发请求" — call again for the newest token
    "isv.business-failed:31012": Transient,
    "60000": RateLimited,
    "70000": ErrorRule(Rejected, "api_offline"),
    "80000": Rejected,
    "90000": Transient,
})


def error_key(code: str, sub_code: str) -> str:
    if sub_code in ERRORS.rules:
        return sub_code
    family = sub_code.split(":", 1)[0]
    if family and family in ERRORS.rules:
        return family
    return code


def platform_error(code: Any, msg: str, sub_code: str, sub_msg: str) -> ConnectorError:
    """The canonical error of one Douyin error envelope; `.code` keeps the main code and the
    text keeps the sub code, as operators search the platform's tables by both."""
    main = str(code)
    key = error_key(main, sub_code or "")
    text = " / ".join(part for part in (msg, sub_code, sub_msg) if part)
    error = ERRORS.error(key, text)
    error.code = main
    return error


class DouyinClient(PlatformClient):
    platform = "douyin"
    errors = ERRORS

    def build_request(self, api: str, params: Mapping[str, Any], access_token: str) -> httpx.Request:
        body = param_json(params)
        timestamp = str(int(self.clock.now().timestamp()))
        secret = self.shop.app_secret.reveal()
        query = {
            "app_key": self.shop.app_key,
            "method": api,
            "timestamp": timestamp,
            "v": SIGN_VERSION,
            "sign_method": "hmac-sha256",
            "sign": sign(self.shop.app_key, secret, api, body, timestamp),
        }
        if api not in TOKEN_METHODS:
            query["access_token"] = access_token
        return httpx.Request(
            "POST", self.shop.base_url.rstrip("/") + method_path(api), params=query,
            content=body.encode(),
            headers={"Content-Type": "application/json;charset=UTF-8",
                     "x-open-no-old-err-code": "1"})

    def parse_response(self, api: str, response: httpx.Response) -> Any:
        failure = http_status_error(self.platform, api, response)
        if failure is not None:
            raise failure
        payload = parse_json(self.platform, api, response)
        if not isinstance(payload, dict):
            raise BadResponse(f"douyin {api}: envelope is not an object", body=response.content)
        if "code" in payload:
            if payload["code"] == SUCCESS_CODE:
                return payload.get("data") or {}
            raise platform_error(payload["code"], str(payload.get("msg", "")),
                                 str(payload.get("sub_code", "") or ""),
                                 str(payload.get("sub_msg", "") or ""))
        if "err_no" in payload:  # old envelope
            if payload["err_no"] == 0:
                return payload.get("data") or {}
            raise platform_error(payload["err_no"], str(payload.get("message", "")), "", "")
        raise BadResponse(f"douyin {api}: envelope has neither code nor err_no",
                          body=response.content)
