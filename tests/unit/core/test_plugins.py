"""The registry finds built-ins and entry-point plugins alike; a broken plugin is reported
by name and does not take the others down."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from core import plugins
from core.plugins import Registry


def test_builtin_taobao_is_registered() -> None:
    registry = Registry.discover()
    assert "taobao" in registry.platforms()
    assert registry.plugins["taobao"].origin == "built-in"


def test_broken_plugin_is_reported_and_others_load(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [
        EntryPoint("ghostshop", "erpsync_ghost.connector:GhostConnector", plugins.GROUP),
        EntryPoint("notaclass", "core.records:OrderRecord", plugins.GROUP),
        EntryPoint("mislabelled", "connectors.taobao.connector:TaobaoConnector", plugins.GROUP),
    ]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points)
    registry = Registry.discover()
    broken = {b.name: b.error for b in registry.broken}
    assert "ModuleNotFoundError" in broken["ghostshop"]
    assert "not a Connector" in broken["notaclass"]
    assert "loads platform 'taobao'" in broken["mislabelled"]
    assert "taobao" in registry.platforms()  # the built-in still loads


def test_connectors_list_command_shows_capabilities() -> None:
    from typer.testing import CliRunner

    from core.cli import app

    result = CliRunner().invoke(app, ["connectors", "list"])
    assert result.exit_code == 0
    assert "taobao" in result.output and "orders.pull" in result.output
