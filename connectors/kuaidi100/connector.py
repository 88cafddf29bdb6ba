"""Kuaidi100 as a tracking provider: query a parcel's journey, subscribe to its updates and
verify the signed callbacks Kuaidi100 posts back.

Kuaidi100 asks that system updates come from the subscription and that real-time queries
stay rare (a number queried more than every 30 min may be locked), so `track` refuses a
repeat query of the same number inside `Kuaidi100Options.min_query_interval`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import parse_qsl

from connectors.kuaidi100.client import Kuaidi100Client, Kuaidi100Options, callback_sign
from connectors.kuaidi100.mapping import (
    CARRIERS,
    STATUS_TABLE,
    callback_result,
    to_tracking_result,
)
from connectors.kuaidi100.sandbox import Kuaidi100Sandbox
from core.connector import CarrierTable, ShopContext, TrackingProvider
from core.errors import BadResponse, RateLimited, Rejected, SignatureInvalid
from core.http import HttpSession
from core.records import Capability, PushAck, TrackingResult
from core.signing import constant_time_equal

# the body Kuaidi100 must get back, or it re-sends the push 3 times, 35 min apart
CALLBACK_ACK = b'{"result":true,"returnCode":"200","message":"\xe6\x88\x90\xe5\x8a\x9f"}'


def phone_tail(phone: str) -> str:
    """Kuaidi100 accepts the last 4 digits for the carriers' phone check; sending no more
    keeps the rest of the buyer's number out of their logs and ours."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return digits[-4:]


class Kuaidi100Provider(TrackingProvider):
    platform = "kuaidi100"
    title = "快递100 Kuaidi100"
    version = "1.0.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.TRACKING, Capability.TRACKING_PUSH})
    carriers = CARRIERS
    status_table = STATUS_TABLE
    default_base_url = "https://poll.kuaidi100.com"
    sandbox_class = Kuaidi100Sandbox
    requests_per_second: ClassVar[float] = 5.0

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.options = Kuaidi100Options.from_shop(shop.options)
        self.client = Kuaidi100Client(shop, http, rate=self.requests_per_second, burst=5)
        self._queried: dict[tuple[str, str], float] = {}

    def carrier_table(self) -> CarrierTable:
        overrides = self.shop.options.get("carriers")
        return self.carriers.with_overrides(overrides) if overrides else self.carriers

    async def track(self, carrier: str, tracking_number: str, *,
                    phone: str = "") -> TrackingResult:
        table = self.carrier_table()
        com = table.to_platform(carrier)
        self._guard_query_rate(com, tracking_number)
        payload = await self.client.call("query", {
            "com": com, "num": tracking_number, "phone": phone_tail(phone),
            "resultv2": self.options.query_resultv2, "order": "desc",
        }, authenticated=False)
        return to_tracking_result(payload, table, carrier=carrier)

    def _guard_query_rate(self, com: str, number: str) -> None:
        interval = self.options.min_query_interval
        if interval <= 0:
            return
        now = self.http.clock.monotonic()
        last = self._queried.get((com, number))
        if last is not None and now - last < interval:
            raise RateLimited(
                f"kuaidi100: {com} {number} was queried {now - last:.0f}s ago; Kuaidi100 may "
                f"lock numbers queried more often than every {interval:.0f}s",
                retry_after=interval - (now - last))
        self._queried[(com, number)] = now

    async def subscribe(self, carrier: str, tracking_number: str, callback_url: str, *,
                        phone: str = "") -> None:
        """Ask Kuaidi100 to push this parcel's updates to `callback_url`. Subscribing a
        number that is still being watched is a no-op (Kuaidi100 answers 501)."""
        if not self.shop.extra_secrets.get("salt"):
            raise Rejected("kuaidi100: set the callback salt (extra secret 'salt') before "
                           "subscribing, or pushes could not be verified",
                           reason="missing_salt")
        try:
            await self.client.call("subscribe", {
                "company": self.carrier_table().to_platform(carrier),
                "number": tracking_number, "callbackurl": callback_url,
                "resultv2": self.options.subscribe_resultv2, "phone": phone_tail(phone),
            }, authenticated=False)
        except Rejected as exc:
            if exc.reason != "already_subscribed":
                raise

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> TrackingResult:
        """Check `sign = UPPER(MD5(param + salt))` over the `param` string exactly as received
        (re-serialising it would change the digest), then map `lastResult`."""
        salt = self.shop.extra_secrets.get("salt")
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                  strict_parsing=False))
        except UnicodeDecodeError as exc:
            raise SignatureInvalid("kuaidi100 callback: body is not UTF-8") from exc
        param, sign = form.get("param"), form.get("sign")
        if salt is None or not param or not sign:
            raise SignatureInvalid("kuaidi100 callback: unsigned, or no salt configured")
        if not constant_time_equal(callback_sign(param, salt.reveal()), sign):
            raise SignatureInvalid("kuaidi100 callback: sign does not match")
        try:
            push = json.loads(param)
        except ValueError as exc:
            raise BadResponse("kuaidi100 callback: param is not JSON", body=body) from exc
        if not isinstance(push, dict):
            raise BadResponse("kuaidi100 callback: param is not an object", body=body)
        return callback_result(push, self.carrier_table())

    def callback_ack(self) -> PushAck:
        return PushAck(200, CALLBACK_ACK)

