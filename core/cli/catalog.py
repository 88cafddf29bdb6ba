"""The master catalogue: import (CSV, JSON, XLSX) and show."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.cli.common import ConfigOption, console, err, in_runtime, load_config
from core.config import DEFAULT_CONFIG

app = typer.Typer(no_args_is_help=True, help="The master catalogue.")


@app.command("import")
def catalog_import(file: Path, config: ConfigOption = DEFAULT_CONFIG,
                   dry_run: Annotated[bool, typer.Option(
                       "--dry-run", help="Check the file only.")] = False) -> None:
    """Products and SKUs from a CSV, JSON or XLSX file, checked whole first: nothing is
    applied unless every row is right. Changed prices are queued to the bound listings."""
    from core.catalog import import_catalogue
    from core.db import transaction

    cfg = load_config(config)
    if not file.is_file():
        err.print(f"[red]error[/red] {file}: no such file")
        raise typer.Exit(2)

    async def go(rt: Any) -> int:
        async with transaction(rt.sessions) as session:
            report = await import_catalogue(session, file, rt.now(), dry_run=dry_run)
        for problem in report.problems:
            err.print(f"[red]{file.name}[/red] {problem}", highlight=False)
        if report.problems:
            err.print(f"nothing applied: {len(report.problems)} problem(s)")
            return 2
        if dry_run:
            console.print(f"{file.name} is clean: {report.products} products, "
                          f"{report.skus} SKUs (nothing applied)")
            return 0
        console.print(f"{report.products} products ({report.created} new), {report.skus} SKUs; "
                      f"{report.price_changes} listing price update(s) queued")
        return 0

    in_runtime(cfg, go)


@app.command("show")
def catalog_show(product: str, config: ConfigOption = DEFAULT_CONFIG) -> None:
    """One product with its SKUs."""
    from core.catalog import load_products
    from core.money import fen_to_yuan

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        async with rt.sessions() as session:
            found = await load_products(session, [product])
        if not found:
            err.print(f"[red]error[/red] no product {product!r}")
            return 2
        item = found[0]
        console.print(f"[bold]{item.merchant_code}[/bold] {item.title}"
                      f"{'' if item.on_sale else '  (off sale)'}")
        console.print("categories: " + (", ".join(f"{k}={v}" for k, v in item.categories.items())
                                        or "-"))
        console.print("attributes: " + (", ".join(f"{k}={v}" for k, v in item.attributes.items())
                                        or "-"))
        console.print(f"images: {len(item.images)}, detail images: {len(item.detail_images)}")
        table = Table("sku", "price", "spec", "barcode", "weight g", "bulky", "presale days")
        for sku in sorted(item.skus, key=lambda s: s.merchant_code):
            table.add_row(sku.merchant_code, fen_to_yuan(sku.price_fen),
                          "; ".join(f"{k}={v}" for k, v in sku.spec.items()), sku.barcode,
                          str(sku.weight_g), "yes" if sku.bulky else "",
                          "" if sku.presale_days is None else str(sku.presale_days))
        console.print(table)
        return 0

    in_runtime(cfg, go)
