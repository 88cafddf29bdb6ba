"""Alert delivery from the database: the sinks `[alerts] sinks` configures, and the job that
sends every alert no sink has taken yet.

    [alerts]
    sinks = [
      { type = "dingtalk", webhook_env = "DINGTALK_WEBHOOK", secret_env = "DINGTALK_SECRET" },
      { type = "wecom", webhook_env = "WECOM_WEBHOOK" },
      { type = "feishu", webhook_env = "FEISHU_WEBHOOK", secret_env = "FEISHU_SECRET" },
      { type = "webhook", url = "https://ops.example.com/erpsync", secret_env = "HOOK_SECRET" },
      { type = "email", host = "smtp.example.com", port = 465, ssl = true,
        user = "alerts@example.com", password_env = "SMTP_PASSWORD",
        from = "alerts@example.com", to = ["ops@example.com"] },
      { type = "log" },
    ]

Secrets (robot webhook URLs hold their keys) are named by environment variable, never
written in the file. Two sinks of one type need distinct `name`s. No sinks configured: the
log sink, so an alert is always written somewhere.

What `deliver_alerts` guarantees: an alert (`delivered_at` NULL) is marked delivered only
when at least one sink took it, so an alert no sink took stays in the table and is tried
again on the next run; a failing sink never blocks the others (core.sinks.Dispatcher). Once
delivered, its resolution is announced the same way (`resolution_delivered_at`): operators
who were told "stalled" want to hear "moving again" without opening the CLI. Delivery is
at least once: two nodes running the job at the same moment could both send an alert, so
the daemon runs it under a job lease; the marks themselves only ever fill a NULL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import and_, or_, select, update

from core.clock import Clock, format_beijing
from core.config import ConfigProblems
from core.db import transaction
from core.errors import ConfigError
from core.logs import get_logger
from core.model import Alert
from core.secrets import Secret
from core.sinks import (
    AlertMessage,
    DingTalkSink,
    Dispatcher,
    EmailSink,
    FeishuSink,
    LogSink,
    Sink,
    WebhookSink,
    WeComSink,
)

if TYPE_CHECKING:
    from core.runtime import Runtime

log = get_logger("erpsync.alerts")

SINK_KEYS: Mapping[str, frozenset[str]] = {
    "log": frozenset({"type", "name"}),
    "dingtalk": frozenset({"type", "name", "webhook_env", "secret_env", "timeout"}),
    "wecom": frozenset({"type", "name", "webhook_env", "timeout"}),
    "feishu": frozenset({"type", "name", "webhook_env", "secret_env", "timeout"}),
    "webhook": frozenset({"type", "name", "url", "secret_env", "timeout"}),
    "email": frozenset({"type", "name", "host", "port", "user", "password_env", "from", "to",
                        "starttls", "ssl", "timeout"}),
}
TITLES: Mapping[str, str] = {
    "oversold": "Oversold order", "tracking_push_failed": "Tracking number refused",
    "tracking_push_late": "Tracking number not confirmed", "shipment_stalled": "Shipment stalled",
    "not_collected": "Parcel not collected", "delivery_exception": "Delivery exception",
    "ship_overdue": "Order not shipped in time", "stock_drift": "Stock drift",
    "quarantine": "Payload quarantined", "unknown_sku": "Unknown SKU",
    "listing_rejected": "Listing rejected", "dormant_sku": "Dormant SKU",
    "push_failed": "Push refused", "circuit_open": "Platform unreachable",
    "auth_expired": "Authorisation expired",
}
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


class _Entry:
    """Reads one `[alerts] sinks` entry; problems name `alerts.sinks[i].key`."""

    def __init__(self, file: str, index: int, entry: Mapping[str, Any],
                 environ: Mapping[str, str], problems: list[ConfigError]) -> None:
        self.file, self.where, self.entry = file, f"alerts.sinks[{index}]", entry
        self.environ, self.problems = environ, problems

    def bad(self, key: str, reason: str) -> None:
        self.problems.append(ConfigError(self.file, f"{self.where}.{key}", reason))

    def text(self, key: str, *, required: bool = False, default: str = "") -> str:
        value = self.entry.get(key)
        if value is None or value == "":
            if required:
                self.bad(key, "is required")
            return default
        if not isinstance(value, str):
            self.bad(key, f"expected a string, got {type(value).__name__}")
            return default
        return value

    def secret(self, key: str, *, required: bool = True) -> Secret | None:
        var = self.text(key, required=required)
        if not var:
            return None
        if not _ENV_NAME.fullmatch(var):
            self.bad(key, f"{var!r} must name an environment variable (e.g. DINGTALK_SECRET)")
            return None
        if not self.environ.get(var):
            self.bad(key, f"environment variable {var} is not set")
            return None
        return Secret(self.environ[var])

    def number(self, key: str, default: float) -> float:
        value = self.entry.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            self.bad(key, f"expected a positive number, got {value!r}")
            return default
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.entry.get(key, False)
        if not isinstance(value, bool):
            self.bad(key, "expected true/false")
            return False
        return value


def build_sinks(entries: Sequence[Any], *, client: httpx.AsyncClient, clock: Clock,
                environ: Mapping[str, str], file: str = "config") -> list[Sink]:
    """The sinks of `[alerts] sinks`, or ConfigProblems naming every bad key."""
    problems: list[ConfigError] = []
    sinks: list[Sink] = []
    names: dict[str, int] = {}
    for index, raw in enumerate(entries):
        if not isinstance(raw, Mapping):
            problems.append(ConfigError(file, f"alerts.sinks[{index}]", "expected a table "
                                        "like { type = \"log\" }"))
            continue
        entry = _Entry(file, index, raw, environ, problems)
        kind = entry.text("type", required=True)
        if not kind:
            continue
        if kind not in SINK_KEYS:
            entry.bad("type", f"unknown sink type {kind!r} (known: {', '.join(SINK_KEYS)})")
            continue
        for key in raw:
            if key not in SINK_KEYS[kind]:
                entry.bad(key, f"unknown key for a {kind} sink "
                               f"(known: {', '.join(sorted(SINK_KEYS[kind]))})")
        name = entry.text("name", default=kind)
        if name in names:
            entry.bad("name", f"sink name {name!r} is also used by alerts.sinks[{names[name]}]:"
                              " give each sink its own name")
        names.setdefault(name, index)
        before = len(problems)
        sink = _build_one(kind, name, entry, client, clock)
        if sink is not None and len(problems) == before:
            sinks.append(sink)
    if problems:
        raise ConfigProblems(problems)
    return sinks


def _build_one(kind: str, name: str, entry: _Entry, client: httpx.AsyncClient,
               clock: Clock) -> Sink | None:
    if kind == "log":
        return LogSink(name)
    timeout = entry.number("timeout", 10.0)
    if kind in ("dingtalk", "wecom", "feishu"):
        robot = entry.secret("webhook_env")
        secret = entry.secret("secret_env", required=False) if kind != "wecom" else None
        if robot is None:
            return None
        try:
            if kind == "dingtalk":
                return DingTalkSink.from_webhook_url(robot, client=client, clock=clock,
                                                     secret=secret, name=name, timeout=timeout)
            if kind == "wecom":
                return WeComSink.from_webhook_url(robot, client=client, clock=clock, name=name,
                                                  timeout=timeout)
            return FeishuSink.from_webhook_url(robot, client=client, clock=clock, secret=secret,
                                               name=name, timeout=timeout)
        except ValueError as exc:  # the message names the robot, never the URL's key
            entry.bad("webhook_env", str(exc))
            return None
    if kind == "webhook":
        url = entry.text("url", required=True)
        if url and not url.startswith(("http://", "https://")):
            entry.bad("url", "expected an http(s) URL")
        secret = entry.secret("secret_env")
        if not url or secret is None:
            return None
        return WebhookSink(url, secret, client=client, clock=clock, name=name, timeout=timeout)
    # email
    host = entry.text("host", required=True)
    use_ssl = entry.flag("ssl")
    port = entry.entry.get("port", 465 if use_ssl else 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        entry.bad("port", f"expected a port number, got {port!r}")
        port = 25
    user = entry.text("user")
    password = entry.secret("password_env", required=bool(user))
    recipients = entry.entry.get("to")
    if isinstance(recipients, str):
        recipients = [recipients]
    if not recipients or not isinstance(recipients, list) or not all(
            isinstance(r, str) and "@" in r for r in recipients):
        entry.bad("to", "expected a list of e-mail addresses")
        return None
    sender = entry.text("from", default=user if "@" in user else f"erpsync@{host}")
    if not host:
        return None
    return EmailSink(host=host, port=port, sender=sender, recipients=recipients, clock=clock,
                     username=user, password=password, starttls=entry.flag("starttls"),
                     use_ssl=use_ssl, timeout=timeout, name=name)


def sinks_for(rt: Runtime) -> list[Sink]:
    """The configured sinks; the log sink when none is configured."""
    sinks = build_sinks(rt.config.alert_sinks, client=rt.http.client, clock=rt.clock,
                        environ=rt.environ, file=str(rt.config.path))
    return sinks or [LogSink()]


# -- delivery -------------------------------------------------------------------------------------
class _Recording:
    """A sink that notes which messages it delivered: the dispatcher reports counts per
    sink, the table needs to know which alert some sink took."""

    def __init__(self, sink: Sink, taken: set[int]) -> None:
        self.name = sink.name
        self._sink = sink
        self._taken = taken

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        await self._sink.send(alerts)
        self._taken.update(id(a) for a in alerts)


def message_of(alert: Alert, *, resolution: bool) -> AlertMessage:
    title = TITLES.get(alert.kind, alert.kind.replace("_", " ").capitalize())
    text = alert.message
    if resolution and alert.resolved_at is not None:
        text += f"\n\nResolved {format_beijing(alert.resolved_at)} (Beijing)."
    return AlertMessage(kind=alert.kind, subject=alert.subject, severity=alert.severity,
                        title=title, text=text, opened_at=alert.opened_at, resolved=resolution)


async def deliver_alerts(rt: Runtime, *, sinks: Sequence[Sink] | None = None,
                         limit: int = 200) -> int:
    """Send undelivered alerts and resolution notices (oldest first, at most `limit`)
    through every sink; returns how many some sink took."""
    used = list(sinks) if sinks is not None else sinks_for(rt)
    async with rt.sessions() as session:
        pending = list((await session.scalars(
            select(Alert).where(or_(
                Alert.delivered_at.is_(None),
                and_(Alert.resolved_at.is_not(None), Alert.resolution_delivered_at.is_(None))))
            .order_by(Alert.id).limit(limit))).all())
    if not pending:
        return 0
    # an alert resolved before anyone heard of it goes out once, as resolved
    messages = {alert.id: message_of(alert, resolution=alert.resolved_at is not None)
                for alert in pending}
    taken: set[int] = set()
    dispatcher = Dispatcher([_Recording(s, taken) for s in used], clock=rt.clock,
                            digest_over=_digest_over(rt))
    reports = await dispatcher.dispatch(list(messages.values()))
    delivered = [a for a in pending if id(messages[a.id]) in taken]
    now = rt.now()
    async with transaction(rt.sessions) as session:
        for alert in delivered:
            await session.execute(update(Alert).where(Alert.id == alert.id,
                                                      Alert.delivered_at.is_(None))
                                  .values(delivered_at=now))
            if messages[alert.id].resolved:
                await session.execute(update(Alert).where(
                    Alert.id == alert.id, Alert.resolution_delivered_at.is_(None))
                    .values(resolution_delivered_at=now))
    failed = [r for r in reports if not r.ok]
    if failed:
        log.warning("alerts_undelivered", alerts=len(pending) - len(delivered),
                    failing_sinks=[r.sink for r in failed])
    return len(delivered)


def _digest_over(rt: Runtime) -> int:
    """`[alerts] digest_after` in rules.toml: more alerts than this in one run go to a sink
    as one digest message."""
    value = rt.rules_data.get("alerts", {}).get("digest_after", 5)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(str(rt.config.rules_file), "alerts.digest_after",
                          f"expected a whole number of at least 1, got {value!r}")
    return value
