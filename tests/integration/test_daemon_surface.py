"""The daemon's operator surface, in process: what `/healthz`, `/readyz` and `/metrics`
answer, what `erpsync status` shows and what `erpsync outbox list|retry|drop` do — each
checked against the rows the database holds after real pulls and pushes through sandboxes.

The Taobao sandbox refuses no stock update it can apply, so a permanent refusal comes from a
subclass defined here that answers in TOP's business-refusal shape (code 15, sub_code,
sub_msg) while `stock_refusal` is set — the operator "fixes it on the platform" by clearing
it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from connectors.taobao.sandbox import TaobaoSandbox, TopFault
from core.cli import app
from core.clock import ManualClock
from core.config import load
from core.daemon import Daemon
from core.db import create_engine, transaction
from core.model import Alert, Listing, Order, OutboxTask, Sku, SyncCursor
from core.pull import pull_orders
from core.quarantine import quarantine
from core.records import TokenSet
from core.runtime import Runtime
from core.sandbox import Fault
from core.senders import OutboxWorker
from core.web import build_app

STOCK_API = "taobao.skus.quantity.update"
REFUSAL = "该商品已被平台锁定，暂不能修改库存"  # the platform's own words, shown to operators


class RefusingTaobaoSandbox(TaobaoSandbox):
    """Refuses every stock update while `stock_refusal` is set."""

    stock_refusal = ""

    def _skus_quantity(self, params: Mapping[str, str]) -> dict[str, Any]:
        if self.stock_refusal:
            raise TopFault(15, "Remote service error", "isv.item-quantity-locked",  # assumed
                           self.stock_refusal)
        return super()._skus_quantity(params)


def shop_sandbox(clock: ManualClock, seed: int, codes: Mapping[str, int]) -> RefusingTaobaoSandbox:
    sandbox = RefusingTaobaoSandbox(clock=clock, seed=seed)
    for code, listed in codes.items():
        sandbox.add_item(f"product {code}", code, 9900, skus=[(code, listed, 9900)])
    return sandbox


def daemon_client(daemon: Daemon) -> httpx.AsyncClient:
    """The app the daemon serves (`Daemon.run` mounts the same routes), without a socket."""
    routes = daemon.metrics.routes(daemon)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(daemon.rt, routes)),
                             base_url="http://daemon")


def no_jobs(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler runs, with nothing on it: these tests move the work themselves."""
    monkeypatch.setattr(daemon, "plan", lambda: [])


async def cli(config: Path, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, [*args, "--config", str(config)],
                                   env={"COLUMNS": "300"})


async def pull_all(rt: Runtime, clock: ManualClock) -> None:
    clock.advance(timedelta(minutes=2))  # past the pull's modified lag
    for shop in rt.enabled_shops():
        await pull_orders(rt, shop.name, since=clock.now() - timedelta(hours=1))


async def outbox_rows(rt: Runtime) -> list[OutboxTask]:
    async with rt.sessions() as session:
        return list((await session.scalars(select(OutboxTask).order_by(OutboxTask.id))).all())


async def listing_of(rt: Runtime, shop: str, code: str) -> int:
    async with rt.sessions() as session:
        listing_id = await session.scalar(
            select(Listing.id).join(Sku, Sku.id == Listing.sku_id)
            .where(Listing.shop_id == rt.shop_ids[shop], Sku.merchant_code == code))
    assert listing_id is not None
    return int(listing_id)


# -- /healthz and /readyz ---------------------------------------------------------------------
async def test_healthz_answers_and_readyz_follows_the_scheduler(
        db_url: str, clock: ManualClock, make_runtime: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rt = await make_runtime(db_url, {"tb": TaobaoSandbox(clock=clock)})
    daemon = Daemon(rt, serve_http=False)
    no_jobs(daemon, monkeypatch)
    async with daemon_client(daemon) as client:
        alive = await client.get("/healthz")
        assert alive.status_code == 200
        assert alive.json() == {"status": "alive", "node": "test-node"}

        not_started = await client.get("/readyz")
        assert not_started.status_code == 503
        assert not_started.json() == {"ready": False, "database": "ok", "migrations": "ok",
                                      "scheduler": "stopped"}

        daemon.start()
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"ready": True, "database": "ok", "migrations": "ok",
                                "scheduler": "ok"}

        # the first SIGTERM: draining, still alive, no longer ready for new work
        daemon.stopping.set()
        draining = await client.get("/readyz")
        assert draining.status_code == 503 and draining.json()["scheduler"] == "stopped"
        assert (await client.get("/healthz")).status_code == 200

        await daemon.stop()
        assert not daemon.scheduler.running
        stopped = await client.get("/readyz")
        assert stopped.status_code == 503 and stopped.json()["scheduler"] == "stopped"


async def probe_fresh_daemon(rt: Runtime, monkeypatch: pytest.MonkeyPatch,
                             ) -> tuple[httpx.Response, httpx.Response]:
    """Start a daemon (no jobs) on `rt` and ask /readyz and /healthz once."""
    try:
        daemon = Daemon(rt, serve_http=False)
        no_jobs(daemon, monkeypatch)
        daemon.start()
        async with daemon_client(daemon) as client:
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")
        daemon.scheduler.shutdown(wait=False)
    finally:
        await rt.close()
    return ready, alive


async def test_readyz_names_a_database_that_was_never_upgraded(
        config_file: Any, db_url: str, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(config_file(db_url, [
        {"name": "tb", "platform": "taobao", "sandbox": True}]), check_env=False)
    rt = Runtime(config, clock=clock, node="test-node")  # no `erpsync db upgrade`
    answer, alive = await probe_fresh_daemon(rt, monkeypatch)
    assert alive.status_code == 200
    assert answer.status_code == 503
    body = answer.json()
    assert body["ready"] is False
    assert (body["database"], body["scheduler"]) == ("ok", "ok")
    assert "empty" in body["migrations"] and "erpsync db upgrade" in body["migrations"]


async def test_readyz_names_a_database_it_cannot_reach(
        tmp_path: Path, config_file: Any, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-folder").mkdir()
    url = f"sqlite:///{tmp_path / 'a-folder'}"  # a folder is no database file
    config = load(config_file(url, [
        {"name": "tb", "platform": "taobao", "sandbox": True}]), check_env=False)
    rt = Runtime(config, clock=clock, engine=create_engine(url), node="test-node")
    answer, alive = await probe_fresh_daemon(rt, monkeypatch)
    assert alive.status_code == 200
    assert answer.status_code == 503
    assert answer.json()["database"] == "OperationalError"


# -- /metrics ----------------------------------------------------------------------------------
def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def sample(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def labelled(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float],
             name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (found, labels), value in samples.items() if found == name}


async def test_metrics_show_what_the_database_holds(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    stock = {"LAMP": 9, "MUG": 5, "CUP": 4, "BOWL": 3}
    shops = {"tb-a": shop_sandbox(clock, 1, stock),
             "tb-b": shop_sandbox(clock, 2, {"LAMP": 9, "MUG": 5})}
    rt = await make_runtime(db_url, shops)
    daemon = Daemon(rt, serve_http=False)  # counts every platform call from here on
    assert "metrics" in {name for name, *_ in daemon.plan()}  # the refresh runs on schedule
    worker = OutboxWorker(rt)
    await seed_pool(rt, stock)

    # a sale of each SKU in shop a is pulled: six stock tasks. Shop a's first stock call
    # fails once (retried inside the call) and its four are sent; shop b refuses every stock
    # update, so its two end failed and alerted
    for code in stock:
        shops["tb-a"].place_order([(code, 1)])
    await pull_all(rt, clock)
    first_queued = clock.now()
    shops["tb-a"].faults.inject(Fault.SERVER_ERROR, api=STOCK_API)
    shops["tb-b"].stock_refusal = REFUSAL
    await worker.drain()
    # one more sale queues new LAMP values for both shops, not sent yet: the outbox depth
    shops["tb-a"].place_order([("LAMP", 1)])
    await pull_all(rt, clock)
    clock.advance(timedelta(seconds=95))
    async with transaction(rt.sessions) as session:
        await quarantine(session, shop_id=rt.shop_ids["tb-a"], source="pull",
                         payload=b"{not json", error="BadResponse: truncated", now=rt.now(),
                         reference="tb-a:bad")

    await daemon.metrics.refresh()  # what the daemon's `metrics` job does every 15 s
    async with daemon_client(daemon) as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = parse_exposition(answer.text)

    rows = await outbox_rows(rt)
    pending = [r for r in rows if r.state in ("pending", "sending")]
    async with rt.sessions() as session:
        orders = dict((await session.execute(
            select(Order.status, func.count()).group_by(Order.status))).all())
        alerts = dict((await session.execute(
            select(Alert.kind, func.count()).where(Alert.open_key.is_not(None))
            .group_by(Alert.kind))).all())
        cursors = dict((await session.execute(
            select(SyncCursor.shop_id, SyncCursor.position)
            .where(SyncCursor.stream == "orders"))).all())

    # orders ingested: five placed, five in the book, shown by status
    assert sum(orders.values()) == 5
    assert {dict(k)["status"]: v for k, v in labelled(samples, "erpsync_orders").items()} \
        == orders

    # pushes by result: a's four were sent and b's two refused, then both LAMP rows were
    # queued again (the task's row holds its newest value)
    done = sum(1 for r in rows if r.state == "done")
    failed = sum(1 for r in rows if r.state == "failed")
    assert (done, failed, len(pending)) == (3, 1, 2)
    assert sample(samples, "erpsync_outbox_tasks", kind="stock", state="done") == done
    assert sample(samples, "erpsync_outbox_tasks", kind="stock", state="failed") == failed
    assert sample(samples, "erpsync_outbox_tasks", kind="stock", state="pending") == 2

    # outbox depth and the age of the oldest task waiting: shop b's LAMP has had no value
    # through since the first pull queued one (it was refused; the newest waits still),
    # however recently the row was requeued
    assert sample(samples, "erpsync_outbox_depth", kind="stock") == len(pending)
    assert sample(samples, "erpsync_outbox_oldest_seconds", kind="stock") == \
        pytest.approx((clock.now() - first_queued).total_seconds())

    # platform calls: every request the sandboxes answered, and the failed ones by error
    calls = sum(len(sandbox.requests) for sandbox in shops.values())
    refused = len(shops["tb-b"].calls(STOCK_API))
    assert refused == 2
    assert sample(samples, "erpsync_api_call_seconds_count", platform="taobao") == calls
    assert sample(samples, "erpsync_api_errors_total", platform="taobao",
                  error="Transient") == 1
    assert sample(samples, "erpsync_api_errors_total", platform="taobao",
                  error="Rejected") == refused

    # open alerts by kind: b's two refusals (LAMP's stays open until a send succeeds) and
    # the quarantine
    assert alerts == {"push_failed": 2, "quarantine": 1}
    assert {dict(k)["kind"]: v for k, v in labelled(samples, "erpsync_alerts_open").items()} \
        == alerts

    # cursor lag by shop: how far each shop's order cursor trails the clock
    for name in shops:
        position = cursors[rt.shop_ids[name]]
        assert sample(samples, "erpsync_cursor_lag_seconds", shop=name) == pytest.approx(
            (clock.now() - position).total_seconds())
        assert (clock.now() - position) >= timedelta(seconds=95)


# -- erpsync status -----------------------------------------------------------------------------
async def test_status_shows_each_shop_as_the_database_holds_it(
        tmp_path: Path, db_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    clock.set(datetime.now(UTC) - timedelta(hours=1))  # the command line runs on real time
    shops = {"tb-a": shop_sandbox(clock, 1, {"LAMP": 9, "MUG": 5}),
             "tb-b": shop_sandbox(clock, 2, {"LAMP": 9, "MUG": 5}),
             "tb-c": shop_sandbox(clock, 3, {})}  # lists nothing, never pulled
    rt = await make_runtime(db_url, shops)
    config = tmp_path / "erpsync.toml"
    await seed_pool(rt, {"LAMP": 9, "MUG": 5})
    shops["tb-a"].place_order([("LAMP", 1), ("MUG", 1)])
    clock.advance(timedelta(minutes=2))
    for name in ("tb-a", "tb-b"):
        await pull_orders(rt, name, since=clock.now() - timedelta(hours=1))
    shops["tb-b"].stock_refusal = REFUSAL
    await OutboxWorker(rt).drain(shops=["tb-b"])  # b's two fail; a's stay queued
    async with transaction(rt.sessions) as session:
        await quarantine(session, shop_id=rt.shop_ids["tb-a"], source="pull",
                         payload=b"{not json", error="BadResponse: truncated", now=rt.now(),
                         reference="tb-a:bad")
    expires = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    rt.tokens.save("tb-a", TokenSet("rotated-access", "rotated-refresh", expires_at=expires))

    before = datetime.now(UTC)
    result = await cli(config, "status", "--json")
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    rows = {row["shop"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["tb-a", "tb-b", "tb-c"]

    async with rt.sessions() as session:
        cursors = {shop_id: (position, success) for shop_id, position, success in (
            await session.execute(select(SyncCursor.shop_id, SyncCursor.position,
                                         SyncCursor.last_success_at)
                                  .where(SyncCursor.stream == "orders"))).all()}
    tasks = await outbox_rows(rt)
    for name in ("tb-a", "tb-b"):
        row, shop_id = rows[name], rt.shop_ids[name]
        position, success = cursors[shop_id]
        assert row["platform"] == "taobao" and row["enabled"] is True
        assert datetime.fromisoformat(row["last_pull"]) == success
        assert (before - position).total_seconds() <= row["cursor_lag_seconds"] \
            <= (after - position).total_seconds()
        assert row["outbox"] == sum(1 for t in tasks if t.shop_id == shop_id
                                    and t.state in ("pending", "sending"))
        assert row["failing"] == sum(1 for t in tasks if t.shop_id == shop_id
                                     and t.state == "failed")
    assert (rows["tb-a"]["outbox"], rows["tb-a"]["failing"]) == (2, 0)
    assert (rows["tb-b"]["outbox"], rows["tb-b"]["failing"]) == (0, 2)
    assert datetime.fromisoformat(rows["tb-a"]["token_expires"]) == expires
    assert rows["tb-b"]["token_expires"] is None
    # a's quarantine alert; b's two refused stock pushes
    assert (rows["tb-a"]["open_alerts"], rows["tb-b"]["open_alerts"]) == (1, 2)
    assert rows["tb-c"] == {"shop": "tb-c", "platform": "taobao", "enabled": True,
                            "last_pull": None, "cursor_lag_seconds": None, "outbox": 0,
                            "failing": 0, "token_expires": None, "open_alerts": 0}

    table = await cli(config, "status")
    assert table.exit_code == 0, table.output
    assert table.stdout.count("erpsync status") == 1  # one table
    lines = {name: [line for line in table.stdout.splitlines() if f" {name} " in line]
             for name in rows}
    assert all(len(found) == 1 for found in lines.values()), table.stdout  # a row each
    cells = {name: [cell.strip() for cell in found[0].strip("│┃ ").split("│")]
             for name, found in lines.items()}
    assert cells["tb-b"][0:2] == ["tb-b", "taobao"]
    assert cells["tb-b"][4:6] == ["0", "2"] and cells["tb-b"][7] == "2"
    assert cells["tb-a"][4:6] == ["2", "0"] and cells["tb-a"][6].startswith("2026-12-01")
    assert cells["tb-c"][2:4] == ["never", "-"]


# -- erpsync outbox list | retry | drop ---------------------------------------------------------
async def open_push_alerts(rt: Runtime) -> set[str]:
    async with rt.sessions() as session:
        return set((await session.scalars(select(Alert.subject).where(
            Alert.kind == "push_failed", Alert.open_key.is_not(None)))).all())


async def test_outbox_list_retry_and_drop(
        tmp_path: Path, db_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    clock.set(datetime.now(UTC) - timedelta(minutes=10))  # the command line runs on real time
    sandbox = shop_sandbox(clock, 1, {"LAMP": 0, "MUG": 0})
    rt = await make_runtime(db_url, {"tb": sandbox})
    config = tmp_path / "erpsync.toml"
    await seed_pool(rt, {"LAMP": 9, "MUG": 5})
    sandbox.stock_refusal = REFUSAL
    await OutboxWorker(rt).drain()
    tasks = {t.payload["listing_id"]: t for t in await outbox_rows(rt)}
    lamp, mug = tasks[await listing_of(rt, "tb", "LAMP")], tasks[await listing_of(rt, "tb", "MUG")]
    assert (lamp.state, mug.state) == ("failed", "failed")
    assert REFUSAL in lamp.last_error

    listed = await cli(config, "outbox", "list")
    assert listed.exit_code == 0, listed.output
    for task in (lamp, mug):
        row = next(line for line in listed.stdout.splitlines()
                   if line.strip("│┃ ").startswith(f"{task.id} "))
        assert "failed" in row and "tb" in row and "stock" in row
        assert REFUSAL in row, row  # the platform's own message
    only_failed = await cli(config, "outbox", "list", "--state", "failed")
    assert only_failed.exit_code == 0 and REFUSAL in only_failed.stdout

    # unknown ids: named, non-zero, nothing changed
    for verb in ("retry", "drop"):
        unknown = await cli(config, "outbox", verb, "987654")
        assert unknown.exit_code != 0
        assert "987654" in unknown.output, unknown.output
        mixed = await cli(config, "outbox", verb, str(lamp.id), "987654")
        assert mixed.exit_code != 0 and "987654" in mixed.output
    assert [(t.state, t.attempts) for t in await outbox_rows(rt)] == [("failed", 1)] * 2
    assert await open_push_alerts(rt) == {f"outbox:{lamp.id}", f"outbox:{mug.id}"}

    # the operator fixes the listing on the platform, retries LAMP and gives up on MUG
    sandbox.stock_refusal = ""
    before = datetime.now(UTC)
    retried = await cli(config, "outbox", "retry", str(lamp.id))
    after = datetime.now(UTC)
    assert retried.exit_code == 0, retried.output
    dropped = await cli(config, "outbox", "drop", str(mug.id))
    assert dropped.exit_code == 0, dropped.output
    rows = {t.id: t for t in await outbox_rows(rt)}
    assert (rows[lamp.id].state, rows[lamp.id].attempts) == ("pending", 0)
    assert before <= rows[lamp.id].next_attempt_at <= after  # due now
    assert rows[mug.id].state == "dropped"
    assert await open_push_alerts(rt) == {f"outbox:{lamp.id}"}  # dropping closed MUG's

    sandbox.requests.clear()
    clock.set(after)
    stats = await OutboxWorker(rt).drain()
    assert (stats.sent, stats.failed) == (1, 0)
    rows = {t.id: t for t in await outbox_rows(rt)}
    assert rows[lamp.id].state == "done" and rows[mug.id].state == "dropped"
    assert sandbox.stock_of("LAMP") == 9  # the retried task was sent
    assert sandbox.stock_of("MUG") == 0  # the dropped one never is
    assert len(sandbox.calls(STOCK_API)) == 1
    assert await open_push_alerts(rt) == set()  # the send closed LAMP's
    clock.advance(timedelta(hours=2))
    await OutboxWorker(rt).drain()
    assert len(sandbox.calls(STOCK_API)) == 1 and sandbox.stock_of("MUG") == 0

    # a task that is not failed (or pending) cannot be retried or dropped: said, non-zero
    again = await cli(config, "outbox", "retry", str(lamp.id))
    assert again.exit_code != 0 and "done" in again.output
    after_drop = await cli(config, "outbox", "list")
    assert after_drop.exit_code == 0 and "dropped" in after_drop.stdout
