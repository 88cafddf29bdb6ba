"""Setting up: database, configuration, connectors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.cli.common import ConfigOption, console, err, load_config, run
from core.config import DEFAULT_CONFIG

db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration.")
connectors_app = typer.Typer(no_args_is_help=True, help="Installed platform connectors.")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(config_app, name="config")
    app.add_typer(connectors_app, name="connectors")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Apply pending migrations (run this first after every upgrade of erpsync)."""
    from core.db import create_engine, current_revision, head_revision, upgrade

    cfg = load_config(config, check_env=False)

    async def go() -> tuple[str | None, str]:
        engine = create_engine(cfg.database_url)
        try:
            before = await current_revision(engine)
            await upgrade(engine, cfg.database_url)
            return before, head_revision()
        finally:
            await engine.dispose()

    before, after = run(go())
    console.print(f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@config_app.command("check")
def config_check(path: Annotated[Path, typer.Argument()] = DEFAULT_CONFIG) -> None:
    """Report every problem in a config file, one line each."""
    cfg = load_config(path, sections=True)
    console.print(f"[green]ok[/green] {cfg.path}: {len(cfg.shops)} shops, database "
                  f"{cfg.database_url.split('@')[-1]}")


@connectors_app.command("list")
def connectors_list() -> None:
    """Installed connectors, their capabilities and where they came from."""
    from core.plugins import Registry

    registry = Registry.discover()
    table = Table("name", "version", "capabilities", "from")
    for name, found in sorted(registry.plugins.items()):
        caps = ", ".join(sorted(c.value for c in found.plugin.capabilities))
        table.add_row(name, found.version, caps, found.origin)
    console.print(table)
    for broken in registry.broken:
        err.print(f"[red]broken plugin[/red] {broken.name} ({broken.origin}): {broken.error}")


@connectors_app.command("new")
def connectors_new(
    name: Annotated[str, typer.Argument(help="Platform name, e.g. youzan (lower case).")],
    dest: Annotated[Path, typer.Option("--dest", help="Folder to create the package in.")] = Path(),
    title: Annotated[str | None, typer.Option("--title", help="Display name.")] = None,
) -> None:
    """Write a ready connector package erpsync-NAME/ whose contract tests say what to write."""
    from core.scaffold import ScaffoldError, scaffold

    try:
        made = scaffold(name, dest, title=title)
    except ScaffoldError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"[green]created[/green] {made.root} ({len(made.files)} files)", highlight=False)
    console.print(f"next: pip install -e {made.root} && python -m pytest {made.root}/tests  "
                  "(docs/writing-a-connector.md)", highlight=False)
