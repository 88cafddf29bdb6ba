"""Signing helpers shared by the connectors: sorted concatenation and digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping


def concat_sorted(params: Mapping[str, str], *, pair_sep: str = "", kv_sep: str = "",
                  skip: Iterable[str] = ("sign",)) -> str:
    """Join `name<kv_sep>value` for every parameter sorted by name (byte order)."""
    skipped = set(skip)
    keys = sorted((k for k in params if k not in skipped), key=lambda k: k.encode())
    return pair_sep.join(f"{k}{kv_sep}{params[k]}" for k in keys)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def hmac_hex(key: str, text: str, digest: str) -> str:
    return hmac.new(key.encode(), text.encode(), digest).hexdigest()


def hmac_b64(key: str | bytes, message: bytes, digest: str = "sha256") -> str:
    raw_key = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hmac.new(raw_key, message, digest).digest()).decode()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
