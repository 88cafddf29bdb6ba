"""Canonical errors. Connectors map every platform code onto one of these; the core decides
what to do from the class alone (retry, back off, refresh the token, quarantine, surface)."""

from __future__ import annotations


class ErpsyncError(Exception):
    """Base of everything erpsync raises on purpose."""


class ConnectorError(ErpsyncError):
    """A platform call failed. `code`/`platform_message` keep the platform's own words."""

    retriable = False

    def __init__(self, message: str, *, code: str = "", platform_message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.platform_message = platform_message or message


class RateLimited(ConnectorError):
    retriable = True

    def __init__(self, message: str, *, retry_after: float | None = None, code: str = "",
                 platform_message: str = "") -> None:
        super().__init__(message, code=code, platform_message=platform_message)
        self.retry_after = retry_after


class Transient(ConnectorError):
    """5xx, timeouts, 'system busy': the same call may succeed later."""

    retriable = True


class AuthExpired(ConnectorError):
    """The access token is expired or revoked: refresh it, then retry once."""


class Rejected(ConnectorError):
    """The platform refused the content. Not retried; shown to the operator.

    `reason` is a canonical reason where the connector knows one (`already_shipped`,
    `bad_carrier`, `foreign_waybill`, `missing_sender_address`, `banned_word`, ...)."""

    def __init__(self, message: str, *, reason: str = "", code: str = "",
                 platform_message: str = "") -> None:
        super().__init__(message, code=code, platform_message=platform_message)
        self.reason = reason


class NotFound(ConnectorError):
    pass


class BadResponse(ConnectorError):
    """A payload that does not parse or map: quarantined and alerted, never dropped."""

    def __init__(self, message: str, *, body: bytes | str = b"", code: str = "",
                 platform_message: str = "") -> None:
        super().__init__(message, code=code, platform_message=platform_message)
        self.body = body.encode() if isinstance(body, str) else body


class SignatureInvalid(ErpsyncError):
    """An inbound push whose signature does not verify: refused, nothing stored."""


class ConfigError(ErpsyncError):
    """One problem in a configuration file, located by file and key."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason


class UnmappedCarrier(ErpsyncError):
    def __init__(self, platform: str, carrier: str) -> None:
        super().__init__(f"carrier {carrier!r} has no code on {platform}; add it to the carrier table")
        self.platform = platform
        self.carrier = carrier
