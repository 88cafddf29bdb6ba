"""The Youzan Cloud (有赞云) envelope: `/api/{api}/{version}?access_token=…`, JSON bodies,
two answer shapes and one error table.

Calls are not signed: the access token in the query string is the credential (official PHP
SDK, `HttpConfig::REQUEST_PATH`), the client secret is used only to refresh tokens
(`/auth/token`) and to sign pushes. Answers come in two shapes, by API version:

- 4.x: `{"trace_id", "code": 200, "success": true, "data": {...}}`, a refusal
  `{"success": false, "code": N, "message": "..."}`;
- 3.x: `{"response": {...}}`, a refusal `{"error_response": {"code": N, "msg": "..."}}`;

and the gateway answers for both with `{"gw_err_resp": {"err_code": N, "err_msg": "..."}}`
(bad or unknown token, unknown API) — all with HTTP 200.

Every code that is not confirmed by a public document is in `YOUZAN` (README.md lists the
sources); a shop can override any of them with options["youzan"] = {field: value}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from core.errors import (
    AuthExpired,
    BadResponse,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)
from core.http import ErrorRule, ErrorTable, PlatformClient, http_status_error, parse_json
from core.signing import md5_hex

TOKEN_PATH = "/auth/token"
PUSH_SIGN_HEADER = "Event-Sign"  # (A) the header name; the formula below is (F)
PUSH_TYPE_HEADER = "Event-Type"  # (A)


@dataclass(frozen=True, slots=True)
class YouzanFacts:
    """API versions and error codes in one place; (F) from a public source, (A) assumed."""

    trades_version: str = "4.0.4"  # youzan.trades.sold.get (F: doc mirror lists 4.0.0-4.0.4)
    trade_version: str = "4.0.2"  # youzan.trade.get (F: public integration code)
    ship_version: str = "3.0.0"  # youzan.logistics.online.confirm (F: SDK examples)
    quantity_version: str = "3.0.0"  # youzan.item.quantity.update (F: Go/TS SDKs)
    onsale_version: str = "3.0.0"  # youzan.items.onsale.get (A)
    item_version: str = "3.0.0"  # youzan.item.get (F: official PHP SDK README)
    page_size: int = 100  # trades.sold.get maximum (A)
    # gateway codes (F: a public probe log — 4201 非法的请求凭证, 4203 Token 不存在,
    # 4005 非法的API); 4202 "Token 已过期" (A)
    token_illegal: int = 4201
    token_expired: int = 4202
    token_unknown: int = 4203
    unknown_api: int = 4005
    rate_limited: int = 20001  # (F, secondary: 有赞云常见问题 as mirrored) 调用频率超限
    quota_used_up: int = 20002  # (F, secondary) 接口配额已用完
    system_busy: int = 50000  # (A)
    bad_param: int = 40000  # (A)
    window_too_long: int = 106000001  # (F: a public trace) 每次可搜索一年订单记录
    trade_not_found: int = 101100001  # (A)
    already_shipped: int = 101500010  # (A)
    bad_express: int = 101500011  # (A)
    item_not_found: int = 141500101  # (A)
    refresh_invalid: int = 40005  # (A) the token endpoint's answer to a dead refresh token
    client_invalid: int = 40003  # (A) the token endpoint's answer to a wrong client secret


YOUZAN = YouzanFacts()


def error_table(facts: YouzanFacts) -> ErrorTable:
    return ErrorTable({
        str(facts.token_illegal): AuthExpired,
        str(facts.token_expired): AuthExpired,
        str(facts.token_unknown): AuthExpired,
        str(facts.refresh_invalid): AuthExpired,  # re-authorise the shop
        str(facts.rate_limited): RateLimited,
        str(facts.system_busy): Transient,
        str(facts.trade_not_found): NotFound,
        str(facts.item_not_found): NotFound,
        str(facts.already_shipped): ErrorRule(Rejected, "already_shipped"),
        str(facts.bad_express): ErrorRule(Rejected, "bad_carrier"),
        str(facts.unknown_api): Rejected,
        str(facts.quota_used_up): Rejected,  # a month's quota: waiting inside a call won't help
        str(facts.window_too_long): Rejected,
        str(facts.client_invalid): Rejected,
    }, default=Rejected)


def push_sign(client_id: str, body: bytes, client_secret: str) -> str:
    """md5(client_id + body + client_secret), hex — how public integrations verify a push."""
    return md5_hex(client_id + body.decode("utf-8", "replace") + client_secret)


def api_path(api: str, version: str) -> str:
    return f"/api/{api}/{version}"


def answer_of(body: Mapping[str, Any], api: str, version: str,
              errors: ErrorTable) -> Any:
    """The payload of an answer body, or the canonical error it stands for."""
    gateway = body.get("gw_err_resp")
    if isinstance(gateway, Mapping):
        raise errors.error(str(gateway.get("err_code", "")),
                           f"youzan {api}: {gateway.get('err_msg', '')}")
    if version.startswith("3."):
        if isinstance(body.get("error_response"), Mapping):
            error = body["error_response"]
            raise errors.error(str(error.get("code", "")), f"youzan {api}: {error.get('msg', '')}")
        if "response" not in body:
            raise BadResponse(f"youzan {api}: neither response nor error_response",
                              body=json.dumps(body))
        return body["response"]
    if body.get("success") is not True:
        if "code" not in body:
            raise BadResponse(f"youzan {api}: no success flag", body=json.dumps(body))
        raise errors.error(str(body.get("code", "")), f"youzan {api}: {body.get('message', '')}")
    return body.get("data")


class YouzanClient(PlatformClient):
    platform = "youzan"
    errors = error_table(YOUZAN)

    def __init__(self, *args: Any, facts: YouzanFacts = YOUZAN, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.facts = facts
        self.table = error_table(facts)

    def build_request(self, api: str, params: Mapping[str, Any], access_token: str) -> httpx.Request:
        base = self.shop.base_url.rstrip("/")
        if api == TOKEN_PATH:
            return httpx.Request("POST", base + TOKEN_PATH, json=dict(params))
        version = str(params.get("__version__", ""))
        body = {k: v for k, v in params.items() if k != "__version__"}
        url = f"{base}{api_path(api, version)}?access_token={quote(access_token, safe='')}"
        return httpx.Request("POST", url, json=body)

    def parse_response(self, api: str, response: httpx.Response) -> Any:
        failed = http_status_error(self.platform, api, response)
        if failed is not None:
            raise failed
        body = parse_json(self.platform, api, response)
        if not isinstance(body, Mapping):
            raise BadResponse(f"youzan {api}: body is not an object", body=response.content)
        if api == TOKEN_PATH:
            return answer_of(body, api, "4", self.table)
        return answer_of(body, api, _version_of(response), self.table)

    async def api(self, api: str, version: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call one API at one version (the version travels in the URL path)."""
        return await self.call(api, {**(params or {}), "__version__": version})


def _version_of(response: httpx.Response) -> str:
    return response.request.url.path.rstrip("/").rsplit("/", 1)[-1]
