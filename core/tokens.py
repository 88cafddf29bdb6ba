"""Access tokens: where they live and how a shop refreshes one exactly once.

Tokens are secrets: they never go to the database. They come from the environment at first
and, once a platform rotates them, live in a secrets file (mode 0600) next to the config, so
the rotated refresh token survives a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from core.errors import AuthExpired
from core.records import TokenSet
from core.secrets import register

Refresher = Callable[[TokenSet], Awaitable[TokenSet]]


class RefreshingTokens:
    """A shop's tokens; concurrent calls that all see an expired token refresh it once."""

    def __init__(self, tokens: TokenSet, refresher: Refresher | None = None,
                 on_refreshed: Callable[[TokenSet], None] | None = None) -> None:
        self._tokens = _registered(tokens)
        self._refresher = refresher
        self._on_refreshed = on_refreshed
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def bind(self, refresher: Refresher) -> None:
        self._refresher = refresher

    def current(self) -> TokenSet:
        return self._tokens

    async def refresh(self, stale: TokenSet) -> TokenSet:
        async with self._lock:
            if self._tokens != stale:
                return self._tokens  # another call refreshed it meanwhile
            if self._refresher is None or not stale.refresh_token:
                raise AuthExpired("access token expired and no refresh is possible: "
                                  "re-authorise the shop")
            fresh = _registered(await self._refresher(stale))
            self._tokens = fresh
            self.refreshes += 1
            if self._on_refreshed is not None:
                self._on_refreshed(fresh)
            return fresh


class TokenFile:
    """Rotated tokens per shop, in one JSON file readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, shop: str) -> TokenSet | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        entry = data.get(shop)
        if not entry:
            return None
        return TokenSet(
            access_token=entry["access_token"], refresh_token=entry.get("refresh_token", ""),
            expires_at=_when(entry.get("expires_at")),
            refresh_expires_at=_when(entry.get("refresh_expires_at")))

    def save(self, shop: str, tokens: TokenSet) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        data[shop] = {
            "access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
            "expires_at": tokens.expires_at.isoformat() if tokens.expires_at else None,
            "refresh_expires_at": (tokens.refresh_expires_at.isoformat()
                                   if tokens.refresh_expires_at else None),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, self.path)


def _registered(tokens: TokenSet) -> TokenSet:
    """Tokens are secrets: make the log pipeline scrub them wherever they appear."""
    register(tokens.access_token)
    register(tokens.refresh_token)
    return tokens


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
