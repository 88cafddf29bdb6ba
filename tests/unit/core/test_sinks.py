"""Alert sinks and the dispatcher: signatures, robot answers, a real SMTP server, digests,
isolation of failing sinks, retries on the clock, no secrets in logs or errors."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from structlog.testing import capture_logs

from core.clock import BEIJING, ManualClock
from core.secrets import Secret
from core.sinks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertMessage,
    DingTalkSink,
    Dispatcher,
    EmailSink,
    FeishuSink,
    LogSink,
    Sink,
    SinkError,
    WebhookSink,
    WeComSink,
    dingtalk_sign,
    feishu_sign,
    verify_webhook_signature,
    webhook_signature,
)

DING_TOKEN = "ding-access-token-0123456789"
DING_SECRET = "SECdingtalk-secret-abcdef0123456789"
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
FEISHU_HOOK = "5e3d587e-d78e-4a07-bd07-265f2fffffff"
FEISHU_SECRET = "feishu-sign-secret-00112233"
HOOK_SECRET = "whsec-erpsync-0123456789"
SMTP_PASSWORD = "smtp-password-0123456789"
SECRETS = (DING_TOKEN, DING_SECRET, WECOM_KEY, FEISHU_HOOK, FEISHU_SECRET, HOOK_SECRET,
           SMTP_PASSWORD)


def alert(n: int = 1, severity: str = "warning", *, resolved: bool = False) -> AlertMessage:
    return AlertMessage(
        kind="shipment_stalled", subject=f"YT75123456789{n:02d}", severity=severity,
        title=f"包裹 {n} 48 小时无新轨迹", text=f"最后一条轨迹：杭州转运中心 (parcel {n})",
        opened_at=datetime(2026, 11, 20, 9, 0, tzinfo=BEIJING) + timedelta(minutes=n),
        resolved=resolved)


class Recorder:
    """A sink that keeps what it was sent; optionally fails the first `fail` sends."""

    def __init__(self, name: str, fail: int = 0, error: Exception | None = None) -> None:
        self.name = name
        self.sent: list[list[AlertMessage]] = []
        self.calls = 0
        self._fail = fail
        self._error = error or SinkError(name, "down", retriable=True)

    async def send(self, alerts: Sequence[AlertMessage]) -> None:
        self.calls += 1
        if self.calls <= self._fail:
            raise self._error
        self.sent.append(list(alerts))


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    """Other tests may leave structlog configured on a stream they closed."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 21, 10, 0, tzinfo=BEIJING))


# -- the message ----------------------------------------------------------------------------
def test_alert_message_needs_an_aware_time() -> None:
    with pytest.raises(ValueError):
        AlertMessage("k", "s", "info", "t", "x", datetime(2026, 1, 1))


# -- signatures -----------------------------------------------------------------------------
def test_dingtalk_sign_example() -> None:
    """DingTalk's 自定义机器人安全设置 (加签) page shows the algorithm with the secret
    'this is secret' but publishes no expected output, so the vector was computed from the
    documented algorithm with openssl, independently of this code:
    printf '%s\\n%s' 1700000000000 'this is secret' |
        openssl dgst -sha256 -hmac 'this is secret' -binary | base64
    -> sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0=, then urlencoded."""
    assert dingtalk_sign(1700000000000, "this is secret") == (
        "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0%3D")


def test_feishu_sign_example() -> None:
    """Feishu's 自定义机器人 签名校验 section gives the algorithm and the example timestamp
    1599360473 but no expected sign, so the vector was computed from the documented
    algorithm (key = timestamp + "\\n" + secret, empty message) with openssl:
    printf '' | openssl dgst -sha256 -mac HMAC -macopt hexkey:<hex of key> -binary | base64"""
    assert feishu_sign(1599360473, "demo-feishu-secret") == (
        "I14G+BylJBIS1VqI4nUg1mKqMAjMGZlFJGT36IJRUr8=")
    # the string to sign is the key here, not the message as with DingTalk
    assert feishu_sign(1599360473, "this is secret") != dingtalk_sign(1599360473, "this is secret")


def test_webhook_signature_example() -> None:
    """Computed with: printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac ..."""
    assert webhook_signature("whsec-example-0001", 1700000000, b'{"a":1}') == (
        "sha256=3001bd8122e72adfe10d0c0c2c70b527fb9688b8f9e2252f61246e8f5677495d")


# -- robots ---------------------------------------------------------------------------------
@respx.mock
async def test_dingtalk_markdown_signed_in_the_query(clock: ManualClock) -> None:
    route = respx.post(url__startswith=DingTalkSink.DEFAULT_URL).mock(
        return_value=httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}))
    async with httpx.AsyncClient() as client:
        sink = DingTalkSink(Secret(DING_TOKEN), secret=Secret(DING_SECRET), client=client,
                            clock=clock)
        await sink.send([alert()])
    request = route.calls.last.request
    query = parse_qs(urlsplit(str(request.url)).query)
    stamp = int(clock.now().timestamp() * 1000)
    assert query["access_token"] == [DING_TOKEN]
    assert query["timestamp"] == [str(stamp)]
    expected = parse_qs(f"sign={dingtalk_sign(stamp, DING_SECRET)}")["sign"]
    assert query["sign"] == expected  # decoded: the base64 value itself
    assert f"&sign={dingtalk_sign(stamp, DING_SECRET)}".encode() in request.url.query
    body = json.loads(request.content)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "[WARNING] 包裹 1 48 小时无新轨迹"
    assert "杭州转运中心" in body["markdown"]["text"]


@respx.mock
async def test_robot_error_codes_in_200_bodies_are_failures(clock: ManualClock) -> None:
    respx.post(url__startswith=DingTalkSink.DEFAULT_URL).mock(return_value=httpx.Response(
        200, json={"errcode": 310000, "errmsg": "sign not match, more: [...]"}))
    respx.post(url__startswith=WeComSink.DEFAULT_URL).mock(return_value=httpx.Response(
        200, json={"errcode": 93000, "errmsg": "invalid webhook url"}))
    respx.post(url__startswith=FeishuSink.DEFAULT_URL).mock(return_value=httpx.Response(
        200, json={"code": 19021, "msg": "sign match fail or timestamp is not within one hour",
                   "data": {}}))
    async with httpx.AsyncClient() as client:
        sinks = [
            DingTalkSink(Secret(DING_TOKEN), secret=Secret(DING_SECRET), client=client,
                         clock=clock),
            WeComSink(Secret(WECOM_KEY), client=client, clock=clock),
            FeishuSink(Secret(FEISHU_HOOK), secret=Secret(FEISHU_SECRET), client=client,
                       clock=clock),
        ]
        with capture_logs() as logs:
            reports = await Dispatcher(sinks, clock=clock).dispatch([alert()])
    assert [(r.sink, r.ok, r.attempts) for r in reports] == [
        ("dingtalk", False, 1), ("wecom", False, 1), ("feishu", False, 1)]  # not retried
    assert "310000" in reports[0].errors[0]
    assert "93000" in reports[1].errors[0]
    assert "19021" in reports[2].errors[0]
    text = repr(logs) + repr(reports)
    for secret in SECRETS:
        assert secret not in text
    assert clock.slept == []


@respx.mock
async def test_robot_rate_limit_code_is_retried_on_the_clock(clock: ManualClock) -> None:
    route = respx.post(url__startswith=DingTalkSink.DEFAULT_URL).mock(side_effect=[
        httpx.Response(200, json={"errcode": 130101, "errmsg": "send too fast"}),
        httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}),
    ])
    async with httpx.AsyncClient() as client:
        sink = DingTalkSink(Secret(DING_TOKEN), client=client, clock=clock)
        (report,) = await Dispatcher([sink], clock=clock, backoff=2.0).dispatch([alert()])
    assert (report.ok, report.attempts, route.call_count) == (True, 2, 2)
    assert clock.slept == [2.0]
    assert "sign" not in parse_qs(urlsplit(str(route.calls.last.request.url)).query)


@respx.mock
async def test_wecom_markdown_with_its_key_and_size_limit(clock: ManualClock) -> None:
    route = respx.post(url__startswith=WeComSink.DEFAULT_URL).mock(
        return_value=httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}))
    long = AlertMessage("quarantine", "order 1", "error", "大量坏数据", "坏" * 3000,
                        clock.now())
    async with httpx.AsyncClient() as client:
        await WeComSink(Secret(WECOM_KEY), client=client, clock=clock).send([long])
    request = route.calls.last.request
    assert parse_qs(urlsplit(str(request.url)).query)["key"] == [WECOM_KEY]
    body = json.loads(request.content)
    assert body["msgtype"] == "markdown"
    assert len(body["markdown"]["content"].encode()) <= 4096
    assert body["markdown"]["content"].startswith("### [ERROR] 大量坏数据")


@respx.mock
async def test_feishu_card_with_timestamp_and_sign(clock: ManualClock) -> None:
    route = respx.post(f"{FeishuSink.DEFAULT_URL}/{FEISHU_HOOK}").mock(
        return_value=httpx.Response(200, json={"code": 0, "msg": "success", "data": {}}))
    async with httpx.AsyncClient() as client:
        sink = FeishuSink(Secret(FEISHU_HOOK), secret=Secret(FEISHU_SECRET), client=client,
                          clock=clock)
        await sink.send([alert(1, "critical")])
    body = json.loads(route.calls.last.request.content)
    stamp = int(clock.now().timestamp())
    assert body["timestamp"] == str(stamp)
    assert body["sign"] == feishu_sign(stamp, FEISHU_SECRET)
    assert body["msg_type"] == "interactive"
    assert body["card"]["header"]["template"] == "red"
    assert body["card"]["elements"][0]["text"]["tag"] == "lark_md"


@respx.mock
async def test_http_failures_are_retried_and_hide_the_url(clock: ManualClock) -> None:
    route = respx.post(url__startswith=WeComSink.DEFAULT_URL).mock(
        side_effect=httpx.ConnectError("connection refused"))
    async with httpx.AsyncClient() as client:
        sink = WeComSink(Secret(WECOM_KEY), client=client, clock=clock)
        (report,) = await Dispatcher([sink], clock=clock, attempts=3).dispatch([alert()])
    assert (report.ok, report.attempts, route.call_count) == (False, 3, 3)
    assert report.errors == ("wecom: POST qyapi.weixin.qq.com: ConnectError",)


@respx.mock
async def test_robots_from_the_urls_their_pages_show(clock: ManualClock) -> None:
    ding = respx.post(url__startswith="https://oapi.dingtalk.com/robot/send").mock(
        return_value=httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}))
    wecom = respx.post(url__startswith="https://qyapi.weixin.qq.com/cgi-bin/webhook/send").mock(
        return_value=httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}))
    lark = respx.post(f"https://open.larksuite.com/open-apis/bot/v2/hook/{FEISHU_HOOK}").mock(
        return_value=httpx.Response(200, json={"StatusCode": 0, "StatusMessage": "success"}))
    async with httpx.AsyncClient() as client:
        sinks: list[Sink] = [
            DingTalkSink.from_webhook_url(
                Secret(f"https://oapi.dingtalk.com/robot/send?access_token={DING_TOKEN}"),
                client=client, clock=clock),
            WeComSink.from_webhook_url(
                Secret(f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}"),
                client=client, clock=clock),
            FeishuSink.from_webhook_url(
                Secret(f"https://open.larksuite.com/open-apis/bot/v2/hook/{FEISHU_HOOK}"),
                client=client, clock=clock),
        ]
        reports = await Dispatcher(sinks, clock=clock).dispatch([alert()])
    assert all(r.ok for r in reports)
    assert parse_qs(urlsplit(str(ding.calls.last.request.url)).query)["access_token"] == [
        DING_TOKEN]
    assert parse_qs(urlsplit(str(wecom.calls.last.request.url)).query)["key"] == [WECOM_KEY]
    assert "sign" not in json.loads(lark.calls.last.request.content)  # no secret, no sign
    with pytest.raises(ValueError) as caught:
        WeComSink.from_webhook_url(Secret(f"https://qyapi.weixin.qq.com/x?k={WECOM_KEY}"),
                                   client=client, clock=clock)
    assert WECOM_KEY not in str(caught.value)


# -- webhook --------------------------------------------------------------------------------
async def test_webhook_signature_verified_by_a_receiver(clock: ManualClock) -> None:
    verdicts: list[bool] = []
    bodies: list[dict[str, Any]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        ok = verify_webhook_signature(
            HOOK_SECRET, timestamp=request.headers[TIMESTAMP_HEADER], body=request.content,
            signature=request.headers[SIGNATURE_HEADER], now=clock.now())
        verdicts.append(ok)
        tampered = request.content.replace(b"shipment_stalled", b"all_fine_here___")
        verdicts.append(verify_webhook_signature(
            HOOK_SECRET, timestamp=request.headers[TIMESTAMP_HEADER], body=tampered,
            signature=request.headers[SIGNATURE_HEADER], now=clock.now()))
        verdicts.append(verify_webhook_signature(  # a replay an hour later
            HOOK_SECRET, timestamp=request.headers[TIMESTAMP_HEADER], body=request.content,
            signature=request.headers[SIGNATURE_HEADER], now=clock.now() + timedelta(hours=1)))
        bodies.append(json.loads(request.content))
        return httpx.Response(204 if ok else 401)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        sink = WebhookSink("https://ops.example.com/erpsync", Secret(HOOK_SECRET),
                           client=client, clock=clock)
        await sink.send([alert(1), alert(2, "critical")])
    assert verdicts == [True, False, False]
    assert bodies[0]["digest"] is True
    assert [a["subject"] for a in bodies[0]["alerts"]] == ["YT7512345678901", "YT7512345678902"]
    assert bodies[0]["alerts"][0]["opened_at"] == "2026-11-20T09:01:00+08:00"


async def test_webhook_refusal_is_a_failure(clock: ManualClock) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda r: httpx.Response(401))) as client:
        sink = WebhookSink("https://ops.example.com/erpsync", Secret(HOOK_SECRET),
                           client=client, clock=clock)
        (report,) = await Dispatcher([sink], clock=clock).dispatch([alert()])
    assert (report.ok, report.attempts) == (False, 1)
    assert report.errors == ("webhook: POST ops.example.com: HTTP 401",)


# -- email ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos),
                               message_from_bytes(envelope.content)))
        return "250 Message accepted"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"alerts"
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=_authenticator, auth_require_tls=False)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_email_reaches_a_real_smtp_server(smtp_server: tuple[Inbox, int],
                                                clock: ManualClock) -> None:
    inbox, port = smtp_server
    sink = EmailSink(host="127.0.0.1", port=port, sender="erpsync@example.com",
                     recipients=["ops@example.com", "boss@example.com"], clock=clock,
                     username="alerts", password=Secret(SMTP_PASSWORD))
    (report,) = await Dispatcher([sink], clock=clock).dispatch([alert(1, "critical")])
    assert report.ok
    ((sender, rcpts, message),) = inbox.envelopes
    assert sender == "erpsync@example.com"
    assert rcpts == ["ops@example.com", "boss@example.com"]
    assert str(make_header(decode_header(message["Subject"]))) == (
        "[CRITICAL] 包裹 1 48 小时无新轨迹")
    text = message.get_payload(decode=True)
    assert isinstance(text, bytes)
    assert "杭州转运中心" in text.decode(message.get_content_charset() or "utf-8")


async def test_email_login_refused_is_not_retried_and_hides_the_password(
        smtp_server: tuple[Inbox, int], clock: ManualClock) -> None:
    inbox, port = smtp_server
    sink = EmailSink(host="127.0.0.1", port=port, sender="erpsync@example.com",
                     recipients=["ops@example.com"], clock=clock, username="alerts",
                     password=Secret("not-the-password-000"))
    (report,) = await Dispatcher([sink], clock=clock).dispatch([alert()])
    assert (report.ok, report.attempts) == (False, 1)
    assert "login refused" in report.errors[0]
    assert "not-the-password-000" not in repr(report)
    assert inbox.envelopes == []


async def test_email_server_down_is_retried_on_the_clock(clock: ManualClock) -> None:
    sink = EmailSink(host="127.0.0.1", port=_free_port(), sender="erpsync@example.com",
                     recipients=["ops@example.com"], clock=clock, timeout=2.0)
    (report,) = await Dispatcher([sink], clock=clock, attempts=3, backoff=1.0).dispatch(
        [alert()])
    assert (report.ok, report.attempts) == (False, 3)
    assert clock.slept == [1.0, 2.0]


def _self_signed(tmp_path: Path) -> tuple[Path, Path, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(BEIJING)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file, pem.decode()


async def test_email_over_starttls(tmp_path: Path, clock: ManualClock) -> None:
    cert_file, key_file, pem = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=server_tls,
                            require_starttls=True, authenticator=_authenticator)
    controller.start()
    try:
        plain = EmailSink(host="127.0.0.1", port=port, sender="erpsync@example.com",
                          recipients=["ops@example.com"], clock=clock)
        secure = EmailSink(host="127.0.0.1", port=port, sender="erpsync@example.com",
                           recipients=["ops@example.com"], clock=clock, starttls=True,
                           tls_context=ssl.create_default_context(cadata=pem),
                           username="alerts", password=Secret(SMTP_PASSWORD), name="secure")
        refused, delivered = await Dispatcher([plain, secure], clock=clock).dispatch([alert()])
    finally:
        controller.stop()
    assert (refused.ok, refused.attempts) == (False, 1)  # the server demands STARTTLS
    assert delivered.ok
    assert len(inbox.envelopes) == 1


# -- the dispatcher -------------------------------------------------------------------------
async def test_more_than_n_alerts_become_one_digest(clock: ManualClock) -> None:
    sink = Recorder("chat")
    (report,) = await Dispatcher([sink], clock=clock).dispatch([alert(n) for n in range(6)])
    assert [len(batch) for batch in sink.sent] == [6]
    assert (report.delivered, report.messages) == (6, 1)


async def test_up_to_n_alerts_go_one_by_one(clock: ManualClock) -> None:
    sink = Recorder("chat")
    await Dispatcher([sink], clock=clock).dispatch([alert(n) for n in range(5)])
    assert [len(batch) for batch in sink.sent] == [1, 1, 1, 1, 1]
    narrow = Recorder("narrow")
    await Dispatcher([narrow], clock=clock, digest_over=2).dispatch([alert(n) for n in range(3)])
    assert [len(batch) for batch in narrow.sent] == [3]


@respx.mock
async def test_digest_is_one_robot_message(clock: ManualClock) -> None:
    route = respx.post(url__startswith=DingTalkSink.DEFAULT_URL).mock(
        return_value=httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}))
    alerts = [alert(n, "critical" if n == 4 else "warning") for n in range(8)]
    alerts.append(alert(9, resolved=True))
    async with httpx.AsyncClient() as client:
        sink = DingTalkSink(Secret(DING_TOKEN), client=client, clock=clock)
        await Dispatcher([sink], clock=clock).dispatch(alerts)
    assert route.call_count == 1
    markdown = json.loads(route.calls.last.request.content)["markdown"]
    assert markdown["title"] == "erpsync: 9 alerts (1 critical, 7 warning, 1 resolved)"
    lines = [line for line in markdown["text"].splitlines() if line.startswith("- ")]
    assert len(lines) == 9
    assert lines[0].startswith("- **[CRITICAL]** 包裹 4")


async def test_a_failing_sink_does_not_block_another(clock: ManualClock) -> None:
    release = asyncio.Event()

    class Stuck:
        name = "stuck"

        async def send(self, alerts: Sequence[AlertMessage]) -> None:
            await release.wait()
            raise SinkError("stuck", "gave up", retriable=False)

    healthy = Recorder("healthy")
    task = asyncio.create_task(Dispatcher([Stuck(), healthy], clock=clock).dispatch(
        [alert(1), alert(2)]))
    for _ in range(50):
        await asyncio.sleep(0)
        if len(healthy.sent) == 2:
            break
    assert len(healthy.sent) == 2  # delivered while the other sink still hangs
    assert not task.done()
    release.set()
    stuck, ok = await task
    assert (stuck.ok, stuck.failed, ok.ok, ok.delivered) == (False, 2, True, 2)


async def test_retries_back_off_exponentially_on_the_clock(clock: ManualClock) -> None:
    flaky = Recorder("flaky", fail=3)
    dead = Recorder("dead", fail=99)
    reports = await Dispatcher([flaky, dead], clock=clock, attempts=4, backoff=2.0,
                               max_backoff=5.0).dispatch([alert()])
    assert [(r.ok, r.attempts) for r in reports] == [(True, 4), (False, 4)]
    assert sorted(clock.slept) == sorted([2.0, 4.0, 5.0] * 2)  # capped at max_backoff


async def test_retry_after_is_honoured(clock: ManualClock) -> None:
    limited = Recorder("limited", fail=1,
                       error=SinkError("limited", "HTTP 429", retriable=True, retry_after=7.0))
    (report,) = await Dispatcher([limited], clock=clock).dispatch([alert()])
    assert report.ok
    assert clock.slept == [7.0]


async def test_unexpected_errors_are_reported_not_raised_nor_retried(clock: ManualClock) -> None:
    broken = Recorder("broken", fail=1, error=RuntimeError(f"bug near {HOOK_SECRET}"))
    Secret(HOOK_SECRET)  # registered, as configuration does
    (report,) = await Dispatcher([broken], clock=clock).dispatch([alert()])
    assert (report.ok, report.attempts) == (False, 1)
    assert HOOK_SECRET not in report.errors[0]
    assert report.errors[0].startswith("RuntimeError")


async def test_log_sink_and_protocol(clock: ManualClock) -> None:
    sink = LogSink()
    assert isinstance(sink, Sink)
    with capture_logs() as logs:
        (report,) = await Dispatcher([sink], clock=clock).dispatch(
            [alert(1, "critical"), alert(2, "info")])
    assert report.ok
    assert [(e["log_level"], e["subject"]) for e in logs] == [
        ("critical", "YT7512345678901"), ("info", "YT7512345678902")]


async def test_nothing_to_send_and_duplicate_names(clock: ManualClock) -> None:
    assert [r.messages for r in await Dispatcher([Recorder("a")], clock=clock).dispatch([])] == [0]
    with pytest.raises(ValueError):
        Dispatcher([Recorder("a"), Recorder("a")], clock=clock)
