"""Catalogue import: CSV, JSON and XLSX read into the same products; a file is checked whole,
every bad row/field is reported with its place, and nothing is applied unless it is clean.
A changed price reaches every bound listing through the outbox."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from connectors.taobao.sandbox import TaobaoSandbox
from core.catalog import (
    COLUMNS,
    ProductSpec,
    SkuSpec,
    import_catalogue,
    read_catalogue,
    upsert_product,
)
from core.clock import ManualClock
from core.db import transaction
from core.model import OutboxTask, Product

HEADER = ["product_code", "title", "sku_code", "price", "spec", "barcode", "weight_g", "bulky",
          "presale_days", "categories", "attributes", "images", "detail_images", "description",
          "on_sale"]
ROWS = [
    ["TEE", "纯棉短袖T恤", "TEE-M", "99", "尺码=M", "690100000001", "250", "", "",
     "taobao=50000671;douyin=20001", "品牌=3246379;材质=棉", "img/tee.png;https://cdn.example/t.jpg",
     "img/d1.png", "夏季百搭", "true"],
    ["TEE", "", "TEE-L", "129.00", "尺码=L", "", "260", "no", "", "", "", "", "", "", ""],
    ["GIFT", "坚果礼盒", "GIFT", "159.9", "", "", "1800", "是", "3", "", "", "", "", "",
     "false"],
]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


EXPECTED_TEE_SKUS = (SkuSpec("TEE-M", 9900, {"尺码": "M"}, "690100000001", 250, False, None),
                     SkuSpec("TEE-L", 12900, {"尺码": "L"}, "", 260, False, None))


def check_products(products: list[ProductSpec], base: Path) -> None:
    tee, gift = products
    assert tee.merchant_code == "TEE" and tee.title == "纯棉短袖T恤"
    assert tuple(tee.skus) == EXPECTED_TEE_SKUS
    assert tee.categories == {"taobao": "50000671", "douyin": "20001"}
    assert tee.attributes == {"品牌": "3246379", "材质": "棉"}
    # relative files are taken from the catalogue's folder; URLs stay as they are
    assert tuple(tee.images) == (str((base / "img/tee.png").resolve()),
                                 "https://cdn.example/t.jpg")
    assert tuple(tee.detail_images) == (str((base / "img/d1.png").resolve()),)
    assert tee.description == "夏季百搭" and tee.on_sale
    assert tuple(gift.skus) == (SkuSpec("GIFT", 15990, {}, "", 1800, True, 3),)
    assert not gift.on_sale


def test_csv(tmp_path: Path) -> None:
    parsed = read_catalogue(write_csv(tmp_path / "c.csv", HEADER, ROWS))
    assert parsed.problems == []
    check_products(parsed.products, tmp_path)


def test_xlsx(tmp_path: Path) -> None:
    rows: list[list[Any]] = [list(r) for r in ROWS]
    rows[0][3] = 99  # numbers come as numbers from a spreadsheet
    rows[2][3] = 159.9
    rows[2][6], rows[2][8] = 1800.0, 3
    parsed = read_catalogue(write_xlsx(tmp_path / "c.xlsx", HEADER, rows))
    assert parsed.problems == []
    check_products(parsed.products, tmp_path)


def test_json(tmp_path: Path) -> None:
    data = {"products": [
        {"merchant_code": "TEE", "title": "纯棉短袖T恤",
         "categories": {"taobao": "50000671", "douyin": 20001},
         "attributes": {"品牌": "3246379", "材质": "棉"},
         "images": ["img/tee.png", "https://cdn.example/t.jpg"], "detail_images": ["img/d1.png"],
         "description": "夏季百搭", "on_sale": True,
         "skus": [{"merchant_code": "TEE-M", "price": "99", "spec": {"尺码": "M"},
                   "barcode": "690100000001", "weight_g": 250},
                  {"merchant_code": "TEE-L", "price": 129, "spec": {"尺码": "L"},
                   "weight_g": 260, "bulky": False}]},
        {"merchant_code": "GIFT", "title": "坚果礼盒", "on_sale": False,
         "skus": [{"sku_code": "GIFT", "price": "159.90", "weight_g": 1800, "bulky": True,
                   "presale_days": 3}]},
    ]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    parsed = read_catalogue(path)
    assert parsed.problems == []
    check_products(parsed.products, tmp_path)


def test_every_bad_row_and_field_is_reported(tmp_path: Path) -> None:
    rows = [
        ["TEE", "T恤", "TEE-M", "9.999", "尺码M", "", "heavy", "maybe", "0", "taobao", "", "", "",
         "", ""],
        ["TEE", "另一个标题", "TEE-M", "0", "", "", "", "", "", "", "", "", "", "", ""],
        ["", "无编码", "X", "1", "", "", "", "", "", "", "", "", "", "", ""],
        ["CUP", "", "CUP-1", "abc", "", "", "-5", "", "", "", "", "", "", "", ""],
    ]
    parsed = read_catalogue(write_csv(tmp_path / "bad.csv", HEADER, rows))
    assert parsed.products == []
    assert [str(p) for p in parsed.problems] == [
        "line 2: price: '9.999' is not a price in yuan (more than two decimals: '9.999')",
        "line 2: weight_g: expected a whole number, got 'heavy'",
        "line 2: presale_days: 0 must be at least 1",
        "line 2: spec: '尺码M' is not name=value",
        "line 2: bulky: expected true/false, got 'maybe'",
        "line 2: categories: 'taobao' is not name=value",
        "line 3: title: differs from line 2 for product TEE (give product fields once, or the same)",
        "line 3: price: 0 must be above 0",
        "line 4: product_code: is required",
        "line 5: price: 'abc' is not a price in yuan (not an amount: 'abc')",
        "line 5: weight_g: -5 must be at least 0",
        "line 5: title: is required",
    ]


def test_duplicates_and_unknown_columns(tmp_path: Path) -> None:
    header = [*HEADER, "colour"]
    rows = [["A", "甲", "X-1", "1", *[""] * 11, "red"],
            ["B", "乙", "X-1", "2", *[""] * 11, ""]]
    parsed = read_catalogue(write_csv(tmp_path / "dup.csv", header, rows))
    assert [str(p) for p in parsed.problems] == [
        f"line 1: colour: unknown column (known: {', '.join(COLUMNS)})",
        "line 3: sku_code: SKU X-1 is given twice (also product A)",
    ]


def test_missing_columns_and_unsupported_files(tmp_path: Path) -> None:
    parsed = read_catalogue(write_csv(tmp_path / "m.csv", ["product_code", "title"], []))
    assert [str(p) for p in parsed.problems] == ["line 1: missing column(s) sku_code, price"]
    other = tmp_path / "c.txt"
    other.write_text("x")
    assert "use a .csv, .json or .xlsx file" in str(read_catalogue(other).problems[0])
    broken = tmp_path / "b.json"
    broken.write_text("{")
    assert "not valid JSON" in str(read_catalogue(broken).problems[0])


def test_json_shape_problems(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps([
        {"merchant_code": "A", "title": "甲", "skus": []},
        {"merchant_code": "B", "title": "乙", "colour": "red",
         "skus": [{"merchant_code": "B", "price": "1", "spec": ["M"], "size": "M"}]},
        "not an object",
    ]), encoding="utf-8")
    assert [str(p) for p in read_catalogue(path).problems] == [
        "products[0]: skus: expected a non-empty list of SKUs",
        "products[1]: colour: unknown field",
        "products[1].skus[0]: size: unknown field",
        "products[1].skus[0]: spec: expected name=value;… or an object, got list",
        "products[2]: expected an object",
    ]


@pytest.fixture
def sandbox(clock: ManualClock) -> TaobaoSandbox:
    return TaobaoSandbox(clock=clock)


async def test_import_applies_all_or_nothing(tmp_path: Path, sqlite_url: str, make_runtime: Any,
                                             sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    good = write_csv(tmp_path / "good.csv", HEADER, ROWS)
    async with transaction(rt.sessions) as session:
        report = await import_catalogue(session, good, rt.now())
    assert report.applied and (report.products, report.created, report.skus) == (2, 2, 3)

    bad_rows = [list(r) for r in ROWS]
    bad_rows[0][1] = "新标题"  # a good change…
    bad_rows[2][3] = "-1"  # …in a file with one bad row
    bad = write_csv(tmp_path / "bad.csv", HEADER, bad_rows)
    async with transaction(rt.sessions) as session:
        report = await import_catalogue(session, bad, rt.now())
    assert not report.applied
    assert [str(p) for p in report.problems] == ["line 4: price: -1 must be above 0"]
    async with rt.sessions() as session:
        assert await session.scalar(select(Product.title).where(
            Product.merchant_code == "TEE")) == "纯棉短袖T恤"

    async with transaction(rt.sessions) as session:
        dry = await import_catalogue(session, good, rt.now(), dry_run=True)
    assert not dry.applied and dry.problems == [] and dry.products == 2


async def test_a_sku_does_not_silently_change_product(tmp_path: Path, sqlite_url: str,
                                                      make_runtime: Any,
                                                      sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    async with transaction(rt.sessions) as session:
        await upsert_product(session, ProductSpec("OLD", "旧", (SkuSpec("TEE-M", 100),)), rt.now())
        report = await import_catalogue(session, write_csv(tmp_path / "c.csv", HEADER, ROWS),
                                        rt.now())
    assert [str(p) for p in report.problems] == [
        "product TEE: sku_code: SKU TEE-M belongs to product OLD in the catalogue"]


async def test_price_changes_reach_bound_listings_through_the_outbox(
        tmp_path: Path, db_url: str, clock: ManualClock, make_runtime: Any,
        sandbox: TaobaoSandbox) -> None:
    from core.listings import pull_listings
    from core.senders import OutboxWorker

    second = TaobaoSandbox(clock=clock, seed=2)
    for sb in (sandbox, second):
        sb.add_item("马克杯", "MUG", 3900, skus=[("MUG-W", 5, 3900), ("MUG-B", 5, 3900)])
    rt = await make_runtime(db_url, {"tb": sandbox, "tb2": second})
    header = ["product_code", "title", "sku_code", "price"]

    async def import_prices(white: str, black: str) -> int:
        path = write_csv(tmp_path / "p.csv", header, [["MUG", "马克杯", "MUG-W", white],
                                                      ["MUG", "", "MUG-B", black]])
        async with transaction(rt.sessions) as session:
            report = await import_catalogue(session, path, rt.now())
        assert report.problems == []
        return report.price_changes

    assert await import_prices("39", "39") == 0  # new SKUs: nothing is bound yet
    for shop in ("tb", "tb2"):
        await pull_listings(rt, shop, correct=False)
    # same price as the platforms: nothing to send
    assert await import_prices("39", "39") == 0
    # the price changes twice before the worker runs: one row per listing, newest wins
    assert await import_prices("45", "39") == 2  # MUG-W on both shops
    assert await import_prices("49", "39") == 2
    async with rt.sessions() as session:
        tasks = (await session.scalars(select(OutboxTask).where(
            OutboxTask.kind == "price").order_by(OutboxTask.id))).all()
        assert [(t.payload["price_fen"], t.version, t.state) for t in tasks] == [
            (4900, 2, "pending"), (4900, 2, "pending")]
    stats = await OutboxWorker(rt).drain(kinds=["price"])
    assert stats.sent == 2 and stats.calls_by_kind["price"] == 2
    for sb in (sandbox, second):
        _, sku = sb.find_sku("MUG-W")
        assert sku is not None and sku.price_fen == 4900
        assert len(sb.calls("taobao.item.sku.update")) == 1  # 45 was never sent
    # back to 39 once 49 was sent: sent again; the same prices again send nothing
    assert await import_prices("39", "39") == 2
    await OutboxWorker(rt).drain(kinds=["price"])
    assert await import_prices("39", "39") == 0
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxTask).where(
            OutboxTask.kind == "price", OutboxTask.state != "done")) == 0
    assert [sb.find_sku("MUG-W")[1].price_fen for sb in (sandbox, second)] == [3900, 3900]  # type: ignore[union-attr]
