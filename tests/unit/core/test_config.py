"""`erpsync config check`: the demo config passes; a broken copy yields one clear line per
problem, each naming the file and key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigProblems, load, parse_duration
from core.plugins import Registry

ROOT = Path(__file__).resolve().parents[3]
BROKEN = """
rules = "rules.toml"

[database]
url = "sqlite:///var/x.db"

[[shops]]
name = "tb-a"
platform = "taobao"
credentials = { app_key = "TB_KEY", app_secret = "TB_SECRET_NOT_SET" }
intervals = { orders = "soon" }
sync_ratio = 1.5

[[shops]]
name = "tb-a"
platform = "tmall-global"
sandbox = true
colour = "red"
"""


def test_demo_config_passes() -> None:
    config = load(ROOT / "config" / "demo.toml", known_platforms=Registry.discover().platforms)
    assert {shop.platform for shop in config.shops} >= {"taobao"}
    assert config.database_url.startswith("sqlite:///")


def test_broken_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text("")
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigProblems) as caught:
        load(path, known_platforms=lambda: {"taobao", "jd"}, environ={"TB_KEY": "k"})
    lines = [str(p) for p in caught.value.problems]
    expected = {
        "shops[0].credentials.app_secret": "environment variable TB_SECRET_NOT_SET is not set",
        "shops[0].intervals.orders": "is not a duration",
        "shops[0].sync_ratio": "must be in (0, 1]",
        "shops[1].name": "duplicate shop name 'tb-a'",
        "shops[1].platform": "unknown platform 'tmall-global'",
        "shops[1].colour": "unknown key",
    }
    for key, reason in expected.items():
        assert any(line.startswith(f"{path}: {key}: ") and reason in line for line in lines), (
            key, lines)
    assert len(lines) == len(expected)


def test_secrets_are_never_required_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text("")
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "sqlite://"\n[[shops]]\nname = "x"\nplatform = "taobao"\n'
                    'credentials = { app_key = "abc123", app_secret = "S" }\n')
    with pytest.raises(ConfigProblems) as caught:
        load(path, known_platforms=lambda: {"taobao"}, environ={})
    assert any("must name an environment variable" in str(p) for p in caught.value.problems)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600),
                                               ("2d", 172800), (90, 90), ("250ms", 0.25)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["0s", "-5m", "soon", True, "5 weeks"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_config_check_command_prints_one_line_per_problem(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text("")
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    done = subprocess.run([sys.executable, "-m", "core.cli", "config", "check", str(path)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 7  # the six above plus the missing TB_KEY in this environment
    ok = subprocess.run([sys.executable, "-m", "core.cli", "config", "check",
                         str(ROOT / "config" / "demo.toml")], capture_output=True, text=True,
                        cwd=ROOT)
    assert ok.returncode == 0, ok.stderr


SECTIONS = """
[database]
url = "sqlite:///:memory:"

[alerts]
sinks = [
    { type = "log" },
    { type = "pager" },
    { type = "dingtalk", name = "ops", webhook_env = "OPS_DINGTALK_URL" },
]

[tracking]
provider = "kuaidi1000"
credentials = { key = "kuaidi100 key" }
"""


def test_config_check_and_the_daemon_refuse_bad_alert_sinks_and_tracking(
        tmp_path: Path) -> None:
    """A sink or tracking provider the daemon could not use is named at `config check` and
    refused when the daemon starts — not found later by a job failing every 30 seconds."""
    (tmp_path / "rules.toml").write_text("")
    path = tmp_path / "erpsync.toml"
    path.write_text(SECTIONS)
    env = {k: v for k, v in os.environ.items() if k != "OPS_DINGTALK_URL"}
    for command in (["config", "check", str(path)], ["run", "-c", str(path)]):
        done = subprocess.run([sys.executable, "-m", "core.cli", *command],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
        assert errors == [
            f"error {path}: alerts.sinks[1].type: unknown sink type 'pager' (known: log, "
            "dingtalk, wecom, feishu, webhook, email)",
            f"error {path}: alerts.sinks[2].webhook_env: environment variable "
            "OPS_DINGTALK_URL is not set",
            f"error {path}: tracking.credentials.key: 'kuaidi100 key' must name an "
            "environment variable (e.g. KUAIDI100_KEY)",
        ], done.stderr
    # with those fixed, the provider itself must be installed
    path.write_text(SECTIONS.replace('{ type = "pager" },\n', "").replace(
        '"kuaidi100 key"', '"KUAIDI100_KEY"'))
    done = subprocess.run([sys.executable, "-m", "core.cli", "config", "check", str(path)],
                          capture_output=True, text=True,
                          env={**env, "OPS_DINGTALK_URL": "https://oapi.dingtalk.com/robot/"
                               "send?access_token=abc"}, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error {path}: tracking.provider: 'kuaidi1000' is not an installed tracking provider"]
