"""Kuaidi100 envelope: form-encoded `param` JSON, MD5 signatures, one error table.

Two endpoints on poll.kuaidi100.com:
- `poll/query.do` (real-time query): form fields `customer`, `param`, `sign` with
  sign = UPPER(MD5(param + key + customer)) over the exact `param` string that is sent;
- `poll` (subscription): form fields `schema=json` and `param`; the authorisation key travels
  *inside* `param` and the request has no sign.
Callbacks Kuaidi100 POSTs back carry `param` and sign = UPPER(MD5(param + salt)).

Credentials: `shop.app_key` is the customer (授权码/公司编号), `shop.app_secret` the key,
`shop.extra_secrets["salt"]` the callback salt. None of them reaches a log line: the key and
the salt are added to the request here, after the call parameters were logged.

The same return code means different things on the two endpoints (501 is "server error" on
query.do and "already subscribed" on poll), so the one error table is keyed `<api>:<code>`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

import httpx

from core.errors import AuthExpired, BadResponse, NotFound, RateLimited, Rejected, Transient
from core.http import ErrorRule, ErrorTable, PlatformClient, http_status_error, parse_json
from core.secrets import scrub
from core.signing import md5_hex

PATHS: Mapping[str, str] = {"query": "/poll/query.do", "subscribe": "/poll"}

ERRORS = ErrorTable({
    # real-time query (returnCode in a 200 body: {"result": false, "returnCode": ..., ...})
    "query:400": ErrorRule(Rejected, "bad_params"),  # incomplete data / unknown com / not authorised
    "query:408": ErrorRule(Rejected, "phone_required"),  # carrier's phone check failed
    "query:500": NotFound,  # 查询无结果: not scanned yet, or wrong carrier/number
    "query:501": Transient,  # server error
    "query:502": RateLimited,  # server busy: back off
    # 验证签名失败: the key/customer pair is wrong; retrying the same sign cannot help, the
    # operator must fix the credentials — the meaning of AuthExpired for a shop that has no
    # refresh token.
    "query:503": AuthExpired,
    "query:601": AuthExpired,  # key expired / no balance left
    # subscription ({"result": ..., "returnCode": ..., "message": ...})
    "subscribe:500": Transient,
    "subscribe:501": ErrorRule(Rejected, "already_subscribed"),  # still polling: not an error
    "subscribe:600": AuthExpired,  # not a valid subscriber (wrong key)
    "subscribe:601": AuthExpired,  # key expired
    "subscribe:700": ErrorRule(Rejected, "bad_params"),  # bad number/carrier/callback url
    "subscribe:701": ErrorRule(Rejected, "bad_carrier"),  # carrier refused for subscription
    "subscribe:702": ErrorRule(Rejected, "bad_carrier"),  # carrier of the number not recognised
}, default=Rejected)


@dataclass(frozen=True, slots=True)
class Kuaidi100Options:
    """What stays uncertain about Kuaidi100, in one place. Any field can be overridden per
    shop with `options = {kuaidi100 = {query_resultv2 = "6"}}`."""

    # query.do: "1" = area + state name per event [confirmed]; the advanced value differs
    # between doc revisions ("6", once "2"), so it is not the default.
    query_resultv2: str = "1"
    # subscription: "4" = advanced sub-state codes per event [confirmed for poll]
    subscribe_resultv2: str = "4"
    # Kuaidi100 warns that a number queried more often than every 30 min may be locked;
    # `track` refuses to query the same number sooner (0 turns the guard off).
    min_query_interval: float = 1800.0

    @classmethod
    def from_shop(cls, options: Mapping[str, Any]) -> Kuaidi100Options:
        given = options.get("kuaidi100") or {}
        known = {f.name for f in fields(cls)}
        unknown = set(given) - known
        if unknown:
            raise ValueError(f"unknown kuaidi100 options: {sorted(unknown)}")
        return cls(**given)


def encode_param(payload: Mapping[str, Any]) -> str:
    """The `param` string: compact JSON, key order kept, UTF-8 left unescaped. Whatever
    form is chosen, the sign is computed over exactly this string."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def query_sign(param: str, key: str, customer: str) -> str:
    return md5_hex(param + key + customer).upper()


def callback_sign(param: str, salt: str) -> str:
    return md5_hex(param + salt).upper()


def query_form(param: str, key: str, customer: str) -> str:
    return urlencode([("customer", customer), ("sign", query_sign(param, key, customer)),
                      ("param", param)])


def query_param(params: Mapping[str, Any]) -> dict[str, str]:
    """query.do's `param` in the order Kuaidi100's own samples send it."""
    return {
        "com": str(params["com"]), "num": str(params["num"]),
        "phone": str(params.get("phone", "")), "from": str(params.get("from", "")),
        "to": str(params.get("to", "")), "resultv2": str(params.get("resultv2", "1")),
        "show": "0", "order": str(params.get("order", "desc")),
    }


def subscribe_param(params: Mapping[str, Any], *, key: str, salt: str) -> dict[str, Any]:
    """poll's `param`: the key sits beside the number, the salt among `parameters`."""
    return {
        "company": str(params["company"]), "number": str(params["number"]),
        "from": str(params.get("from", "")), "to": str(params.get("to", "")),
        "key": key,
        "parameters": {
            "callbackurl": str(params["callbackurl"]),
            "salt": salt,
            "resultv2": str(params.get("resultv2", "4")),
            "autoCom": "0",
            "interCom": "0",
            "phone": str(params.get("phone", "")),
        },
    }


class Kuaidi100Client(PlatformClient):
    platform = "kuaidi100"
    errors = ERRORS

    def build_request(self, api: str, params: Mapping[str, Any],
                      access_token: str) -> httpx.Request:
        try:
            path = PATHS[api]
        except KeyError:
            raise ValueError(f"kuaidi100 has no api {api!r}") from None
        key = self.shop.app_secret.reveal()
        if api == "query":
            body = query_form(encode_param(query_param(params)), key, self.shop.app_key)
        else:
            salt = self.shop.extra_secrets.get("salt")
            param = subscribe_param(params, key=key, salt=salt.reveal() if salt else "")
            body = urlencode([("schema", "json"), ("param", encode_param(param))])
        return httpx.Request(
            "POST", self.shop.base_url.rstrip("/") + path, content=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"})

    def parse_response(self, api: str, response: httpx.Response) -> Any:
        failure = http_status_error(self.platform, api, response)
        if failure is not None:
            raise failure
        payload = parse_json(self.platform, api, response)
        if not isinstance(payload, dict):
            raise BadResponse(f"kuaidi100 {api}: body is not an object", body=response.content)
        code = str(payload.get("returnCode") or "")
        refused = payload.get("result") in (False, "false")
        if refused or (code and code != "200"):
            message = scrub(str(payload.get("message") or ""))
            raise self.errors.error(f"{api}:{code or '?'}", message)
        if api == "query" and (str(payload.get("status")) != "200"
                               or not isinstance(payload.get("data"), list)):
            raise BadResponse("kuaidi100 query: neither a result nor an error",
                              body=response.content)
        return payload
