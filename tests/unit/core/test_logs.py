"""Secrets never reach a log line: a signed Taobao call logged at DEBUG, with a token
refresh and a failing call, leaves no app secret, token or sign in the output."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from connectors.taobao.connector import TaobaoConnector
from connectors.taobao.sandbox import TaobaoSandbox
from core import logs
from core.clock import ManualClock
from core.errors import ConnectorError
from core.records import StockUpdate
from core.sandbox import Fault
from core.testing import connect

SECRET = "very-secret-app-secret-42"


async def test_signed_calls_log_no_secret(clock: ManualClock) -> None:
    out = io.StringIO()
    logs.configure(json=True, level=logging.DEBUG, stream=out)
    try:
        sandbox = TaobaoSandbox(clock=clock, app_secret=SECRET)
        sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 5, 3900)])
        connector = connect(TaobaoConnector, sandbox, clock=clock)
        listing, = [item async for item in connector.iter_listings()]
        sandbox.expire_token()  # forces a refresh: old and new tokens pass through the client
        await connector.set_stock([StockUpdate(listing.platform_item_id,
                                               listing.platform_sku_id, 3)])
        sandbox.faults.inject(Fault.MALFORMED)
        with pytest.raises(ConnectorError):
            await connector.get_order("1")
        logs.get_logger("test").info("echo", message=f"secret inside text {SECRET}")
    finally:
        structlog.reset_defaults()  # the captured stream goes away with this test
    text = out.getvalue()
    assert "api_call" in text  # the calls were logged
    signs = [r.request.form().get("sign") or r.request.query.get("sign") for r in sandbox.requests]
    tokens = {"sandbox-access-token-1", "sandbox-access-token-2", "sandbox-refresh-token-1",
              "sandbox-refresh-token-2"}
    for secret in {SECRET, *tokens, *(s for s in signs if s)}:
        assert secret not in text, secret
    for line in text.splitlines():
        json.loads(line)  # JSON when not on a TTY
