"""Secrets: values that must never reach a log line, an error message or the database.

Every `Secret` registers its value so that the log pipeline can scrub it wherever it
appears (a signed URL, an exception text, a platform echo), not only under known keys.
"""

from __future__ import annotations

import re
import threading

_known: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None
MIN_SECRET_LEN = 6  # shorter values would scrub ordinary words

REDACTED = "***"

# parameter / header names whose values are always secret, whatever they hold
SECRET_KEYS = frozenset({
    "sign", "signature", "app_secret", "appsecret", "client_secret", "secret", "access_token",
    "accesstoken", "session", "refresh_token", "token", "password", "authorization",
    "x-shopify-access-token", "signsecret", "sign_secret", "consumer_secret", "key",
    "refreshtoken", "msgsecret", "msg_secret", "app_secret_key", "client_secret_key",
})


class Secret:
    """A string that prints as *** and registers itself for scrubbing."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def register(value: str) -> None:
    global _pattern
    if len(value) < MIN_SECRET_LEN:
        return
    with _lock:
        if value in _known:
            return
        _known.add(value)
        ordered = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def scrub(text: str) -> str:
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub(REDACTED, text)


def redact_mapping(values: dict[str, object]) -> dict[str, object]:
    return {
        k: (REDACTED if k.lower() in SECRET_KEYS else v) for k, v in values.items()
    }
