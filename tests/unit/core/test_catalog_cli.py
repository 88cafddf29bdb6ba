"""`erpsync catalog import/show` and the listing commands that need no platform call
(validate, plan, schedule, fire-scheduled, dormant), run as an operator would: a config file,
a migrated SQLite database, the real command line."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from core.cli import app

ROOT = Path(__file__).resolve().parents[3]
HEADER = ["product_code", "title", "sku_code", "price", "spec", "categories", "attributes",
          "images", "detail_images", "description"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "config" / "rules.toml", tmp_path / "rules.toml")
    path = tmp_path / "erpsync.toml"
    path.write_text(f'rules = "rules.toml"\nsecrets = "secrets.json"\n\n[database]\n'
                    f'url = "sqlite:///{tmp_path / "erpsync.db"}"\n\n'
                    '[[shops]]\nname = "tb"\nplatform = "taobao"\nsandbox = true\n',
                    encoding="utf-8")
    assert run(path, "db", "upgrade").exit_code == 0
    return path


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "200"})


def catalogue(tmp_path: Path, title: str = "陶瓷马克杯 办公室咖啡杯", price: str = "39") -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    Image.new("RGB", (800, 800), "white").save(tmp_path / "img" / "main.png")
    Image.new("RGB", (750, 1600), "white").save(tmp_path / "img" / "detail.png")
    path = tmp_path / "catalogue.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerow(["MUG", title, "MUG-W", price, "颜色=白色", "taobao=121412004",
                         "品牌=3246379;材质=3323086;容量=3267945;风格=3226292", "img/main.png",
                         "img/detail.png", "釉下彩陶瓷马克杯"])
        writer.writerow(["MUG", "", "MUG-B", "49", "颜色=黑色", "", "", "", "", ""])
    return path


def test_import_show_validate_and_plan(tmp_path: Path, config: Path) -> None:
    result = run(config, "catalog", "import", str(catalogue(tmp_path)), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "is clean: 1 products, 2 SKUs (nothing applied)" in result.output
    assert run(config, "catalog", "show", "MUG").exit_code == 2  # dry run applied nothing

    result = run(config, "catalog", "import", str(catalogue(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "1 products (1 new), 2 SKUs; 0 listing price update(s) queued" in result.output
    shown = run(config, "catalog", "show", "MUG").output
    assert "陶瓷马克杯" in shown and "MUG-B" in shown and "49.00" in shown

    result = run(config, "listings", "validate")
    assert result.exit_code == 0, result.output
    assert "every product passes the listing rules" in result.output
    result = run(config, "listings", "plan")
    assert result.exit_code == 0, result.output
    assert "tb (taobao)" in result.output and "create MUG" in result.output
    assert "price: - → 39.00–49.00" in result.output
    dry = run(config, "listings", "push", "--dry-run", "--shop", "tb")
    assert dry.exit_code == 0 and "create MUG" in dry.output


def test_a_bad_file_applies_nothing(tmp_path: Path, config: Path) -> None:
    path = catalogue(tmp_path, price="3.999")
    result = run(config, "catalog", "import", str(path))
    assert result.exit_code == 2
    assert "line 2: price: '3.999' is not a price in yuan" in result.output
    assert "nothing applied: 1 problem(s)" in result.output
    assert run(config, "catalog", "show", "MUG").exit_code == 2
    assert run(config, "catalog", "import", str(tmp_path / "none.csv")).exit_code == 2


def test_validate_reports_every_problem_and_exits_1(tmp_path: Path, config: Path) -> None:
    path = catalogue(tmp_path, title="全网最低价 陶瓷马克杯" + "好" * 25)
    assert run(config, "catalog", "import", str(path)).exit_code == 0
    result = run(config, "listings", "validate")
    assert result.exit_code == 1
    output = result.output
    assert "TITLE_TOO_LONG" in output and output.count("BANNED_WORD") == 2
    assert "'全网最低' at character 1" in output
    assert run(config, "listings", "validate", "--shop", "tb").exit_code == 1
    assert run(config, "listings", "validate", "--shop", "nope").exit_code == 2
    plan = run(config, "listings", "plan").output
    assert "create MUG  (blocked)" in plan and "TITLE_TOO_LONG" in plan


def test_schedule_fire_and_dormant_commands(tmp_path: Path, config: Path) -> None:
    assert run(config, "catalog", "import", str(catalogue(tmp_path))).exit_code == 0
    result = run(config, "listings", "schedule", "MUG", "--at", "2030-11-10T08:00")
    assert result.exit_code == 0, result.output
    assert "tb: MUG on sale at 2030-11-10 08:00:00 (items: not created yet)" in result.output
    plan = run(config, "listings", "plan").output
    assert "created, then off sale until 2030-11-10 08:00:00" in plan
    assert "0 scheduled item(s) put on sale" in run(config, "listings", "fire-scheduled").output
    assert run(config, "listings", "schedule", "MUG").exit_code == 2  # --at or --clear
    assert run(config, "listings", "schedule", "NOPE", "--clear").exit_code == 2
    assert "no dormant SKU" in run(config, "listings", "dormant").output
