"""Pinduoduo (拼多多开放平台, POP) envelope: the router, the MD5 signature, the response keys
and the one error table.

Every call is a POST of one flat object to `/api/router`: common parameters (`type`,
`client_id`, `timestamp` in Unix seconds, `access_token`, `sign`) side by side with the
business ones. Values are sent as strings so that what we sign is byte for byte what the
router reads back (the official example signs the decimal text of numbers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import httpx

from connectors.pinduoduo.mapping import load_json
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

ROUTER_PATH = "/api/router"
PRODUCTION_HOST = "https://gw-api.pinduoduo.com"

REFRESH_API = "pdd.pop.auth.token.refresh"

# The success key is per API and not derivable from the name (official catalogue).
RESPONSE_KEYS: Mapping[str, str] = {
    "pdd.order.list.get": "order_list_get_response",
    "pdd.order.number.list.increment.get": "order_sn_increment_get_response",
    "pdd.order.information.get": "order_info_get_response",
    "pdd.order.status.get": "order_status_get_response",
    "pdd.goods.list.get": "goods_list_get_response",
    "pdd.goods.detail.get": "goods_detail_get_response",
    "pdd.goods.information.get": "goods_info_get_response",
    "pdd.goods.quantity.update": "goods_quantity_update_response",
    "pdd.goods.sku.price.update": "goods_update_sku_price_response",
    "pdd.goods.sale.status.set": "goods_sale_status_set_response",
    "pdd.logistics.companies.get": "logistics_companies_get_response",
    "pdd.logistics.online.send": "logistics_online_send_response",
    "pdd.pop.auth.token.create": "pop_auth_token_create_response",
    REFRESH_API: "pop_auth_token_refresh_response",
}

# Business failures all come back as error_code 50001 (业务服务错误) with the detail in
# sub_msg/sub_code (seen in public ERP code: "时间跨度不能超过24小时", "goodsSign解析错误").
BUSINESS_ERROR = "50001"

PDD_ERRORS = ErrorTable({
    "10000": Rejected,  # parameter error
    "10001": Rejected,  # common parameter error; error_msg names it (timestamp skew lands here)
    "10016": Rejected,  # client offline / wrong client_id
    "10017": Rejected,  # wrong type
    "10018": Rejected,
    "10019": AuthExpired,  # access_token expired
    "20004": ErrorRule(Rejected, "bad_signature"),
    "20005": Rejected,  # IP not whitelisted
    "20031": Rejected,  # no permission package for this API
    "20032": AuthExpired,  # access_token or client_id wrong: refresh, else re-authorise
    "20034": Rejected,
    "20035": Rejected,
    "21001": Rejected,
    "21002": Rejected,
    "30000": Rejected,
    "30001": Rejected,
    "50000": Transient,  # internal error
    BUSINESS_ERROR: Rejected,  # refined by sub_msg, see PddAssumptions.business_errors
    "50002": Transient,
    "52001": Transient,  # gateway service error
    "52002": Transient,
    "52004": Rejected,  # request body too large
    "52101": RateLimited,  # API throttled
    "52102": Transient,  # degraded
    "52103": Transient,
    "70031": RateLimited,  # calls too frequent
    "70032": Rejected,
    "70033": Transient,  # API under maintenance
    "70034": Rejected,  # risk control
    "70035": Rejected,
    "70036": Rejected,  # test app out of quota
})


@dataclass(frozen=True, slots=True)
class PddAssumptions:
    """Everything the public material leaves unconfirmed for Pinduoduo, in one place.

    Override any field per shop with `shop.options["pdd_assumptions"] = {"field": value}`.
    """

    # 50001 sub_msg fragment -> outcome, first match wins. PDD publishes no sub_code list
    # for pdd.logistics.online.send; these are the meanings, keyed by their Chinese words.
    business_errors: tuple[tuple[str, str], ...] = (
        ("已被其他订单使用", "foreign_waybill"),
        ("电子面单", "foreign_waybill"),
        ("快递公司", "bad_carrier"),
        ("物流公司", "bad_carrier"),
        ("退货地址", "missing_sender_address"),
        ("发货地址", "missing_sender_address"),
        ("已发货", "already_shipped"),
        ("运单号不符合", "bad_tracking_number"),
        ("订单不存在", "not_found"),
        ("商品不存在", "not_found"),
    )
    # ListingRecord.price_fen is the group price (拼单价, what most buyers pay); the
    # single-buy price (单买价) must stay above it.
    listing_price: str = "group"
    # when a SKU's current single price is not above the new group price
    single_price_markup_fen: int = 100
    # pdd.goods.sku.price.update: 1 = keep the goods' sale status (reference; unconfirmed)
    sync_goods_operate: int = 1

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PddAssumptions:
        overrides = dict(options.get("pdd_assumptions") or {})
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown pdd_assumptions option(s): {sorted(unknown)}")
        if "business_errors" in overrides:
            overrides["business_errors"] = tuple(
                (str(k), str(v)) for k, v in overrides["business_errors"])
        return replace(cls(), **overrides)

    def business_outcome(self, text: str) -> str:
        for fragment, outcome in self.business_errors:
            if fragment in text:
                return outcome
        return ""


ASSUMPTIONS = PddAssumptions()


def wire_value(value: Any) -> str:
    """The text a parameter travels (and is signed) as."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def sign(params: Mapping[str, str], client_secret: str) -> str:
    """UPPER(MD5(secret + k1v1k2v2… sorted by name + secret)); `sign` itself excluded."""
    return md5_hex(client_secret + concat_sorted(params) + client_secret).upper()


def business_error(assumptions: PddAssumptions, code: str, message: str) -> ConnectorError:
    outcome = assumptions.business_outcome(message)
    text = f"[{code}] {message}"
    if outcome == "not_found":
        return NotFound(text, code=code, platform_message=message)
    return Rejected(text, reason=outcome, code=code, platform_message=message)


class PddClient(PlatformClient):
    platform: ClassVar[str] = "pinduoduo"
    errors: ClassVar[ErrorTable] = PDD_ERRORS

    def __init__(self, *args: Any, assumptions: PddAssumptions = ASSUMPTIONS,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.assumptions = assumptions

    def signed_params(self, api: str, params: Mapping[str, Any],
                      access_token: str) -> dict[str, str]:
        wire = {k: wire_value(v) for k, v in params.items() if v is not None}
        wire.update({
            "type": api,
            "client_id": self.shop.app_key,
            "timestamp": str(int(self.clock.now().timestamp())),
            "data_type": "JSON",
        })
        if access_token:
            wire["access_token"] = access_token
        wire["sign"] = sign(wire, self.shop.app_secret.reveal())
        return wire

    def build_request(self, api: str, params: Mapping[str, Any],
                      access_token: str) -> httpx.Request:
        body = json.dumps(self.signed_params(api, params, access_token), ensure_ascii=False)
        return httpx.Request(
            "POST", self.shop.base_url.rstrip("/") + ROUTER_PATH, content=body.encode(),
            headers={"Content-Type": "application/json;charset=UTF-8"})

    def parse_response(self, api: str, response: httpx.Response) -> Any:
        failure = http_status_error(self.platform, api, response)
        if failure is not None:
            raise failure
        try:
            payload = load_json(response.content)
        except ValueError as exc:
            raise BadResponse(f"pinduoduo {api}: body is not JSON", body=response.content) from exc
        if not isinstance(payload, dict):
            raise BadResponse(f"pinduoduo {api}: not a JSON object", body=response.content)
        if "error_response" in payload:
            raise self.error_of(payload["error_response"])
        key = RESPONSE_KEYS.get(api)
        if key is not None and isinstance(payload.get(key), dict):
            return payload[key]
        candidates = [v for k, v in payload.items() if k.endswith("_response")]
        if key is None and len(candidates) == 1 and isinstance(candidates[0], dict):
            return candidates[0]
        raise BadResponse(f"pinduoduo {api}: no {key or '*_response'} in the answer",
                          body=response.content)

    def error_of(self, body: Any) -> ConnectorError:
        if not isinstance(body, dict):
            return BadResponse("pinduoduo: error_response is not an object", body=str(body))
        code = str(body.get("error_code", ""))
        message = str(body.get("error_msg") or "")
        detail = str(body.get("sub_msg") or "")
        text = f"{message}: {detail}" if detail and detail != message else message
        if code == BUSINESS_ERROR:
            return business_error(self.assumptions, code, text)
        return self.errors.error(code, text)
