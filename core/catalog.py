"""The master catalogue: products and their SKUs, keyed by merchant code, and its import.

A product carries what every platform listing is built from: title, category per platform,
attributes, main and detail images, description, and whether it should be on sale; each SKU
its merchant code, barcode, spec (colour/size…), price, weight, bulky flag and presale
promise. `erpsync catalog import FILE` reads CSV, JSON or XLSX and checks the whole file
first: every row/field problem is reported with its place and nothing is applied unless the
file is clean, so a half-imported catalogue never reaches the platforms.

A price change is the catalogue's to announce: `upsert_product` queues it to every bound
listing in the same transaction (`core.listings.queue_price_updates`), so a price edited
here cannot be forgotten on a channel.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.model import Product, Sku
from core.money import MoneyError, yuan_to_fen


@dataclass(frozen=True, slots=True)
class SkuSpec:
    merchant_code: str
    price_fen: int
    spec: Mapping[str, str] = field(default_factory=dict)
    barcode: str = ""
    weight_g: int = 0
    bulky: bool = False
    presale_days: int | None = None


@dataclass(frozen=True, slots=True)
class ProductSpec:
    merchant_code: str
    title: str
    skus: Sequence[SkuSpec]
    categories: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    images: Sequence[str] = ()
    detail_images: Sequence[str] = ()
    description: str = ""
    on_sale: bool = True


async def upsert_product(session: AsyncSession, spec: ProductSpec, now: datetime) -> Product:
    """Create or update a product and its SKUs (SKUs absent from `spec` are kept). A changed
    price is queued to the SKU's bound listings in this transaction."""
    return (await _upsert(session, spec, now))[0]


async def _upsert(session: AsyncSession, spec: ProductSpec, now: datetime) -> tuple[Product, int]:
    """The product, and how many price updates were queued."""
    from core.listings import queue_price_updates

    product = await session.scalar(select(Product).where(
        Product.merchant_code == spec.merchant_code))
    if product is None:
        product = Product(merchant_code=spec.merchant_code, created_at=now)
        session.add(product)
    product.title = spec.title
    product.description = spec.description
    product.categories = dict(spec.categories)
    product.attributes = dict(spec.attributes)
    product.images = list(spec.images)
    product.detail_images = list(spec.detail_images)
    product.on_sale = spec.on_sale
    product.updated_at = now
    await session.flush()
    repriced: set[int] = set()
    for sku_spec in spec.skus:
        sku = await session.scalar(select(Sku).where(Sku.merchant_code == sku_spec.merchant_code))
        if sku is None:
            sku = Sku(merchant_code=sku_spec.merchant_code, product_id=product.id, created_at=now)
            session.add(sku)
        elif sku.price_fen != sku_spec.price_fen:
            repriced.add(sku.id)
        sku.product_id = product.id
        sku.price_fen = sku_spec.price_fen
        sku.spec = dict(sku_spec.spec)
        sku.barcode = sku_spec.barcode
        sku.weight_g = sku_spec.weight_g
        sku.bulky = sku_spec.bulky
        sku.presale_days = sku_spec.presale_days
        sku.updated_at = now
    await session.flush()
    queued = await queue_price_updates(session, repriced, now) if repriced else 0
    return product, queued


def spec_of(product: Product) -> ProductSpec:
    """The catalogue record of a stored product (its SKUs must be loaded)."""
    return ProductSpec(
        merchant_code=product.merchant_code, title=product.title,
        skus=tuple(SkuSpec(s.merchant_code, s.price_fen, dict(s.spec), s.barcode, s.weight_g,
                           s.bulky, s.presale_days)
                   for s in sorted(product.skus, key=lambda s: s.id)),
        categories={str(k): str(v) for k, v in product.categories.items()},
        attributes=dict(product.attributes), images=tuple(product.images),
        detail_images=tuple(product.detail_images), description=product.description,
        on_sale=product.on_sale)


async def load_products(session: AsyncSession,
                        codes: Iterable[str] | None = None) -> list[Product]:
    query = select(Product).options(selectinload(Product.skus)).order_by(Product.merchant_code)
    if codes is not None:
        query = query.where(Product.merchant_code.in_(list(codes)))
    return list((await session.scalars(query)).all())


# -- import ------------------------------------------------------------------------------------
COLUMNS = ("product_code", "title", "sku_code", "price", "spec", "barcode", "weight_g", "bulky",
           "presale_days", "categories", "attributes", "images", "detail_images",
           "description", "on_sale")
REQUIRED_COLUMNS = ("product_code", "sku_code", "price")
# product-level columns: given on a product's first row, blank or equal on the others
PRODUCT_COLUMNS = ("title", "categories", "attributes", "images", "detail_images",
                   "description", "on_sale")
_TRUE = {"true", "yes", "y", "1", "是"}
_FALSE = {"false", "no", "n", "0", "否"}


@dataclass(frozen=True, slots=True)
class RowProblem:
    where: str  # "line 4" (CSV/XLSX) or "products[2].skus[0]" (JSON)
    field: str
    message: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.where}: {self.field}: {self.message}"
        return f"{self.where}: {self.message}"


@dataclass(slots=True)
class CatalogueFile:
    products: list[ProductSpec] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)


@dataclass(slots=True)
class ImportReport:
    products: int = 0
    created: int = 0
    skus: int = 0
    price_changes: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    applied: bool = False


class _Fields:
    """Parses one record's values (strings from CSV/XLSX, typed values from JSON) and
    collects problems instead of stopping at the first."""

    def __init__(self, where: str, problems: list[RowProblem], base: Path) -> None:
        self.where = where
        self.problems = problems
        self.base = base

    def problem(self, name: str, message: str) -> None:
        self.problems.append(RowProblem(self.where, name, message))

    def text(self, value: Any, name: str, *, required: bool = False) -> str:
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.problem(name, "is required")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(name, f"expected text, got {type(value).__name__}")
            return ""
        return str(value).strip()

    def price(self, value: Any, name: str = "price") -> int | None:
        text = self.text(value, name, required=True)
        if not text:
            return None
        try:
            fen = yuan_to_fen(text)
        except MoneyError as exc:
            self.problem(name, f"{text!r} is not a price in yuan ({exc})")
            return None
        if fen <= 0:
            self.problem(name, f"{text} must be above 0")
            return None
        return fen

    def integer(self, value: Any, name: str, *, minimum: int = 0) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, float) and value.is_integer():  # XLSX numbers come as floats
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.problem(name, f"expected a whole number, got {value!r}")
            return None
        try:
            number = int(str(value).strip())
        except ValueError:
            self.problem(name, f"expected a whole number, got {value!r}")
            return None
        if number < minimum:
            self.problem(name, f"{number} must be at least {minimum}")
            return None
        return number

    def boolean(self, value: Any, name: str, default: bool) -> bool:
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        self.problem(name, f"expected true/false, got {value!r}")
        return default

    def pairs(self, value: Any, name: str) -> dict[str, str]:
        """`颜色=红;尺码=M` in a cell, or an object in JSON."""
        if value is None or value == "":
            return {}
        if isinstance(value, Mapping):
            items = [(str(k).strip(), v) for k, v in value.items()]
        elif isinstance(value, str):
            items = []
            for part in (p for p in value.split(";") if p.strip()):
                key, sep, val = part.partition("=")
                if not sep or not key.strip():
                    self.problem(name, f"{part.strip()!r} is not name=value")
                    continue
                items.append((key.strip(), val.strip()))
        else:
            self.problem(name, f"expected name=value;… or an object, got {type(value).__name__}")
            return {}
        found: dict[str, str] = {}
        for key, val in items:
            if key in found:
                self.problem(name, f"{key!r} is given twice")
            if isinstance(val, bool) or not isinstance(val, str | int | float):
                self.problem(name, f"{key}: expected text, got {type(val).__name__}")
                continue
            found[key] = str(val).strip()
        return found

    def files(self, value: Any, name: str) -> list[str]:
        """`a.jpg;b.jpg` or a list; relative paths are taken from the file's folder."""
        if value is None or value == "":
            return []
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(";") if p.strip()]
        elif isinstance(value, list) and all(isinstance(p, str) for p in value):
            parts = [p.strip() for p in value if p.strip()]
        else:
            self.problem(name, "expected file names separated by ';' or a list of text")
            return []
        return [p if p.startswith(("http://", "https://")) or Path(p).is_absolute()
                else str((self.base / p).resolve()) for p in parts]


@dataclass(slots=True)
class _Draft:
    where: str
    code: str
    fields: dict[str, Any]
    skus: list[SkuSpec] = field(default_factory=list)


def read_catalogue(path: Path) -> CatalogueFile:
    """Parse and check a catalogue file whole; nothing touches the database."""
    suffix = path.suffix.lower()
    result = CatalogueFile()
    try:
        if suffix == ".json":
            _read_json(path, result)
        elif suffix in (".csv", ".xlsx"):
            rows = _csv_rows(path) if suffix == ".csv" else _xlsx_rows(path)
            _read_rows(path, rows, result)
        else:
            result.problems.append(RowProblem(str(path), "", "use a .csv, .json or .xlsx file"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        result.problems.append(RowProblem(str(path), "", f"cannot be read: {exc}"))
    if result.problems:
        result.products = []
        result.problems.sort(key=_line)  # in file order, product-level checks included
    return result


def _line(problem: RowProblem) -> int:
    where = problem.where
    return int(where[5:]) if where.startswith("line ") and where[5:].isdigit() else 0


def _csv_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        rows = list(reader)
    return _table(rows)


def _xlsx_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        rows = [["" if cell is None else cell for cell in row]
                for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()
    return _table(rows)


def _table(rows: list[list[Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, column -> value); the header row is line 1 and is returned as line 0
    holding the column names."""
    if not rows:
        return []
    header = [str(h).strip() for h in rows[0]]
    table: list[tuple[int, dict[str, Any]]] = [(0, {h: h for h in header})]
    for number, row in enumerate(rows[1:], start=2):
        if all(str(v).strip() == "" for v in row):
            continue
        table.append((number, {h: (row[i] if i < len(row) else "")
                               for i, h in enumerate(header) if h}))
    return table


def _read_rows(path: Path, table: list[tuple[int, dict[str, Any]]],
               result: CatalogueFile) -> None:
    problems = result.problems
    if not table:
        problems.append(RowProblem("line 1", "", "the file is empty (a header row is required)"))
        return
    header = list(table[0][1])
    for name in header:
        if name not in COLUMNS:
            problems.append(RowProblem("line 1", name, f"unknown column (known: {', '.join(COLUMNS)})"))
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(RowProblem("line 1", "", f"missing column(s) {', '.join(missing)}"))
        return
    drafts: dict[str, _Draft] = {}
    for number, row in table[1:]:
        fields = _Fields(f"line {number}", problems, path.parent)
        code = fields.text(row.get("product_code"), "product_code", required=True)
        if not code:
            continue
        product = {name: row.get(name) for name in PRODUCT_COLUMNS if name in row}
        draft = drafts.get(code)
        if draft is None:
            drafts[code] = draft = _Draft(f"line {number}", code, product)
        else:
            for name, value in product.items():
                if str(value).strip() and str(value).strip() != str(
                        draft.fields.get(name, "")).strip():
                    fields.problem(name, f"differs from {draft.where} for product {code} "
                                         "(give product fields once, or the same)")
        sku = _sku(fields, row.get("sku_code"), row)
        if sku is not None:
            draft.skus.append(sku)
    result.products = _finish(path, list(drafts.values()), problems)


def _read_json(path: Path, result: CatalogueFile) -> None:
    problems = result.problems
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        problems.append(RowProblem(str(path.name), "", f"not valid JSON: {exc}"))
        return
    if isinstance(data, Mapping):
        data = data.get("products")
    if not isinstance(data, list):
        problems.append(RowProblem(path.name, "", 'expected a list of products or {"products": [...]}'))
        return
    drafts: list[_Draft] = []
    for index, entry in enumerate(data):
        where = f"products[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(RowProblem(where, "", "expected an object"))
            continue
        fields = _Fields(where, problems, path.parent)
        for key in entry:
            if key not in (*PRODUCT_COLUMNS, "merchant_code", "product_code", "skus"):
                fields.problem(str(key), "unknown field")
        code = fields.text(entry.get("merchant_code", entry.get("product_code")),
                           "merchant_code", required=True)
        draft = _Draft(where, code, {k: entry.get(k) for k in PRODUCT_COLUMNS if k in entry})
        skus = entry.get("skus")
        if not isinstance(skus, list) or not skus:
            fields.problem("skus", "expected a non-empty list of SKUs")
            skus = []
        for sku_index, sku_entry in enumerate(skus):
            sku_fields = _Fields(f"{where}.skus[{sku_index}]", problems, path.parent)
            if not isinstance(sku_entry, Mapping):
                sku_fields.problem("", "expected an object")
                continue
            for key in sku_entry:
                if key not in ("merchant_code", "sku_code", "price", "spec", "barcode",
                               "weight_g", "bulky", "presale_days"):
                    sku_fields.problem(str(key), "unknown field")
            sku = _sku(sku_fields, sku_entry.get("merchant_code", sku_entry.get("sku_code")),
                       sku_entry)
            if sku is not None:
                draft.skus.append(sku)
        if code:
            drafts.append(draft)
    result.products = _finish(path, drafts, problems)


def _sku(fields: _Fields, code_value: Any, row: Mapping[str, Any]) -> SkuSpec | None:
    code = fields.text(code_value, "sku_code", required=True)
    price = fields.price(row.get("price"))
    weight = fields.integer(row.get("weight_g"), "weight_g")
    presale = fields.integer(row.get("presale_days"), "presale_days", minimum=1)
    spec = fields.pairs(row.get("spec"), "spec")
    bulky = fields.boolean(row.get("bulky"), "bulky", False)
    barcode = fields.text(row.get("barcode"), "barcode")
    if not code or price is None:
        return None
    return SkuSpec(code, price, spec, barcode, weight or 0, bulky, presale)


def _finish(path: Path, drafts: list[_Draft], problems: list[RowProblem]) -> list[ProductSpec]:
    products: list[ProductSpec] = []
    seen_products: dict[str, str] = {}
    seen_skus: dict[str, str] = {}
    for draft in drafts:
        fields = _Fields(draft.where, problems, path.parent)
        if draft.code in seen_products:
            fields.problem("merchant_code", f"product {draft.code} also at {seen_products[draft.code]}")
        seen_products.setdefault(draft.code, draft.where)
        for sku in draft.skus:
            if sku.merchant_code in seen_skus:
                fields.problem("sku_code", f"SKU {sku.merchant_code} is given twice "
                                           f"(also {seen_skus[sku.merchant_code]})")
            seen_skus.setdefault(sku.merchant_code, f"product {draft.code}")
        values = draft.fields
        title = fields.text(values.get("title"), "title", required=True)
        categories = fields.pairs(values.get("categories"), "categories")
        attributes = fields.pairs(values.get("attributes"), "attributes")
        products.append(ProductSpec(
            merchant_code=draft.code, title=title, skus=tuple(draft.skus),
            categories=categories, attributes=attributes,
            images=tuple(fields.files(values.get("images"), "images")),
            detail_images=tuple(fields.files(values.get("detail_images"), "detail_images")),
            description=fields.text(values.get("description"), "description"),
            on_sale=fields.boolean(values.get("on_sale"), "on_sale", True)))
    return products


async def check_against_stored(session: AsyncSession,
                               products: Sequence[ProductSpec]) -> list[RowProblem]:
    """A SKU moves between products only on purpose: one stored under another product is a
    problem, not a silent re-parenting."""
    codes = {sku.merchant_code: p.merchant_code for p in products for sku in p.skus}
    if not codes:
        return []
    stored = (await session.execute(
        select(Sku.merchant_code, Product.merchant_code).join(Product, Product.id == Sku.product_id)
        .where(Sku.merchant_code.in_(list(codes))))).all()
    return [RowProblem(f"product {codes[sku]}", "sku_code",
                       f"SKU {sku} belongs to product {owner} in the catalogue")
            for sku, owner in stored if owner != codes[sku]]


async def import_catalogue(session: AsyncSession, path: Path, now: datetime, *,
                           dry_run: bool = False) -> ImportReport:
    """Check the whole file, then apply it in the caller's transaction (all or nothing)."""
    parsed = read_catalogue(path)
    report = ImportReport(problems=list(parsed.problems))
    if not report.problems:
        report.problems += await check_against_stored(session, parsed.products)
    if report.problems or dry_run:
        report.products = len(parsed.products)
        report.skus = sum(len(p.skus) for p in parsed.products)
        return report
    existing = set((await session.scalars(select(Product.merchant_code).where(
        Product.merchant_code.in_([p.merchant_code for p in parsed.products])))).all())
    for spec in parsed.products:
        report.price_changes += (await _upsert(session, spec, now))[1]
        report.products += 1
        report.skus += len(spec.skus)
        report.created += spec.merchant_code not in existing
    report.applied = True
    return report
