"""`erpsync connectors new`: the package it writes installs, is found through its entry point,
and its contract tests run and fail saying what to write."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.cli import app
from core.scaffold import TEMPLATES, ScaffoldError, render, scaffold

Run = Callable[..., subprocess.CompletedProcess[str]]  # the run_python fixture


def test_every_template_renders_to_python_that_compiles() -> None:
    files = render("weidian", "Weidian 微店")
    assert set(files) == {t.format(name="weidian") for t in TEMPLATES.values()}
    for path, text in files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")
        assert "$" not in text.replace("${", ""), f"{path} kept a placeholder"
    assert 'weidian = "erpsync_weidian.connector:WeidianConnector"' in files["pyproject.toml"]
    assert "connector_class = WeidianConnector" in files["tests/test_contract.py"]


@pytest.mark.parametrize("name", ["Weidian", "wei-dian", "1688", "class", "x", "shop_"])
def test_unusable_names_are_refused(name: str) -> None:
    with pytest.raises(ScaffoldError, match="cannot name a platform"):
        render(name)


def test_an_existing_package_is_never_overwritten(tmp_path: Path) -> None:
    made = scaffold("weidian", tmp_path)
    (made.root / "erpsync_weidian" / "client.py").write_text("# mine\n")
    with pytest.raises(ScaffoldError, match="already exists"):
        scaffold("weidian", tmp_path)
    assert (made.root / "erpsync_weidian" / "client.py").read_text() == "# mine\n"


def test_the_command_writes_the_package_and_exits_2_on_a_bad_name(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["connectors", "new", "weidian", "--dest", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "erpsync-weidian" / "erpsync_weidian" / "sandbox.py").is_file()
    assert runner.invoke(app, ["connectors", "new", "Wei-Dian"]).exit_code == 2


@pytest.mark.slow
def test_a_generated_package_installs_and_its_suite_fails_saying_what_to_write(
        tmp_path: Path, install: Callable[[Path], Path], run_python: Run) -> None:
    root = scaffold("weidian", tmp_path / "src", title="Weidian 微店").root
    site = install(root)
    assert (site / "erpsync_weidian" / "connector.py").is_file()

    found = run_python(["-c", "from core.plugins import Registry; "
                              "r = Registry.discover().plugins['weidian']; print(r.origin)"],
                       [site])
    assert found.stdout.strip() == "erpsync-weidian 0.1.0", found.stderr

    result = run_python(["-m", "pytest", "-p", "no:cacheprovider", "-q", str(root / "tests")],
                        [site])
    out = result.stdout
    assert result.returncode == 1, out
    counts = re.search(r"(\d+) failed, (\d+) passed", out)
    assert counts and int(counts[1]) > 10, out
    assert " error" not in out.splitlines()[-1], out  # collected and ran, nothing crashed
    for what_to_write in (
            "NotImplementedError: iter_orders: page through the platform's order API",
            "NotImplementedError: get_order: read one order",
            "status_table is empty: map every order status string the platform documents",
            "carriers maps no carrier"):
        assert what_to_write in out, f"missing {what_to_write!r} in:\n{out}"
    assert "site/erpsync_weidian/connector.py" in out  # the installed copy ran, not the source
