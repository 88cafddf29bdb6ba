"""Wiring for the Kuaidi100 tests: a provider talking to its sandbox in-process.

`core.testing.connect` is typed for platform connectors and binds a token refresher that a
tracking provider does not have, so the provider is wired here the same way by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.kuaidi100.connector import Kuaidi100Provider
from connectors.kuaidi100.sandbox import Kuaidi100Sandbox
from core.clock import ManualClock
from core.connector import ShopContext, StaticTokens
from core.http import HttpSession, RetryPolicy
from core.records import TokenSet
from core.secrets import Secret

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "kuaidi100" / "fixtures"
SALT = "sandboxSalt0123456789abcdefABCDE"  # Kuaidi100 salts are at most 32 characters


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixture_names(prefix: str = "") -> list[str]:
    return sorted(p.name for p in FIXTURES.glob(f"{prefix}*.json"))


def wire(sandbox: Kuaidi100Sandbox, clock: ManualClock, *, key: str | None = None,
         customer: str | None = None, salt: str | None = SALT,
         options: dict[str, Any] | None = None, retry: RetryPolicy | None = None,
         base_url: str = "https://poll.kuaidi100.com",
         in_process: bool = True) -> Kuaidi100Provider:
    """`in_process=False`: real HTTP to `base_url` (a served sandbox on 127.0.0.1)."""
    session = HttpSession(transport=sandbox.transport() if in_process else None, clock=clock,
                          retry=retry or RetryPolicy(attempts=4), rate_limits=False)
    shop = ShopContext(
        name="tracking", platform="kuaidi100", base_url=base_url,
        app_key=customer if customer is not None else sandbox.customer,
        app_secret=Secret(key if key is not None else sandbox.key),
        tokens=StaticTokens(TokenSet("")),
        extra_secrets={"salt": Secret(salt)} if salt is not None else {},
        options={"kuaidi100": {"min_query_interval": 0}, **(options or {})},
    )
    return Kuaidi100Provider(shop, session)
