"""Parcel tracking: the configured provider, polling it, accepting its pushes, and what a
parcel's journey writes on its Shipment.

Owns `[tracking]` in the config, the TrackingEvent rows and the tracking fields of a
Shipment (`tracking_status`, `first_event_at`, `last_event_at`, `final`, `polled_at`,
`subscribed_at`). The alerts a journey raises are decided in `core.logistics`
(`check_shipments`); storing a newer event resolves the ones it clears at once.

    [tracking]
    provider = "kuaidi100"
    sandbox = false                # true: the provider's simulator (the demo)
    credentials = { app_key = "KUAIDI100_CUSTOMER", app_secret = "KUAIDI100_KEY" }
    extra_credentials = { salt = "KUAIDI100_SALT" }   # verifies pushed updates
    callback_url = "https://erp.example.com/hooks/kuaidi100"   # optional: subscribe
    options = { kuaidi100 = { min_query_interval = 1800 } }

Credentials are environment variable names, as for shops. With `callback_url`, every new
parcel is subscribed and polling becomes the net for lost pushes
(`[shipping] tracking_poll_subscribed`); without it, parcels are polled every
`[shipping] tracking_poll`, never more often than the provider allows (Kuaidi100 may lock a
number queried more than every 30 min).

Events are deduplicated by (shipment, time, status, text hash): a push carries the whole
history every time, and a poll and a push may bring the same scans. A poll and a push of
the same parcel can also land at the same moment: each locks the shipment row (PostgreSQL;
SQLite serialises writers) and recomputes the summary from the stored events, so the later
writer never puts back an older status. Two nodes polling at once do not both query a
parcel: a poll claims it by moving `polled_at` forward only if it is still due
(compare-and-set), and the node that loses the race skips it.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from core.alerts import open_alert, resolve_alert
from core.config import ConfigProblems
from core.connector import ShopContext, StaticTokens, TrackingProvider
from core.db import insert_for, is_postgres, transaction
from core.errors import (
    AuthExpired,
    BadResponse,
    ConfigError,
    ConnectorError,
    NotFound,
    RateLimited,
    SignatureInvalid,
    UnmappedCarrier,
)
from core.logistics import EXCEPTION_STATUSES, shipping_rules
from core.logs import get_logger
from core.model import Order, Shipment, TrackingEvent
from core.records import Capability, PushAck, TokenSet, TrackingResult, TrackingStatus
from core.secrets import Secret

if TYPE_CHECKING:
    from core.runtime import Runtime

log = get_logger("erpsync.tracking")

# the key of the provider's sandbox in Runtime.sandboxes; no shop name can take it
TRACKING_SANDBOX = "@tracking"
FINAL_STATUSES = frozenset({TrackingStatus.DELIVERED, TrackingStatus.RETURNED})
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_KEYS = {"provider", "sandbox", "base_url", "credentials", "extra_credentials", "options",
         "callback_url"}


@dataclass(frozen=True, slots=True)
class TrackingSettings:
    provider: str
    sandbox: bool = False
    base_url: str | None = None
    credentials: Mapping[str, str] = field(default_factory=dict)  # key -> env var name
    extra_credentials: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str = ""

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], file: str = "config") -> TrackingSettings | None:
        """None when no provider is configured; ConfigProblems naming every bad key."""
        if not raw:
            return None
        problems: list[ConfigError] = []

        def bad(key: str, reason: str) -> None:
            problems.append(ConfigError(file, f"tracking.{key}", reason))

        problems += [ConfigError(file, f"tracking.{k}", "unknown key") for k in raw
                     if k not in _KEYS]
        provider = raw.get("provider")
        if not isinstance(provider, str) or not provider:
            bad("provider", "is required (e.g. \"kuaidi100\")")
        sandbox = raw.get("sandbox", False)
        if not isinstance(sandbox, bool):
            bad("sandbox", "expected true/false")
        base_url = raw.get("base_url")
        if base_url is not None and not isinstance(base_url, str):
            bad("base_url", "expected a string")
        callback = raw.get("callback_url", "")
        if not isinstance(callback, str) or (callback and not callback.startswith(
                ("http://", "https://"))):
            bad("callback_url", "expected an http(s) URL")
        options = raw.get("options", {})
        if not isinstance(options, Mapping):
            bad("options", "expected a table")
        tables: dict[str, Mapping[str, str]] = {}
        for key in ("credentials", "extra_credentials"):
            table = raw.get(key, {})
            if not isinstance(table, Mapping):
                bad(key, "expected a table")
                continue
            for name, var in table.items():
                if not isinstance(var, str) or not _ENV_NAME.fullmatch(var):
                    bad(f"{key}.{name}",
                        f"{var!r} must name an environment variable (e.g. KUAIDI100_KEY)")
            tables[key] = table
        if problems:
            raise ConfigProblems(problems)
        return cls(provider=str(provider), sandbox=bool(sandbox), base_url=base_url,
                   credentials=tables.get("credentials", {}),
                   extra_credentials=tables.get("extra_credentials", {}),
                   options=options, callback_url=str(callback or ""))


# -- the provider ---------------------------------------------------------------------------------
_providers: weakref.WeakKeyDictionary[Runtime, TrackingProvider | None] = (
    weakref.WeakKeyDictionary())


def tracking_settings(rt: Runtime) -> TrackingSettings | None:
    return TrackingSettings.from_config(rt.config.tracking, str(rt.config.path))


def provider(rt: Runtime) -> TrackingProvider | None:
    """The runtime's tracking provider (built once), or None when none is configured.
    Raises ConfigProblems for an unknown provider or a credential variable not set."""
    if rt in _providers:
        return _providers[rt]
    settings = tracking_settings(rt)
    built = None if settings is None else _build(rt, settings)
    _providers[rt] = built
    return built


def _build(rt: Runtime, settings: TrackingSettings) -> TrackingProvider:
    file = str(rt.config.path)
    try:
        provider_class = rt.registry.tracking_provider(settings.provider)
    except KeyError:
        installed = sorted(n for n, r in rt.registry.plugins.items()
                           if issubclass(r.plugin, TrackingProvider))
        raise ConfigProblems([ConfigError(
            file, "tracking.provider", f"unknown tracking provider {settings.provider!r} "
            f"(installed: {', '.join(installed) or 'none'})")]) from None
    binding = rt.sandboxes.get(TRACKING_SANDBOX) if settings.sandbox else None
    if settings.sandbox and binding is None:
        raise ConfigProblems([ConfigError(
            file, "tracking.sandbox", "true, but no tracking sandbox is running (the demo "
            "starts one; real use needs sandbox = false and credentials)")])
    if binding is not None:
        sandbox = binding.sandbox
        secrets = {"app_key": sandbox.app_key, "app_secret": sandbox.app_secret}
        # the salt is ours to choose; a sandbox accepts any
        extra = {"salt": "erpsync-sandbox-salt", **sandbox.client_secrets()}
        base_url = binding.base_url
    else:
        missing = [(f"{key}.{name}", var) for key, table in (
            ("credentials", settings.credentials),
            ("extra_credentials", settings.extra_credentials))
            for name, var in table.items() if var not in rt.environ]
        if missing:
            raise ConfigProblems([ConfigError(file, f"tracking.{key}",
                                              f"environment variable {var} is not set")
                                  for key, var in missing])
        if settings.callback_url and "salt" not in settings.extra_credentials:
            raise ConfigProblems([ConfigError(
                file, "tracking.extra_credentials.salt",
                "is required with callback_url: pushes could not be verified")])
        secrets = {k: rt.environ[v] for k, v in settings.credentials.items()}
        extra = {k: rt.environ[v] for k, v in settings.extra_credentials.items()}
        base_url = settings.base_url or provider_class.default_base_url
    context = ShopContext(
        name=f"tracking:{settings.provider}", platform=provider_class.platform,
        base_url=base_url, app_key=secrets.get("app_key", ""),
        app_secret=Secret(secrets.get("app_secret", "")), tokens=StaticTokens(TokenSet("")),
        extra_secrets={k: Secret(v) for k, v in extra.items()}, options=settings.options)
    try:
        return provider_class(context, rt.http)
    except ValueError as exc:  # e.g. an unknown provider option
        raise ConfigProblems([ConfigError(file, "tracking.options", str(exc))]) from None


def min_query_interval(tracker: TrackingProvider) -> timedelta:
    """How rarely the provider wants one parcel asked about. The contract has no such
    attribute; Kuaidi100 declares it among its options (`min_query_interval`, seconds)."""
    seconds = getattr(getattr(tracker, "options", None), "min_query_interval", 0) or 0
    return timedelta(seconds=float(seconds))


# -- polling --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Parcel:
    carrier: str
    tracking_number: str
    phone: str
    shipment_ids: tuple[int, ...]


async def poll_tracking(rt: Runtime, *, limit: int = 500) -> int:
    """Subscribe new parcels (with a callback URL), then poll every parcel that is not
    final and is due, at most `limit` shipments per run. Returns the new events stored."""
    tracker = provider(rt)
    if tracker is None:
        return 0
    if Capability.TRACKING not in tracker.capabilities:
        return 0
    await subscribe_tracking(rt, limit=limit)
    rules = shipping_rules(rt)
    now = rt.now()
    every = max(rules.tracking_poll, min_query_interval(tracker))
    every_subscribed = max(rules.tracking_poll_subscribed, every)
    due = or_(
        Shipment.polled_at.is_(None),
        (Shipment.subscribed_at.is_(None) & (Shipment.polled_at <= now - every)),
        (Shipment.subscribed_at.is_not(None) & (Shipment.polled_at <= now - every_subscribed)))
    async with rt.sessions() as session:
        rows = (await session.execute(
            select(Shipment.id, Shipment.carrier, Shipment.tracking_number,
                   Order.receiver_phone)
            .join(Order, Order.id == Shipment.order_id)
            .where(Shipment.final.is_(False), Shipment.shipped_at >= now - rules.tracking_max_age,
                   due)
            .order_by(Shipment.polled_at.is_not(None), Shipment.polled_at, Shipment.id)
            .limit(limit))).all()
    parcels: dict[tuple[str, str], list[int]] = {}
    phones: dict[tuple[str, str], str] = {}
    for sid, carrier, number, phone in rows:
        parcels.setdefault((carrier, number), []).append(sid)  # merged orders share a parcel
        phones[(carrier, number)] = phone
    stored = 0
    for (carrier, number), ids in parcels.items():
        parcel = _Parcel(carrier, number, phones[(carrier, number)], tuple(ids))
        outcome = await _poll_one(rt, tracker, parcel, due, now)
        if outcome is None:
            break  # the provider refuses our credentials: every other query would fail too
        stored += outcome
    return stored


async def _poll_one(rt: Runtime, tracker: TrackingProvider, parcel: _Parcel, due: Any,
                    now: datetime) -> int | None:
    async with transaction(rt.sessions) as session:
        claimed = await session.execute(
            update(Shipment).where(Shipment.id.in_(parcel.shipment_ids), due)
            .values(polled_at=now).execution_options(synchronize_session=False))
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return 0  # another node is polling it
    where = f"{parcel.carrier} {parcel.tracking_number}"
    try:
        result = await tracker.track(parcel.carrier, parcel.tracking_number, phone=parcel.phone)
    except NotFound:
        return 0  # no scan anywhere yet; the not_collected rule watches this
    except AuthExpired as exc:
        async with transaction(rt.sessions) as session:
            await open_alert(session, "auth_expired", f"tracking:{tracker.platform}",
                             f"tracking provider {tracker.platform}: {exc}", now)
        log.warning("tracking_auth_failed", provider=tracker.platform, error=str(exc))
        return None
    except RateLimited as exc:
        log.info("tracking_rate_limited", parcel=where, error=str(exc))
        return 0
    except (ConnectorError, UnmappedCarrier) as exc:
        log.warning("tracking_poll_failed", parcel=where, error=f"{type(exc).__name__}: {exc}")
        return 0
    async with transaction(rt.sessions) as session:
        return await record_result(session, parcel.shipment_ids, result, rt.now())


async def subscribe_tracking(rt: Runtime, *, limit: int = 500) -> int:
    """Ask the provider to push updates of parcels not subscribed yet (only with
    `[tracking] callback_url`). Returns the parcels subscribed."""
    settings = tracking_settings(rt)
    tracker = provider(rt)
    if (settings is None or tracker is None or not settings.callback_url
            or Capability.TRACKING_PUSH not in tracker.capabilities):
        return 0
    rules = shipping_rules(rt)
    now = rt.now()
    async with rt.sessions() as session:
        rows = (await session.execute(
            select(Shipment.id, Shipment.carrier, Shipment.tracking_number, Order.receiver_phone)
            .join(Order, Order.id == Shipment.order_id)
            .where(Shipment.final.is_(False), Shipment.subscribed_at.is_(None),
                   Shipment.shipped_at >= now - rules.tracking_max_age)
            .order_by(Shipment.id).limit(limit))).all()
    done = 0
    for sid, carrier, number, phone in rows:
        async with transaction(rt.sessions) as session:
            claimed = await session.execute(
                update(Shipment).where(Shipment.id == sid, Shipment.subscribed_at.is_(None))
                .values(subscribed_at=now).execution_options(synchronize_session=False))
            if not claimed.rowcount:  # type: ignore[attr-defined]
                continue
        try:
            await tracker.subscribe(carrier, number, settings.callback_url, phone=phone)
            done += 1
        except (ConnectorError, UnmappedCarrier) as exc:
            # not subscribed: polled at the normal rate, asked again next run
            log.warning("tracking_subscribe_failed", parcel=f"{carrier} {number}",
                        error=f"{type(exc).__name__}: {exc}")
            async with transaction(rt.sessions) as session:
                await session.execute(update(Shipment).where(Shipment.id == sid)
                                      .values(subscribed_at=None))
            if isinstance(exc, AuthExpired):
                break
    return done


# -- pushes ---------------------------------------------------------------------------------------
_REFUSED = PushAck(403, b'{"result":false,"returnCode":"403","message":"bad sign"}')
_NO_PROVIDER = PushAck(404, b'{"result":false,"returnCode":"404","message":"no tracking"}')
_RETRY_LATER = PushAck(500, b'{"result":false,"returnCode":"500","message":"retry later"}')


async def accept_callback(rt: Runtime, headers: Mapping[str, str], body: bytes) -> PushAck:
    """A provider's pushed update (the daemon's HTTP listener hands it over as received).
    A forged push is refused; a push we cannot use is logged and acknowledged all the same,
    because the provider would only send it again; a push we could not store is answered
    with an error so the provider re-sends it (Kuaidi100: 3 times, 35 min apart)."""
    tracker = provider(rt)
    if tracker is None or Capability.TRACKING_PUSH not in tracker.capabilities:
        return _NO_PROVIDER
    try:
        result = tracker.verify_callback(headers, body)
    except SignatureInvalid as exc:
        log.warning("tracking_push_refused", provider=tracker.platform, error=str(exc))
        return _REFUSED
    except BadResponse as exc:
        log.warning("tracking_push_unreadable", provider=tracker.platform, error=str(exc))
        return tracker.callback_ack()
    try:
        async with transaction(rt.sessions) as session:
            ids = list((await session.scalars(select(Shipment.id).where(
                Shipment.tracking_number == result.tracking_number)
                .order_by(Shipment.id))).all())
            if not ids:
                log.info("tracking_push_unknown_parcel", provider=tracker.platform,
                         tracking_number=result.tracking_number)
                return tracker.callback_ack()
            await record_result(session, ids, result, rt.now())
            if result.final and result.status not in FINAL_STATUSES:
                # the provider stopped watching a parcel still on its way ("3天查询无记录",
                # "60天无变化"): subscribe again next run, poll at the normal rate until then
                await session.execute(update(Shipment).where(Shipment.id.in_(ids))
                                      .values(subscribed_at=None))
    except SQLAlchemyError as exc:
        log.error("tracking_push_not_stored", provider=tracker.platform,
                  error=f"{type(exc).__name__}: {exc}"[:300])
        return _RETRY_LATER
    return tracker.callback_ack()


# -- storing --------------------------------------------------------------------------------------
def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def record_result(session: AsyncSession, shipment_ids: Sequence[int],
                        result: TrackingResult, now: datetime) -> int:
    """Store a parcel's journey on each of its shipments; returns the new events. The
    summary comes from the stored events, so a late, shorter copy of the journey (an old
    push re-sent, a poll racing a push) never moves a shipment backwards."""
    stored = 0
    seen = {(e.occurred_at, e.status.value, text_hash(e.text)): e for e in result.events}
    newest = max((e.occurred_at for e in result.events), default=None)
    for shipment_id in shipment_ids:
        shipment = await session.get(Shipment, shipment_id,
                                     with_for_update=is_postgres(session) or None)
        if shipment is None:
            continue
        if seen:
            inserted = await session.execute(
                insert_for(session, TrackingEvent).values([
                    {"shipment_id": shipment_id, "occurred_at": at, "status": status,
                     "location": event.location[:100], "text": event.text, "text_hash": digest}
                    for (at, status, digest), event in seen.items()])
                .on_conflict_do_nothing(
                    index_elements=["shipment_id", "occurred_at", "status", "text_hash"])
                .returning(TrackingEvent.id))
            stored += len(inserted.all())
        first, last = (await session.execute(
            select(func.min(TrackingEvent.occurred_at), func.max(TrackingEvent.occurred_at))
            .where(TrackingEvent.shipment_id == shipment_id))).one()
        if newest is not None and last is not None and newest >= last:
            shipment.tracking_status = result.status.value
        moved = last is not None and (shipment.last_event_at is None
                                      or last > shipment.last_event_at)
        shipment.first_event_at, shipment.last_event_at = first, last
        status = TrackingStatus(shipment.tracking_status)
        shipment.final = status in FINAL_STATUSES
        subject = f"shipment:{shipment_id}"
        # what a newer event clears is resolved now, not at the next check
        if moved:
            await resolve_alert(session, "shipment_stalled", subject, now)
        if status != TrackingStatus.PENDING:
            await resolve_alert(session, "not_collected", subject, now)
        if status not in EXCEPTION_STATUSES:
            await resolve_alert(session, "delivery_exception", subject, now)
    await session.flush()
    return stored
