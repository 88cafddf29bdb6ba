"""Alert delivery from the database: sinks built from `[alerts] sinks` (a bad entry names its
key), a failing sink beside a working one, an alert no sink took tried again next run,
resolution notices, and the log sink when nothing is configured."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from core.alerting import build_sinks, deliver_alerts, sinks_for
from core.alerts import open_alert, resolve_alert
from core.clock import ManualClock
from core.config import ConfigProblems, load
from core.db import create_engine, transaction, upgrade
from core.model import Alert
from core.runtime import Runtime
from core.sinks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertMessage,
    DingTalkSink,
    EmailSink,
    FeishuSink,
    LogSink,
    SinkError,
    WebhookSink,
    WeComSink,
    verify_webhook_signature,
)

ENV = {"DINGTALK_WEBHOOK": "https://oapi.dingtalk.com/robot/send?access_token=ding-token-1",
       "DINGTALK_SECRET": "SECding-secret", "WECOM_WEBHOOK":
           "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key-1",
       "FEISHU_WEBHOOK": "https://open.feishu.cn/open-apis/bot/v2/hook/feishu-hook-1",
       "HOOK_SECRET": "whsec-0123456789", "SMTP_PASSWORD": "smtp-password"}


class Recording:
    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.sent: list[list[AlertMessage]] = []

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        self.sent.append(list(alerts))

    @property
    def messages(self) -> list[AlertMessage]:
        return [a for batch in self.sent for a in batch]


class Broken:
    def __init__(self, name: str = "broken", *, retriable: bool = False) -> None:
        self.name = name
        self.retriable = retriable
        self.calls = 0

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        self.calls += 1
        raise SinkError(self.name, "robot refused the message", retriable=self.retriable)


# -- building sinks -----------------------------------------------------------------------------
def test_every_sink_type_is_built_from_its_keys() -> None:
    clock = ManualClock()
    client = httpx.AsyncClient()
    sinks = build_sinks([
        {"type": "dingtalk", "webhook_env": "DINGTALK_WEBHOOK", "secret_env": "DINGTALK_SECRET"},
        {"type": "wecom", "webhook_env": "WECOM_WEBHOOK"},
        {"type": "feishu", "webhook_env": "FEISHU_WEBHOOK"},
        {"type": "webhook", "url": "https://ops.example.com/erpsync", "secret_env": "HOOK_SECRET",
         "timeout": 5},
        {"type": "email", "host": "smtp.example.com", "port": 465, "ssl": True,
         "user": "alerts@example.com", "password_env": "SMTP_PASSWORD",
         "to": ["ops@example.com"]},
        {"type": "log", "name": "journal"},
    ], client=client, clock=clock, environ=ENV)
    assert [type(s) for s in sinks] == [DingTalkSink, WeComSink, FeishuSink, WebhookSink,
                                        EmailSink, LogSink]
    assert [s.name for s in sinks] == ["dingtalk", "wecom", "feishu", "webhook", "email",
                                       "journal"]


def test_a_bad_entry_names_its_key_and_never_its_secret() -> None:
    with pytest.raises(ConfigProblems) as caught:
        build_sinks([
            {"type": "dingtalk", "webhook_env": "MISSING_WEBHOOK"},
            {"type": "pager"},
            {"type": "webhook", "url": "ops.example.com", "secret_env": "HOOK_SECRET",
             "colour": "red"},
            {"type": "email", "host": "smtp.example.com", "port": "smtp", "to": "nobody"},
            {"type": "log"},
            {"type": "log"},
            {"type": "wecom", "webhook_env": "lower_case"},
            "log",
            {"type": "feishu", "webhook_env": "HOOK_SECRET"},  # not a Feishu URL at all
        ], client=httpx.AsyncClient(), clock=ManualClock(), environ=ENV, file="erpsync.toml")
    lines = [str(p) for p in caught.value.problems]
    assert lines == [
        "erpsync.toml: alerts.sinks[0].webhook_env: environment variable MISSING_WEBHOOK is "
        "not set",
        "erpsync.toml: alerts.sinks[1].type: unknown sink type 'pager' (known: log, dingtalk, "
        "wecom, feishu, webhook, email)",
        "erpsync.toml: alerts.sinks[2].colour: unknown key for a webhook sink (known: name, "
        "secret_env, timeout, type, url)",
        "erpsync.toml: alerts.sinks[2].url: expected an http(s) URL",
        "erpsync.toml: alerts.sinks[3].port: expected a port number, got 'smtp'",
        "erpsync.toml: alerts.sinks[3].to: expected a list of e-mail addresses",
        "erpsync.toml: alerts.sinks[5].name: sink name 'log' is also used by "
        "alerts.sinks[4]: give each sink its own name",
        "erpsync.toml: alerts.sinks[6].webhook_env: 'lower_case' must name an environment "
        "variable (e.g. DINGTALK_SECRET)",
        "erpsync.toml: alerts.sinks[7]: expected a table like { type = \"log\" }",
        "erpsync.toml: alerts.sinks[8].webhook_env: Feishu webhook URL is not an http(s) URL",
    ]
    assert ENV["HOOK_SECRET"] not in "\n".join(lines)


# -- delivering from the database ---------------------------------------------------------------
@pytest.fixture
async def runtime(config_file: Any, clock: ManualClock) -> Any:
    made: list[Runtime] = []

    async def factory(db_url: str, *, sinks: str = "", environ: dict[str, str] | None = None,
                      transport: httpx.AsyncBaseTransport | None = None) -> Runtime:
        extra = f"\n[alerts]\nsinks = [{sinks}]\n" if sinks else ""
        config = load(config_file(db_url, [], extra=extra), check_env=False)
        engine = create_engine(config.database_url)
        await upgrade(engine, config.database_url)
        rt = Runtime(config, clock=clock, engine=engine, transport=transport,
                     environ=environ or {}, node="test-node")
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        await rt.close()


async def raise_alerts(rt: Runtime, *subjects: str, kind: str = "shipment_stalled") -> None:
    async with transaction(rt.sessions) as session:
        for subject in subjects:
            await open_alert(session, kind, subject, f"{subject} has not moved for 48 h",
                             rt.now())


async def delivered(rt: Runtime) -> dict[str, tuple[bool, bool]]:
    """subject -> (delivered, resolution delivered)"""
    async with rt.sessions() as session:
        rows = (await session.execute(select(Alert.subject, Alert.delivered_at,
                                             Alert.resolution_delivered_at))).all()
    return {s: (d is not None, r is not None) for s, d, r in rows}


async def test_a_failing_sink_never_stops_a_working_one(
        db_url: str, clock: ManualClock, runtime: Any) -> None:
    rt = await runtime(db_url)
    await raise_alerts(rt, "shipment:1", "shipment:2")
    broken, working = Broken(), Recording()
    assert await deliver_alerts(rt, sinks=[broken, working]) == 2
    assert broken.calls == 2  # it was tried with both
    assert [m.subject for m in working.messages] == ["shipment:1", "shipment:2"]
    assert await delivered(rt) == {"shipment:1": (True, False), "shipment:2": (True, False)}
    assert await deliver_alerts(rt, sinks=[broken, working]) == 0  # nothing sent twice
    assert len(working.messages) == 2


async def test_an_alert_no_sink_took_is_tried_again_next_run(
        db_url: str, clock: ManualClock, runtime: Any) -> None:
    rt = await runtime(db_url)
    await raise_alerts(rt, "shipment:1")
    flaky = Broken("flaky", retriable=True)
    assert await deliver_alerts(rt, sinks=[flaky, Broken()]) == 0
    assert flaky.calls == 4  # the dispatcher's retries, sleeping on the ManualClock
    assert await delivered(rt) == {"shipment:1": (False, False)}
    working = Recording()
    assert await deliver_alerts(rt, sinks=[Broken(), working]) == 1
    assert await delivered(rt) == {"shipment:1": (True, False)}


async def test_operators_hear_when_an_alert_clears(
        sqlite_url: str, clock: ManualClock, runtime: Any) -> None:
    rt = await runtime(sqlite_url)
    await raise_alerts(rt, "shipment:1", "shipment:2")
    sink = Recording()
    await deliver_alerts(rt, sinks=[sink])
    clock.advance(3600)
    async with transaction(rt.sessions) as session:
        await resolve_alert(session, "shipment_stalled", "shipment:1", rt.now())
    await raise_alerts(rt, "shipment:3")
    async with transaction(rt.sessions) as session:  # opened and cleared before anyone heard
        await resolve_alert(session, "shipment_stalled", "shipment:3", rt.now())
    sink.sent.clear()
    assert await deliver_alerts(rt, sinks=[sink]) == 2
    assert [(m.subject, m.resolved) for m in sink.messages] == [
        ("shipment:1", True), ("shipment:3", True)]
    assert "Resolved 2026-11-11 01:00:00 (Beijing)." in sink.messages[0].text
    assert await delivered(rt) == {"shipment:1": (True, True), "shipment:2": (True, False),
                                   "shipment:3": (True, True)}
    assert await deliver_alerts(rt, sinks=[sink]) == 0


async def test_many_alerts_become_one_digest_per_sink(
        sqlite_url: str, clock: ManualClock, runtime: Any) -> None:
    rt = await runtime(sqlite_url)  # rules.toml: [alerts] digest_after = 5
    await raise_alerts(rt, *(f"shipment:{n}" for n in range(8)))
    sink = Recording()
    assert await deliver_alerts(rt, sinks=[sink]) == 8
    assert [len(batch) for batch in sink.sent] == [8]


async def test_the_log_sink_when_none_is_configured(
        sqlite_url: str, clock: ManualClock, runtime: Any) -> None:
    rt = await runtime(sqlite_url)
    assert [type(s) for s in sinks_for(rt)] == [LogSink]
    await raise_alerts(rt, "order:7", kind="ship_overdue")
    with capture_logs() as logs:
        assert await deliver_alerts(rt) == 1
    (line,) = [entry for entry in logs if entry["event"] == "alert"]
    assert (line["kind"], line["subject"], line["title"]) == (
        "ship_overdue", "order:7", "Order not shipped in time")


async def test_configured_sinks_deliver_over_http(
        db_url: str, clock: ManualClock, runtime: Any) -> None:
    """From the config to the wire: the DingTalk robot refuses (keyword check), the
    operator's webhook takes the alert signed; the alert is delivered once."""
    received: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        if request.url.host == "oapi.dingtalk.com":
            return httpx.Response(200, json={"errcode": 310000,
                                             "errmsg": "keywords not in content"})
        return httpx.Response(204)

    rt = await runtime(db_url, transport=httpx.MockTransport(handler), environ=ENV, sinks=(
        '{ type = "dingtalk", webhook_env = "DINGTALK_WEBHOOK", secret_env = "DINGTALK_SECRET" },'
        ' { type = "webhook", url = "https://ops.example.com/erpsync", '
        'secret_env = "HOOK_SECRET" }'))
    await raise_alerts(rt, "shipment:9", kind="delivery_exception")
    assert await deliver_alerts(rt) == 1
    assert await delivered(rt) == {"shipment:9": (True, False)}
    ding = [r for r in received if r.url.host == "oapi.dingtalk.com"]
    hook = [r for r in received if r.url.host == "ops.example.com"]
    assert len(ding) == 1 and len(hook) == 1  # a refusal is not retried
    body = hook[0].content
    assert verify_webhook_signature(ENV["HOOK_SECRET"], timestamp=hook[0].headers[
        TIMESTAMP_HEADER], body=body, signature=hook[0].headers[SIGNATURE_HEADER],
        now=clock.now())
    (sent,) = json.loads(body)["alerts"]
    assert (sent["kind"], sent["severity"], sent["title"]) == (
        "delivery_exception", "error", "Delivery exception")
    assert await deliver_alerts(rt) == 0
