"""Xiaohongshu transport: the common_controller envelope, both signatures, the error table.

Every business and OAuth call is one POST of a flat JSON body to a single endpoint; the
`method` field names the API. Only the four system params are signed (business params and
`accessToken` are not), so body key order never matters. Pushes use the older header scheme
(`app-key`, `timestamp`, `sign` over the callback path and query).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import httpx

from core.connector import ShopContext
from core.errors import AuthExpired, BadResponse, NotFound, RateLimited, Rejected, Transient
from core.http import (
    ErrorRule,
    ErrorTable,
    HttpSession,
    PlatformClient,
    http_status_error,
    parse_json,
)
from core.signing import concat_sorted, md5_hex

GATEWAY_PATH = "/ark/open_api/v3/common_controller"
API_VERSION = "2.0"  # part of the signed string: sign the value that is sent
PUSH_ACK_BODY: Mapping[str, Any] = {"success": True, "error_code": 0, "error_msg": ""}


def api_sign_base(method: str, app_id: str, timestamp: str, version: str = API_VERSION) -> str:
    return f"{method}?appId={app_id}&timestamp={timestamp}&version={version}"


def api_sign(method: str, app_id: str, timestamp: str, app_secret: str,
             version: str = API_VERSION) -> str:
    """lower-hex md5(method?appId=…&timestamp=…&version=… + appSecret) (doc 039)."""
    return md5_hex(api_sign_base(method, app_id, timestamp, version) + app_secret)


def push_sign_base(path: str, query: Mapping[str, str], app_key: str, timestamp: str) -> str:
    """The callback URL's own query params plus `app-key` and `timestamp`, sorted (doc 041)."""
    params = {**query, "app-key": app_key, "timestamp": timestamp}
    return f"{path}?{concat_sorted(params, pair_sep='&', kv_sep='=')}"


def push_sign(path: str, query: Mapping[str, str], app_key: str, timestamp: str,
              app_secret: str) -> str:
    return md5_hex(push_sign_base(path, query, app_key, timestamp) + app_secret)


@dataclass(frozen=True, slots=True)
class XhsErrorCodes:
    """The gateway codes erpsync acts on. The public docs publish no gateway error table:
    `throttled` (-9013) is community-observed, `auth_expired` (401 in `error_code`) is
    community-observed, `bad_sign` is UNCONFIRMED (a placeholder the sandbox also answers
    with). The -2000xxx codes come from the apifox mirror of the order API pages. Business
    refusals share -2000400 and are told apart by wording (`reason_hints`, unconfirmed).
    Override any field with `shop.options["xhs_error_codes"] = {"bad_sign": ["…"], …}`."""

    throttled: tuple[str, ...] = ("-9013",)
    auth_expired: tuple[str, ...] = ("401",)
    bad_sign: tuple[str, ...] = ("-1",)
    bad_request: tuple[str, ...] = ("-2000400",)
    not_found: tuple[str, ...] = ("-2000101",)
    no_permission: tuple[str, ...] = ("-2000401",)
    system_error: tuple[str, ...] = ("-2000500",)
    reason_hints: tuple[tuple[str, str], ...] = (
        ("已发货", "already_shipped"),
        ("快递公司", "bad_carrier"),
        ("退货地址", "missing_sender_address"),
    )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> XhsErrorCodes:
        overrides = options.get("xhs_error_codes") or {}
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"xhs_error_codes: unknown field {key!r}")
            values[key] = tuple(tuple(v) if isinstance(v, list | tuple) else str(v)
                                for v in value)
        return cls(**values)

    def table(self) -> ErrorTable:
        rules: dict[str, type[Any] | ErrorRule] = {}
        for codes, rule in (
            (self.throttled, ErrorRule(RateLimited)),
            (self.auth_expired, ErrorRule(AuthExpired)),
            (self.bad_sign, ErrorRule(Rejected, "bad_signature")),
            (self.bad_request, ErrorRule(Rejected)),
            (self.not_found, ErrorRule(NotFound)),
            (self.no_permission, ErrorRule(Rejected, "no_permission")),
            (self.system_error, ErrorRule(Transient)),
        ):
            rules.update(dict.fromkeys(codes, rule))
        return ErrorTable(rules)

    def reason_for(self, message: str) -> str:
        return next((reason for hint, reason in self.reason_hints if hint in message), "")


class XhsClient(PlatformClient):
    platform: ClassVar[str] = "xiaohongshu"
    errors: ClassVar[ErrorTable] = XhsErrorCodes().table()

    def __init__(self, shop: ShopContext, session: HttpSession, *, rate: float,
                 burst: int = 1) -> None:
        super().__init__(shop, session, rate=rate, burst=burst)
        self.codes = XhsErrorCodes.from_options(shop.options)
        self.error_table = self.codes.table()
        self.url = shop.base_url.rstrip("/") + GATEWAY_PATH

    def build_request(self, api: str, params: Mapping[str, Any], access_token: str) -> httpx.Request:
        timestamp = str(int(self.clock.now().timestamp()))
        body: dict[str, Any] = {
            **params,
            "appId": self.shop.app_key,
            "timestamp": timestamp,
            "version": API_VERSION,
            "method": api,
            "sign": api_sign(api, self.shop.app_key, timestamp, self.shop.app_secret.reveal()),
        }
        if access_token:
            body["accessToken"] = access_token
        return httpx.Request(
            "POST", self.url,
            content=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json;charset=utf-8"})

    def parse_response(self, api: str, response: httpx.Response) -> Any:
        failure = http_status_error(self.platform, api, response)
        if failure is not None:
            raise failure
        payload = parse_json(self.platform, api, response)
        if not isinstance(payload, dict) or "success" not in payload:
            raise BadResponse(f"xiaohongshu {api}: no envelope", body=response.content)
        code = str(payload.get("error_code", 0))
        data = payload.get("data")
        # item-publish APIs answer success:true with a business error_code and no data
        if payload["success"] is True and (data is not None or code == "0"):
            return self._unwrap_inner(api, data)
        raise self._error(code, str(payload.get("error_msg") or ""))

    def _unwrap_inner(self, api: str, data: Any) -> Any:
        # newer after-sale APIs nest a second {code, msg, success, data} inside `data`
        if (isinstance(data, dict) and isinstance(data.get("success"), bool)
                and "code" in data and "msg" in data):
            if data["success"] and str(data["code"]) == "0":
                return data.get("data")
            raise self._error(str(data["code"]), str(data.get("msg") or ""))
        return data

    def _error(self, code: str, message: str) -> Exception:
        return self.error_table.error(code, message, reason=self.codes.reason_for(message))
