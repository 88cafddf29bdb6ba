"""The `erpsync` command line. Every command runs one event loop; exit codes: 0 ok,
1 something failed, 2 bad usage, configuration or data."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from core import logs
from core.cli import admin, alerts, catalog, daemon, demo, orders, shipping, simulate, stock
from core.cli import listings as listings_commands

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="erpsync: many shops, one stock pool, one order book.")


@app.callback()
def main_options(
    json_logs: Annotated[bool | None, typer.Option("--json-logs/--console-logs",
                                                   help="Log format (default: by TTY).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    logs.configure(json=json_logs, level=logging.DEBUG if verbose else logging.WARNING)


admin.register(app)
app.add_typer(orders.app, name="orders")
app.add_typer(stock.app, name="stock")
app.add_typer(listings_commands.app, name="listings")
app.add_typer(catalog.app, name="catalog")
app.add_typer(alerts.app, name="alerts")
app.add_typer(simulate.app, name="simulate")
shipping.register(app)
demo.register(app)
daemon.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
