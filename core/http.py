"""The HTTP base every connector client stands on.

- one shared httpx.AsyncClient per process (connection pooling), timeouts everywhere;
- retries with exponential backoff and jitter (tenacity), honouring Retry-After and the
  platforms' "ban will last N seconds"; retries re-sign each attempt (fresh timestamps);
- a token bucket per (platform, app key, shop);
- one token refresh on AuthExpired, then one retry;
- request/response logging without secrets;
- every request made for a piece of work (an outbox task at a version, a pull window) carries
  `X-Erpsync-Work: <node> <work>`: platforms ignore it; proxies and the sandboxes log it, so
  "was version 7 of task 42 sent twice, and by which node?" has an answer outside our database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from core.clock import Clock, SystemClock
from core.connector import ShopContext
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    RateLimited,
    Rejected,
    Transient,
)
from core.logs import get_logger
from core.secrets import redact_mapping

log = get_logger("erpsync.http")
WORK_HEADER = "X-Erpsync-Work"
_work: ContextVar[str] = ContextVar("erpsync_work", default="")


@contextlib.contextmanager
def working_on(node: str, work: str) -> Iterator[None]:
    """Tag every platform request made inside the block with `node` and `work`."""
    token = _work.set(f"{node} {work}")
    try:
        yield
    finally:
        _work.reset(token)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    # a ban longer than this is not waited out inside one call: the caller (outbox,
    # scheduler) tries again later
    max_retry_after: float = 120.0


class TokenBucket:
    """Classic token bucket on a monotonic clock; `acquire` waits for a token."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._stamp = clock.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1 - 1e-9:  # float sums of small refills fall just short
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                await self._clock.sleep(max((1 - self._tokens) / self.rate, 1e-3))


class HttpSession:
    """Process-wide HTTP resources: the client, the limiters, the retry policy, the clock."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 15.0, clock: Clock | None = None,
                 retry: RetryPolicy | None = None, rate_limits: bool = True) -> None:
        self.clock: Clock = clock or SystemClock()
        self.retry = retry or RetryPolicy()
        self.client = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self.rate_limits = rate_limits
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self.calls = 0  # every request sent, for benchmarks and the simulator
        # called after every request: (platform, api, seconds, error class name or None)
        self.observers: list[Callable[[str, str, float, str | None], None]] = []

    def bucket(self, key: tuple[str, str, str], rate: float, burst: int) -> TokenBucket:
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = TokenBucket(rate, burst, self.clock)
        return found

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True, slots=True)
class ErrorRule:
    kind: type[ConnectorError]
    reason: str = ""


class ErrorTable:
    """One table per platform: platform error code -> canonical error (and reason)."""

    def __init__(self, rules: Mapping[str, type[ConnectorError] | ErrorRule],
                 default: type[ConnectorError] = Rejected) -> None:
        self.rules = {
            code: rule if isinstance(rule, ErrorRule) else ErrorRule(rule)
            for code, rule in rules.items()
        }
        self.default = ErrorRule(default)

    def rule(self, code: str) -> ErrorRule:
        return self.rules.get(code, self.default)

    def error(self, code: str, message: str, *, retry_after: float | None = None,
              reason: str = "") -> ConnectorError:
        rule = self.rule(code)
        text = f"[{code}] {message}"
        if rule.kind is RateLimited:
            return RateLimited(text, retry_after=retry_after, code=code, platform_message=message)
        if rule.kind is Rejected:
            return Rejected(text, reason=reason or rule.reason, code=code,
                            platform_message=message)
        if rule.kind is BadResponse:
            return BadResponse(text, code=code, platform_message=message)
        return rule.kind(text, code=code, platform_message=message)


def _retriable(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        if isinstance(exc, RateLimited):
            return exc.retry_after is None or exc.retry_after <= policy.max_retry_after
        return isinstance(exc, Transient)

    return check


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after + random.uniform(0, 0.25)
        backoff = policy.initial * 2 ** (state.attempt_number - 1)
        return float(min(policy.maximum, backoff) + random.uniform(0, policy.initial))

    return wait


class PlatformClient(ABC):
    """Envelope, signing and error parsing of one platform; subclasses fill two hooks."""

    platform: ClassVar[str]
    errors: ClassVar[ErrorTable]
    # Some calls change things on the platform; they are retried too (idempotent by
    # design: absolute stock, shipping answered "already shipped" for the same waybill).

    def __init__(self, shop: ShopContext, session: HttpSession, *, rate: float,
                 burst: int = 1) -> None:
        self.shop = shop
        self.session = session
        self.clock = session.clock
        self._bucket = (
            session.bucket((shop.platform, shop.app_key, shop.name), rate, burst)
            if session.rate_limits else None
        )

    @abstractmethod
    def build_request(self, api: str, params: Mapping[str, Any], access_token: str) -> httpx.Request:
        """A fully signed request for one attempt."""

    @abstractmethod
    def parse_response(self, api: str, response: httpx.Response) -> Any:
        """The payload of a successful call; raise a canonical error otherwise."""

    async def call(self, api: str, params: Mapping[str, Any] | None = None, *,
                   authenticated: bool = True) -> Any:
        refreshed = False
        while True:
            token = self.shop.tokens.current() if authenticated else None
            try:
                return await self._call_with_retries(
                    api, params or {}, token.access_token if token else "")
            except AuthExpired:
                if token is None or refreshed:
                    raise
                refreshed = True
                await self.shop.tokens.refresh(token)

    async def _call_with_retries(self, api: str, params: Mapping[str, Any], token: str) -> Any:
        policy = self.session.retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=_wait(policy),
            retry=retry_if_exception(_retriable(policy)),
            sleep=self.clock.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send_once(api, params, token, attempt.retry_state.attempt_number)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(self, api: str, params: Mapping[str, Any], token: str,
                         attempt: int) -> Any:
        if self._bucket is not None:
            await self._bucket.acquire()
        request = self.build_request(api, params, token)
        if work := _work.get():
            request.headers[WORK_HEADER] = work
        started = time.perf_counter()
        self.session.calls += 1
        try:
            response = await self.session.client.send(request)
        except httpx.TimeoutException as exc:
            self._log(api, params, attempt, started, error="timeout")
            raise Transient(f"{self.platform} {api}: timed out") from exc
        except httpx.TransportError as exc:
            self._log(api, params, attempt, started, error=type(exc).__name__)
            raise Transient(f"{self.platform} {api}: {type(exc).__name__}") from exc
        try:
            result = self.parse_response(api, response)
        except ConnectorError as exc:
            self._log(api, params, attempt, started, status=response.status_code,
                      error=type(exc).__name__, code=exc.code)
            raise
        self._log(api, params, attempt, started, status=response.status_code)
        return result

    def _log(self, api: str, params: Mapping[str, Any], attempt: int, started: float,
             **fields: Any) -> None:
        elapsed = time.perf_counter() - started
        for observe in self.session.observers:
            observe(self.platform, api, elapsed, fields.get("error"))
        log.debug("api_call", platform=self.platform, shop=self.shop.name, api=api,
                  attempt=attempt, ms=round((time.perf_counter() - started) * 1000, 1),
                  params=redact_mapping(dict(params)), **fields)


def retry_after_header(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def http_status_error(platform: str, api: str, response: httpx.Response) -> ConnectorError | None:
    """Canonical error for a transport-level HTTP status, or None for 2xx."""
    status = response.status_code
    if status < 300:
        return None
    text = f"{platform} {api}: HTTP {status}"
    if status == 429:
        return RateLimited(text, retry_after=retry_after_header(response), code=str(status))
    if status >= 500:
        return Transient(text, code=str(status))
    if status == 401:
        return AuthExpired(text, code=str(status))
    if status == 404:
        from core.errors import NotFound

        return NotFound(text, code=str(status))
    return Rejected(text, code=str(status), platform_message=response.text[:500])


def parse_json(platform: str, api: str, response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise BadResponse(f"{platform} {api}: body is not JSON", body=response.content) from exc
