"""Platform listings."""

from __future__ import annotations

from typing import Any

import typer

from core.cli.common import ConfigOption, ShopOption, console, in_runtime, load_config
from core.config import DEFAULT_CONFIG

app = typer.Typer(no_args_is_help=True, help="Platform listings.")


@app.command("pull")
def listings_pull(config: ConfigOption = DEFAULT_CONFIG, shop: ShopOption = None) -> None:
    """Read each platform's listings and bind them to SKUs by merchant code."""
    from core.listings import pull_listings

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        for item in rt.enabled_shops():
            if shop not in (None, item.name):
                continue
            stats = await pull_listings(rt, item.name)
            console.print(f"{item.name}: {stats.seen} listings, {stats.bound} bound, "
                          f"{len(stats.unbound)} without a SKU, {len(stats.missing_skus)} "
                          f"SKUs not listed, {stats.queued} corrections queued")
            for line in stats.unbound:
                console.print(f"  no SKU: {line}")
            for code in stats.missing_skus:
                console.print(f"  not listed here: {code}")
        return 0

    in_runtime(cfg, go)
