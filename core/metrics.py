"""Health and metrics for the daemon's HTTP listener.

`/healthz` answers while the event loop does (liveness). `/readyz` checks that the database
answers, the schema is current and the scheduler runs. `/metrics` is Prometheus text from
prometheus_client: call latency and errors by platform (counted in this process as calls
happen), job runs, and gauges read from the database every refresh (so with several daemons
every node reports the same shared state): orders by status, outbox depth and oldest age by
kind, tasks by outcome, open alerts by kind, cursor lag by shop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from core.model import Alert, Order, OutboxTask, Shop, SyncCursor

if TYPE_CHECKING:
    from core.daemon import Daemon
    from core.runtime import Runtime


class Metrics:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.registry = CollectorRegistry()
        r = self.registry
        self.api_latency = Histogram("erpsync_api_call_seconds", "Platform API call latency",
                                     ["platform"], registry=r,
                                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.api_errors = Counter("erpsync_api_errors_total", "Platform API call errors",
                                  ["platform", "error"], registry=r)
        self.job_runs = Counter("erpsync_job_runs_total", "Scheduled job runs", ["job"], registry=r)
        self.job_failures = Counter("erpsync_job_failures_total", "Scheduled job failures",
                                    ["job"], registry=r)
        self.job_seconds = Histogram("erpsync_job_seconds", "Scheduled job duration", ["job"],
                                     registry=r)
        self.orders = Gauge("erpsync_orders", "Orders in the order book by status", ["status"],
                            registry=r)
        self.outbox_depth = Gauge("erpsync_outbox_depth", "Outbox tasks waiting to be sent",
                                  ["kind"], registry=r)
        self.outbox_oldest = Gauge("erpsync_outbox_oldest_seconds",
                                   "Age of the oldest task waiting to be sent", ["kind"], registry=r)
        self.outbox_tasks = Gauge("erpsync_outbox_tasks", "Outbox tasks by kind and state "
                                  "(done and failed are pushes by result)", ["kind", "state"],
                                  registry=r)
        self.alerts_open = Gauge("erpsync_alerts_open", "Open alerts by kind", ["kind"], registry=r)
        self.cursor_lag = Gauge("erpsync_cursor_lag_seconds", "How far a shop's order cursor "
                                "trails now", ["shop"], registry=r)
        rt.http.observers.append(self.observe_call)

    def observe_call(self, platform: str, api: str, seconds: float, error: str | None) -> None:
        self.api_latency.labels(platform).observe(seconds)
        if error:
            self.api_errors.labels(platform, error).inc()

    def job_ran(self, name: str, seconds: float) -> None:
        family = name.split(":", 1)[0]
        self.job_runs.labels(family).inc()
        self.job_seconds.labels(family).observe(seconds)

    def job_failed(self, name: str) -> None:
        self.job_failures.labels(name.split(":", 1)[0]).inc()

    async def refresh(self) -> None:
        now = self.rt.now()
        async with self.rt.sessions() as session:
            self.orders.clear()
            for status, count in (await session.execute(
                    select(Order.status, func.count()).group_by(Order.status))).all():
                self.orders.labels(status).set(count)
            self.outbox_tasks.clear()
            self.outbox_depth.clear()
            self.outbox_oldest.clear()
            for kind, state, count, oldest in (await session.execute(
                    select(OutboxTask.kind, OutboxTask.state, func.count(),
                           func.min(OutboxTask.queued_at))
                    .group_by(OutboxTask.kind, OutboxTask.state))).all():
                self.outbox_tasks.labels(kind, state).set(count)
                if state in ("pending", "sending"):
                    self.outbox_depth.labels(kind).inc(count)
                    if oldest is not None:
                        age = max(0.0, (now - _aware(oldest)).total_seconds())
                        current = _value(self.outbox_oldest, kind)
                        self.outbox_oldest.labels(kind).set(max(age, current))
            self.alerts_open.clear()
            for kind, count in (await session.execute(
                    select(Alert.kind, func.count()).where(Alert.open_key.is_not(None))
                    .group_by(Alert.kind))).all():
                self.alerts_open.labels(kind).set(count)
            self.cursor_lag.clear()
            for shop, position in (await session.execute(
                    select(Shop.name, SyncCursor.position)
                    .join(SyncCursor, SyncCursor.shop_id == Shop.id)
                    .where(SyncCursor.stream == "orders"))).all():
                self.cursor_lag.labels(shop).set(max(0.0, (now - _aware(position))
                                                     .total_seconds()))

    def routes(self, daemon: Daemon) -> list[BaseRoute]:
        async def healthz(_request: Request) -> Response:
            return JSONResponse({"status": "alive", "node": self.rt.node})

        async def readyz(_request: Request) -> Response:
            from core.db import current_revision, head_revision

            checks: dict[str, Any] = {}
            try:
                async with self.rt.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
                checks["database"] = "ok"
                current, head = await current_revision(self.rt.engine), head_revision()
                state = "empty" if current is None else f"at {current}"
                checks["migrations"] = "ok" if current == head else (
                    f"{state}, need {head}: run erpsync db upgrade")
            except Exception as exc:  # readiness reports, it does not crash
                checks["database"] = f"{type(exc).__name__}"
            checks["scheduler"] = "ok" if daemon.scheduler.running and \
                not daemon.stopping.is_set() else "stopped"
            ready = all(v == "ok" for v in checks.values())
            return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

        async def metrics(_request: Request) -> Response:
            return PlainTextResponse(generate_latest(self.registry),
                                     media_type=CONTENT_TYPE_LATEST)

        return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


def _aware(moment: Any) -> Any:
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _value(gauge: Gauge, *labels: str) -> float:
    for metric in gauge.collect():
        for sample in metric.samples:
            if tuple(sample.labels.values()) == labels:
                return float(sample.value)
    return 0.0
