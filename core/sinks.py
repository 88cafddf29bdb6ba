"""Alert delivery: the sinks that carry alerts to people, and the dispatcher that fans out.

What the dispatcher guarantees, per `Dispatcher.dispatch(alerts)`:
- every configured sink is given every alert; sinks run concurrently, so a slow or dead
  sink never delays or fails another — its failure comes back in its `SinkReport` and is
  logged, never raised;
- each message is retried with exponential backoff (tenacity), sleeping on the injected
  `core.clock.Clock`, and only for failures that can pass (network, 5xx, 429, a robot's
  "too fast"/"busy" code); a wrong key or a refused body is not retried;
- more than `digest_over` alerts for one sink in one dispatch become ONE digest message:
  a stalled carrier hub can open fifty `shipment_stalled` alerts at once, and fifty robot
  messages would both bury the group chat and trip the robots' rate limits
  (DingTalk: 20 messages a minute).
Delivery is at-least-once only together with the caller: `core.alerts` keeps an alert
undelivered until a dispatch reports its sink `ok`, so a sink that is down gets it later.

Secrets (webhook secrets, robot keys and tokens, which sit in the robots' URLs, the SMTP
password) are held as `core.secrets.Secret` and never written into a log line or an
exception text: errors name a sink by its name and host only, transport exceptions are not
chained, and every platform message is passed through `scrub`.

Robots answer errors inside HTTP 200 bodies — DingTalk and WeCom `errcode`, Feishu `code`
(older deployments `StatusCode`) — and any non-zero value is a failed delivery.

Webhook signature, for receivers of `WebhookSink`:

    X-Erpsync-Timestamp: <unix seconds when the request was signed>
    X-Erpsync-Signature: sha256=<hex HMAC-SHA256(key = secret,
                                                 message = timestamp + "." + raw body)>

The receiver recomputes the HMAC over the raw body bytes exactly as received, compares in
constant time, and refuses a timestamp more than a few minutes away from its own clock so a
captured request cannot be replayed later (`verify_webhook_signature` does all three).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import smtplib
import ssl
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from core.clock import Clock, format_beijing
from core.errors import ErpsyncError
from core.logs import get_logger
from core.secrets import Secret, scrub

log = get_logger("erpsync.alerts")

SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}
SIGNATURE_HEADER = "X-Erpsync-Signature"
TIMESTAMP_HEADER = "X-Erpsync-Timestamp"


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One alert as people read it. `severity`: critical, error, warning or info."""

    kind: str
    subject: str
    severity: str
    title: str
    text: str
    opened_at: datetime
    resolved: bool = False

    def __post_init__(self) -> None:
        if self.opened_at.tzinfo is None:
            raise ValueError("AlertMessage.opened_at must be timezone-aware")


class SinkError(ErpsyncError):
    """A sink could not deliver. The text names the sink, never its secrets."""

    def __init__(self, sink: str, message: str, *, retriable: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(scrub(f"{sink}: {message}"))
        self.sink = sink
        self.retriable = retriable
        self.retry_after = retry_after


@runtime_checkable
class Sink(Protocol):
    """Delivers alerts as ONE message: a single alert, or a digest when given several."""

    name: str

    async def send(self, alerts: Sequence[AlertMessage]) -> None: ...


# -- rendering ---------------------------------------------------------------------------------
def _ordered(alerts: Sequence[AlertMessage]) -> list[AlertMessage]:
    return sorted(alerts, key=lambda a: (SEVERITY_RANK.get(a.severity, 9), a.opened_at))


def _label(alert: AlertMessage) -> str:
    return "RESOLVED" if alert.resolved else alert.severity.upper()


def message_title(alerts: Sequence[AlertMessage]) -> str:
    if len(alerts) == 1:
        alert = alerts[0]
        return f"[{_label(alert)}] {alert.title}"
    counts: dict[str, int] = {}
    for alert in alerts:
        label = "resolved" if alert.resolved else alert.severity
        counts[label] = counts.get(label, 0) + 1
    summary = ", ".join(f"{n} {label}" for label, n in sorted(
        counts.items(), key=lambda item: SEVERITY_RANK.get(item[0], 9)))
    return f"erpsync: {len(alerts)} alerts ({summary})"


def render_markdown(alerts: Sequence[AlertMessage]) -> str:
    if len(alerts) == 1:
        alert = alerts[0]
        return (f"### {message_title(alerts)}\n\n{alert.text}\n\n"
                f"- kind: {alert.kind}\n- subject: {alert.subject}\n"
                f"- opened: {format_beijing(alert.opened_at)} (Beijing)\n")
    lines = [f"### {message_title(alerts)}", ""]
    lines += [f"- **[{_label(a)}]** {a.title} — {a.subject} "
              f"({format_beijing(a.opened_at)})" for a in _ordered(alerts)]
    return "\n".join(lines) + "\n"


def render_text(alerts: Sequence[AlertMessage]) -> str:
    if len(alerts) == 1:
        alert = alerts[0]
        return (f"{message_title(alerts)}\n\n{alert.text}\n\nkind: {alert.kind}\n"
                f"subject: {alert.subject}\nopened: {format_beijing(alert.opened_at)} (Beijing)\n")
    lines = [message_title(alerts), ""]
    for alert in _ordered(alerts):
        lines += [f"[{_label(alert)}] {alert.title}", f"  {alert.kind} / {alert.subject}, "
                  f"opened {format_beijing(alert.opened_at)}", f"  {alert.text}", ""]
    return "\n".join(lines)


def alert_payload(alert: AlertMessage) -> dict[str, Any]:
    return {"kind": alert.kind, "subject": alert.subject, "severity": alert.severity,
            "title": alert.title, "text": alert.text,
            "opened_at": alert.opened_at.isoformat(), "resolved": alert.resolved}


def clip_utf8(text: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8 (robots refuse longer bodies), cut on a character."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes - 3].decode(errors="ignore") + "…"


# -- signatures --------------------------------------------------------------------------------
def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """DingTalk robot 加签: urlencode(base64(HMAC-SHA256(key=secret,
    message=timestamp + "\\n" + secret))), ready for the `sign` query parameter."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def feishu_sign(timestamp_s: int, secret: str) -> str:
    """Feishu/Lark custom-bot 签名校验: base64(HMAC-SHA256(key=timestamp + "\\n" + secret,
    message=empty)) — the string to sign is the *key*, unlike DingTalk."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook_signature(secret: str, *, timestamp: str, body: bytes, signature: str,
                             now: datetime, tolerance: float = 300.0) -> bool:
    """For receivers: the signature matches the raw body and the timestamp is fresh."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() - stamp) > tolerance:
        return False
    return hmac.compare_digest(webhook_signature(secret, stamp, body).encode(),
                               signature.encode())


# -- sinks -------------------------------------------------------------------------------------
class LogSink:
    """Writes each alert as a structured log line; the sink that is always there."""

    def __init__(self, name: str = "log") -> None:
        self.name = name

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        for alert in alerts:
            level = {"critical": "critical", "error": "error", "warning": "warning"}.get(
                alert.severity, "info")
            getattr(log, level)("alert", sink=self.name, digest=len(alerts) > 1,
                                **alert_payload(alert))


class _HttpSink(ABC):
    """POSTs JSON; turns transport trouble and HTTP statuses into SinkError."""

    def __init__(self, name: str, client: httpx.AsyncClient, clock: Clock, *,
                 timeout: float) -> None:
        self.name = name
        self._client = client
        self._clock = clock
        self._timeout = timeout

    @abstractmethod
    async def send(self, alerts: Sequence[AlertMessage]) -> None: ...

    def _display(self, url: str) -> str:
        return urlsplit(url).netloc  # the path and query may hold the robot's key

    async def _post(self, url: str, payload: Any, headers: dict[str, str] | None = None,
                    body: bytes | None = None) -> httpx.Response:
        content = body if body is not None else json.dumps(
            payload, ensure_ascii=False, separators=(",", ":")).encode()
        where = self._display(url)
        try:
            response = await self._client.post(
                url, content=content, timeout=self._timeout,
                headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})})
        except httpx.TimeoutException:
            raise SinkError(self.name, f"POST {where}: timed out", retriable=True) from None
        except httpx.HTTPError as exc:
            raise SinkError(self.name, f"POST {where}: {type(exc).__name__}",
                            retriable=True) from None
        status = response.status_code
        if status == 429:
            raise SinkError(self.name, f"POST {where}: HTTP 429", retriable=True,
                            retry_after=_retry_after(response))
        if status >= 500:
            raise SinkError(self.name, f"POST {where}: HTTP {status}", retriable=True)
        return response


def _split_webhook(url: Secret, kind: str) -> tuple[str, str, dict[str, list[str]]]:
    """(base URL without query, last path segment, query) of a robot's webhook URL. The URL
    is a credential: errors name the robot kind only."""
    parts = urlsplit(url.reveal())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{kind} webhook URL is not an http(s) URL")
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return base, parts.path.rstrip("/").rsplit("/", 1)[-1], parse_qs(parts.query)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class _RobotSink(_HttpSink):
    """Chat robots: HTTP 200 with an error code in the body."""

    code_fields: ClassVar[tuple[str, ...]]
    message_fields: ClassVar[tuple[str, ...]]
    retriable_codes: ClassVar[frozenset[int]]

    def _check(self, url: str, response: httpx.Response) -> None:
        where = self._display(url)
        try:
            body = response.json()
        except ValueError:
            raise SinkError(self.name, f"POST {where}: HTTP {response.status_code}, "
                            "answer is not JSON", retriable=False) from None
        if not isinstance(body, dict):
            raise SinkError(self.name, f"POST {where}: answer is not an object",
                            retriable=False)
        code = next((body[f] for f in self.code_fields if f in body), None)
        if code == 0 and response.is_success:
            return
        message = next((str(body[f]) for f in self.message_fields if f in body), "")
        try:
            number = int(code) if code is not None else None
        except (TypeError, ValueError):
            number = None
        raise SinkError(self.name, f"POST {where}: HTTP {response.status_code}, code {code}: "
                        f"{message[:200]}", retriable=number in self.retriable_codes)


class DingTalkSink(_RobotSink):
    """DingTalk custom robot (钉钉自定义机器人), markdown; signed when the robot has 加签."""

    DEFAULT_URL: ClassVar[str] = "https://oapi.dingtalk.com/robot/send"
    code_fields = ("errcode",)
    message_fields = ("errmsg",)
    retriable_codes = frozenset({-1, 130101})  # system busy; sending too fast
    max_bytes: ClassVar[int] = 18_000

    def __init__(self, access_token: Secret, *, client: httpx.AsyncClient, clock: Clock,
                 secret: Secret | None = None, name: str = "dingtalk",
                 base_url: str = DEFAULT_URL, timeout: float = 10.0) -> None:
        super().__init__(name, client, clock, timeout=timeout)
        self._token = access_token
        self._secret = secret
        self._base_url = base_url

    @classmethod
    def from_webhook_url(cls, url: Secret, *, client: httpx.AsyncClient, clock: Clock,
                         secret: Secret | None = None, name: str = "dingtalk",
                         timeout: float = 10.0) -> DingTalkSink:
        """From the URL the robot page shows (`…/robot/send?access_token=…`)."""
        base, _, query = _split_webhook(url, "DingTalk")
        token = query.get("access_token", [""])[0]
        if not token:
            raise ValueError("DingTalk webhook URL has no access_token")
        return cls(Secret(token), client=client, clock=clock, secret=secret, name=name,
                   base_url=base, timeout=timeout)

    def url(self) -> str:
        url = f"{self._base_url}?access_token={quote(self._token.reveal(), safe='')}"
        if self._secret:
            stamp = int(self._clock.now().timestamp() * 1000)
            url += f"&timestamp={stamp}&sign={dingtalk_sign(stamp, self._secret.reveal())}"
        return url

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        url = self.url()
        payload = {"msgtype": "markdown", "markdown": {
            "title": clip_utf8(message_title(alerts), 200),
            "text": clip_utf8(render_markdown(alerts), self.max_bytes)}}
        self._check(url, await self._post(url, payload))


class WeComSink(_RobotSink):
    """WeCom group robot (企业微信群机器人), markdown; the robot key is the credential."""

    DEFAULT_URL: ClassVar[str] = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    code_fields = ("errcode",)
    message_fields = ("errmsg",)
    retriable_codes = frozenset({-1, 45009})  # system busy; frequency limit
    max_bytes: ClassVar[int] = 4096  # markdown.content limit

    def __init__(self, key: Secret, *, client: httpx.AsyncClient, clock: Clock,
                 name: str = "wecom", base_url: str = DEFAULT_URL, timeout: float = 10.0) -> None:
        super().__init__(name, client, clock, timeout=timeout)
        self._key = key
        self._base_url = base_url

    @classmethod
    def from_webhook_url(cls, url: Secret, *, client: httpx.AsyncClient, clock: Clock,
                         name: str = "wecom", timeout: float = 10.0) -> WeComSink:
        """From the URL the robot shows (`…/cgi-bin/webhook/send?key=…`)."""
        base, _, query = _split_webhook(url, "WeCom")
        key = query.get("key", [""])[0]
        if not key:
            raise ValueError("WeCom webhook URL has no key")
        return cls(Secret(key), client=client, clock=clock, name=name, base_url=base,
                   timeout=timeout)

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        url = f"{self._base_url}?key={quote(self._key.reveal(), safe='')}"
        payload = {"msgtype": "markdown",
                   "markdown": {"content": clip_utf8(render_markdown(alerts), self.max_bytes)}}
        self._check(url, await self._post(url, payload))


class FeishuSink(_RobotSink):
    """Feishu / Lark custom bot (自定义机器人): an interactive card with markdown; the hook
    id in the URL is the credential, `secret` the optional 签名校验 key."""

    DEFAULT_URL: ClassVar[str] = "https://open.feishu.cn/open-apis/bot/v2/hook"
    LARK_URL: ClassVar[str] = "https://open.larksuite.com/open-apis/bot/v2/hook"
    code_fields = ("code", "StatusCode")
    message_fields = ("msg", "StatusMessage")
    retriable_codes = frozenset({11232})  # rate limited
    max_bytes: ClassVar[int] = 18_000  # the whole body must stay under 20 KB
    _templates: ClassVar[dict[str, str]] = {
        "critical": "red", "error": "orange", "warning": "yellow", "info": "blue"}

    def __init__(self, hook_id: Secret, *, client: httpx.AsyncClient, clock: Clock,
                 secret: Secret | None = None, name: str = "feishu",
                 base_url: str = DEFAULT_URL, timeout: float = 10.0) -> None:
        super().__init__(name, client, clock, timeout=timeout)
        self._hook = hook_id
        self._secret = secret
        self._base_url = base_url.rstrip("/")

    @classmethod
    def from_webhook_url(cls, url: Secret, *, client: httpx.AsyncClient, clock: Clock,
                         secret: Secret | None = None, name: str = "feishu",
                         timeout: float = 10.0) -> FeishuSink:
        """From the URL the bot shows (`…/open-apis/bot/v2/hook/<id>`, Feishu or Lark)."""
        base, hook, _ = _split_webhook(url, "Feishu")
        if "/hook/" not in base or not hook:
            raise ValueError("Feishu webhook URL has no hook id")
        return cls(Secret(hook), client=client, clock=clock, secret=secret, name=name,
                   base_url=base[:base.rstrip("/").rindex("/")], timeout=timeout)

    def payload(self, alerts: Sequence[AlertMessage]) -> dict[str, Any]:
        worst = _ordered(alerts)[0]
        body: dict[str, Any] = {}
        if self._secret:
            stamp = int(self._clock.now().timestamp())
            body = {"timestamp": str(stamp), "sign": feishu_sign(stamp, self._secret.reveal())}
        body |= {"msg_type": "interactive", "card": {
            "header": {"title": {"tag": "plain_text", "content": message_title(alerts)},
                       "template": "green" if worst.resolved else self._templates.get(
                           worst.severity, "blue")},
            "elements": [{"tag": "div", "text": {
                "tag": "lark_md", "content": clip_utf8(render_markdown(alerts), self.max_bytes)}}],
        }}
        return body

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        url = f"{self._base_url}/{quote(self._hook.reveal(), safe='')}"
        self._check(url, await self._post(url, self.payload(alerts)))


class WebhookSink(_HttpSink):
    """The operator's own endpoint: a JSON body signed as described in the module doc."""

    def __init__(self, url: str, secret: Secret, *, client: httpx.AsyncClient, clock: Clock,
                 name: str = "webhook", timeout: float = 10.0) -> None:
        super().__init__(name, client, clock, timeout=timeout)
        self._url = url
        self._secret = secret

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        stamp = int(self._clock.now().timestamp())
        body = json.dumps({
            "source": "erpsync", "digest": len(alerts) > 1, "title": message_title(alerts),
            "alerts": [alert_payload(a) for a in alerts],
        }, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {TIMESTAMP_HEADER: str(stamp),
                   SIGNATURE_HEADER: webhook_signature(self._secret.reveal(), stamp, body),
                   "User-Agent": "erpsync-alerts"}
        response = await self._post(self._url, None, headers, body=body)
        if not response.is_success:
            raise SinkError(self.name, f"POST {self._display(self._url)}: HTTP "
                            f"{response.status_code}", retriable=False)


class EmailSink:
    """Plain-text mail over SMTP (standard library, run in a thread so the loop never
    blocks). `starttls` upgrades a plain connection; `use_ssl` speaks TLS from the start;
    `tls_context` trusts a private CA instead of the system's."""

    def __init__(self, *, host: str, sender: str, recipients: Sequence[str], clock: Clock,
                 port: int = 25, username: str = "", password: Secret | None = None,
                 starttls: bool = False, use_ssl: bool = False, timeout: float = 15.0,
                 tls_context: ssl.SSLContext | None = None, name: str = "email") -> None:
        if not recipients:
            raise ValueError("EmailSink needs at least one recipient")
        self.name = name
        self._host, self._port = host, port
        self._sender, self._recipients = sender, list(recipients)
        self._username, self._password = username, password
        self._starttls, self._use_ssl = starttls, use_ssl
        self._timeout = timeout
        self._tls = tls_context  # None: the system's CAs, hostname checked
        self._clock = clock

    def message(self, alerts: Sequence[AlertMessage]) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = message_title(alerts)
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
        message["Date"] = format_datetime(self._clock.now())
        message["Message-ID"] = make_msgid(domain="erpsync.local")
        message.set_content(render_text(alerts))
        return message

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        await asyncio.to_thread(self._deliver, self.message(alerts))

    def _deliver(self, message: EmailMessage) -> None:
        where = f"{self._host}:{self._port}"
        try:
            smtp: smtplib.SMTP = (
                smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout,
                                 context=self._tls or ssl.create_default_context())
                if self._use_ssl else smtplib.SMTP(self._host, self._port, timeout=self._timeout))
            with smtp:
                if self._starttls:
                    smtp.starttls(context=self._tls or ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password.reveal() if self._password else "")
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise SinkError(self.name, f"SMTP {where}: login refused ({exc.smtp_code})",
                            retriable=False) from None
        except smtplib.SMTPNotSupportedError:
            raise SinkError(self.name, f"SMTP {where}: server lacks STARTTLS or AUTH",
                            retriable=False) from None
        except smtplib.SMTPRecipientsRefused:
            raise SinkError(self.name, f"SMTP {where}: recipients refused",
                            retriable=False) from None
        except smtplib.SMTPResponseException as exc:
            raise SinkError(self.name, f"SMTP {where}: {exc.smtp_code}",
                            retriable=400 <= exc.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise SinkError(self.name, f"SMTP {where}: {type(exc).__name__}",
                            retriable=True) from None


# -- dispatch ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SinkReport:
    """What one dispatch did on one sink."""

    sink: str
    delivered: int  # alerts delivered
    failed: int  # alerts not delivered
    messages: int  # messages (single alerts or one digest) tried
    attempts: int  # sends, retries included
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failed == 0


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, SinkError):
        return exc.retriable
    return isinstance(exc, OSError | TimeoutError | httpx.TransportError)


def _log_failure(sink: str, alerts: int, attempts: int, error: str) -> None:
    # The report is the contract; a broken log stream must not turn it into an exception.
    with contextlib.suppress(Exception):
        log.warning("alert_sink_failed", sink=sink, alerts=alerts, attempts=attempts,
                    error=error)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SinkError):
        return str(exc)
    return scrub(f"{type(exc).__name__}: {exc}")[:300]


class Dispatcher:
    """Fans alerts out to every sink at once; see the module doc for the guarantees."""

    def __init__(self, sinks: Sequence[Sink], *, clock: Clock, digest_over: int = 5,
                 attempts: int = 4, backoff: float = 2.0, max_backoff: float = 60.0) -> None:
        if attempts < 1 or digest_over < 1:
            raise ValueError("attempts and digest_over must be at least 1")
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique: {names}")
        self.sinks = list(sinks)
        self.clock = clock
        self.digest_over = digest_over
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff

    async def dispatch(self, alerts: Sequence[AlertMessage]) -> list[SinkReport]:
        if not alerts:
            return [SinkReport(s.name, 0, 0, 0, 0) for s in self.sinks]
        return list(await asyncio.gather(*(self._deliver(s, alerts) for s in self.sinks)))

    async def _deliver(self, sink: Sink, alerts: Sequence[AlertMessage]) -> SinkReport:
        batches = ([list(alerts)] if len(alerts) > self.digest_over
                   else [[alert] for alert in alerts])
        delivered = failed = attempts = 0
        errors: list[str] = []
        for batch in batches:
            tries = [0]
            try:
                await self._send_with_retries(sink, batch, tries)
                delivered += len(batch)
            except Exception as exc:  # a sink's failure is reported, never raised
                failed += len(batch)
                errors.append(_describe(exc))
                _log_failure(sink.name, len(batch), tries[0], errors[-1])
            attempts += tries[0]
        return SinkReport(sink.name, delivered, failed, len(batches), attempts, tuple(errors))

    async def _send_with_retries(self, sink: Sink, batch: Sequence[AlertMessage],
                                 tries: list[int]) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts), wait=self._wait,
            retry=retry_if_exception(_retriable), sleep=self.clock.sleep, reraise=True)
        async for attempt in retrying:
            with attempt:
                tries[0] += 1
                await sink.send(batch)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, SinkError) and exc.retry_after is not None:
            return min(self.max_backoff, exc.retry_after)
        return float(min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1)))
