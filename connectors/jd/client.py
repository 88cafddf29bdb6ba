"""JD Open Platform (京东开放平台 / JOS) envelope: `/routerjson`, `360buy_param_json`, the MD5
signature, the `_responce` wrapper and the one error table.

A call sends system parameters (`method`, `app_key`, `access_token`, `timestamp`, `v`)
plus every business parameter serialised, keys sorted, into one JSON string
`360buy_param_json`; that string is signed exactly as sent. An answer can fail at three
depths, checked in order: `error_response` (gateway), the wrapper's `code` (≠ "0"), and
the API's own result object (`apiResult.success`, `sopjosshipment_result.success`, …),
which the connector checks per API with `check_result`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from connectors.jd.mapping import load_json
from core.clock import beijing
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)
from core.http import ErrorRule, ErrorTable, PlatformClient, http_status_error
from core.signing import concat_sorted, md5_hex

GATEWAY_PATH = "/routerjson"
OAUTH_REFRESH_PATH = "/oauth2/refresh_token"
PRODUCTION_HOST = "https://api.jd.com"
OAUTH_HOST = "https://open-oauth.jd.com"
PARAM_JSON = "360buy_param_json"
# Not a router method: the OAuth refresh lives on its own host and speaks plain JSON.
REFRESH_API = "oauth2.refresh_token"

JD_ERRORS = ErrorTable({
    "2": RateLimited,  # App Call Limited (quota / call frequency)
    "4": Rejected,  # missing version
    "5": Rejected,  # unsupported version
    "7": Rejected,  # missing timestamp
    "8": Rejected,  # invalid timestamp (format or clock skew)
    "11": ErrorRule(Rejected, "bad_signature"),  # missing signature
    "12": ErrorRule(Rejected, "bad_signature"),  # invalid signature
    "14": Rejected,  # missing method
    "15": Rejected,  # no such method
    "19": AuthExpired,  # invalid access_token (expired or revoked)
    "21": Rejected,  # invalid app_key
    "24": Rejected,  # merchant may not call this API
    "33": Transient,  # system processing timeout, query again
    "65": Transient,  # platform/back-end timeout
    "11100006": Rejected,  # shop not opened
})


@dataclass(frozen=True, slots=True)
class JdAssumptions:
    """Everything the public material leaves unconfirmed for JD, in one place.

    Override any field per shop with `shop.options["jd_assumptions"] = {"field": value}`.
    """

    # zh_desc / chineseErrCode fragment -> outcome, first match wins. JD documents no
    # error-code list for shipment or stock writes; these read the Chinese message.
    business_errors: tuple[tuple[str, str], ...] = (
        ("已被其他订单使用", "foreign_waybill"),
        ("物流公司", "bad_carrier"),
        ("承运商", "bad_carrier"),
        ("发货地址", "missing_sender_address"),
        ("已出库", "already_shipped"),
        ("已发货", "already_shipped"),
        ("运单号不符合", "bad_tracking_number"),
        ("订单不存在", "not_found"),
        ("SKU不存在", "not_found"),
        ("商品不存在", "not_found"),
    )
    # states asked for in pop.order.search (names, never numbers)
    order_states: tuple[str, ...] = (
        "WAIT_SELLER_STOCK_OUT", "WAIT_GOODS_RECEIVE_CONFIRM", "WAIT_SELLER_DELIVERY",
        "PAUSE", "POP_ORDER_PAUSE", "FINISHED_L", "TRADE_CANCELED", "LOCKED",
    )
    # set-absolute stock method; one ERP notes it may be superseded by
    # jingdong.ware.stock.sku.set (same skuId/stockNum parameters)
    stock_method: str = "jingdong.stock.write.updateSkuStock"
    # jingdong.sku.read.searchSkuList page size (maximum not published; 50 is seen used)
    sku_page_size: int = 50
    # OAuth host for token refresh; None = open-oauth.jd.com in production, else the
    # shop's base URL (sandboxes serve both paths under one root)
    oauth_base_url: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> JdAssumptions:
        overrides = dict(options.get("jd_assumptions") or {})
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown jd_assumptions option(s): {sorted(unknown)}")
        for name in ("business_errors",):
            if name in overrides:
                overrides[name] = tuple((str(k), str(v)) for k, v in overrides[name])
        if "order_states" in overrides:
            overrides["order_states"] = tuple(overrides["order_states"])
        return replace(cls(), **overrides)

    def business_outcome(self, text: str) -> str:
        for fragment, outcome in self.business_errors:
            if fragment in text:
                return outcome
        return ""


ASSUMPTIONS = JdAssumptions()


def param_json(params: Mapping[str, Any]) -> str:
    """Business parameters as JD wants them: one compact JSON object, keys sorted."""
    return json.dumps(params, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      default=str)


def sign(params: Mapping[str, str], app_secret: str) -> str:
    """UPPER(MD5(secret + k1v1k2v2… sorted by name + secret)); `sign` itself excluded."""
    return md5_hex(app_secret + concat_sorted(params) + app_secret).upper()


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_responce"


class JdClient(PlatformClient):
    platform: ClassVar[str] = "jd"
    errors: ClassVar[ErrorTable] = JD_ERRORS

    def __init__(self, *args: Any, assumptions: JdAssumptions = ASSUMPTIONS,
                 production_base: str = PRODUCTION_HOST, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.assumptions = assumptions
        base = self.shop.base_url.rstrip("/")
        self.oauth_base = (assumptions.oauth_base_url
                           or (OAUTH_HOST if base == production_base.rstrip("/") else base))

    def timestamp(self) -> str:
        now = beijing(self.clock.now())
        return now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}+0800"

    def signed_params(self, api: str, params: Mapping[str, Any],
                      access_token: str) -> dict[str, str]:
        wire = {"method": api, "app_key": self.shop.app_key, "timestamp": self.timestamp(),
                "v": "2.0", PARAM_JSON: param_json(params)}
        if access_token:
            wire["access_token"] = access_token
        wire["sign"] = sign(wire, self.shop.app_secret.reveal())
        return wire

    def build_request(self, api: str, params: Mapping[str, Any],
                      access_token: str) -> httpx.Request:
        if api == REFRESH_API:
            query = {"app_key": self.shop.app_key, "app_secret": self.shop.app_secret.reveal(),
                     "grant_type": "refresh_token", "refresh_token": params["refresh_token"]}
            return httpx.Request("GET", self.oauth_base + OAUTH_REFRESH_PATH, params=query)
        body = urlencode(self.signed_params(api, params, access_token))
        return httpx.Request(
            "POST", self.shop.base_url.rstrip("/") + GATEWAY_PATH, content=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"})

    def parse_response(self, api: str, response: httpx.Response) -> Any:
        failure = http_status_error(self.platform, api, response)
        if failure is not None:
            raise failure
        try:
            payload = load_json(response.content)
        except ValueError as exc:
            raise BadResponse(f"jd {api}: body is not JSON", body=response.content) from exc
        if not isinstance(payload, dict):
            raise BadResponse(f"jd {api}: not a JSON object", body=response.content)
        if api == REFRESH_API:
            return self._token_answer(payload)
        if "error_response" in payload:
            raise self.gateway_error(payload["error_response"])
        key = response_key(api)
        inner = payload.get(key, payload.get(key[: -len("responce")] + "response"))
        if not isinstance(inner, dict):
            raise BadResponse(f"jd {api}: no {key} in the answer", body=response.content)
        code = str(inner.get("code", "0"))
        if code != "0":
            raise self.gateway_error({**inner, "code": code})
        return inner

    @staticmethod
    def _token_answer(payload: dict[str, Any]) -> dict[str, Any]:
        if str(payload.get("code", "0")) != "0" or not payload.get("access_token"):
            # an expired or unknown refresh token cannot be refreshed again: re-authorise
            raise AuthExpired(f"jd token refresh refused: [{payload.get('code')}] "
                              f"{payload.get('msg', '')}", code=str(payload.get("code", "")))
        return payload

    def gateway_error(self, body: Any) -> ConnectorError:
        if not isinstance(body, dict):
            return BadResponse("jd: error_response is not an object", body=str(body))
        code = str(body.get("code", ""))
        message = str(body.get("zh_desc") or body.get("en_desc") or body.get("msg") or "")
        if code in self.errors.rules:
            return self.errors.error(code, message)
        return self.business_error(code, message)

    def business_error(self, code: str, message: str) -> ConnectorError:
        """An API-specific refusal, read from its Chinese message."""
        outcome = self.assumptions.business_outcome(message)
        text = f"[{code}] {message}"
        if outcome == "not_found":
            return NotFound(text, code=code, platform_message=message)
        return Rejected(text, reason=outcome, code=code, platform_message=message)

    def check_result(self, api: str, result: Any, *, flag: str = "success") -> dict[str, Any]:
        """The API's own result object must say success; otherwise raise what it says."""
        if not isinstance(result, dict):
            raise BadResponse(f"jd {api}: result object missing", body=str(result)[:2000])
        ok = result.get(flag)
        if ok is True or str(ok).lower() == "true":
            return result
        code = str(result.get("errorCode") or result.get("numberCode") or "")
        message = str(result.get("chineseErrCode") or result.get("englishErrCode") or "failed")
        raise self.business_error(code, message)
