"""Logging: structlog, console on a TTY and JSON otherwise; secrets scrubbed on every line."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from core.secrets import REDACTED, SECRET_KEYS, scrub


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if str(k).lower() in SECRET_KEYS else _scrub_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v) for v in value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def scrub_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = REDACTED
        else:
            event[key] = _scrub_value(event[key])
    return event


def _scrub_rendered(_logger: Any, _name: str, event: Any) -> Any:
    # The rendered line is scrubbed too: a secret inside a formatted exception or a nested
    # object's repr only becomes visible here.
    return scrub(event) if isinstance(event, str) else event


def configure(*, json: bool | None = None, level: int = logging.INFO,
              stream: Any = None) -> None:
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    # httpx logs full URLs at INFO, and some platforms sign or key requests in the URL
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub_secrets,
            renderer,
            _scrub_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
