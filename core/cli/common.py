"""What every command shares: consoles, config loading, one event loop, the runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from core.config import DEFAULT_CONFIG, Config, ConfigProblems, load

if TYPE_CHECKING:
    from core.plugins import Registry

T = TypeVar("T")
console = Console()
err = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="TOML config file.")]
ShopOption = Annotated[str | None, typer.Option("--shop", help="Only this shop.")]


def config_path(path: Path) -> Path:
    """The default config is looked up in the working directory, then in the checkout."""
    if path == DEFAULT_CONFIG and not path.exists():
        beside = Path(__file__).resolve().parents[2] / DEFAULT_CONFIG
        if beside.exists():
            return beside
    return path


def load_config(path: Path, *, check_env: bool = True, sections: bool = False) -> Config:
    """The config, or exit 2 printing every problem. With `sections` (the daemon, the demo,
    alert delivery and `config check`), `[alerts]` sinks and `[tracking]` are checked as
    well, with their secrets in the environment — so a daemon never starts on a sink or a
    tracking provider it could not use."""
    from core.plugins import Registry

    registry = Registry.discover()
    try:
        config = load(config_path(path), known_platforms=registry.platforms,
                      check_env=check_env)
        if sections:
            check_sections(config, registry)
        return config
    except ConfigProblems as problems:
        for problem in problems.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def check_sections(config: Config, registry: Registry) -> None:
    """`[alerts] sinks` and `[tracking]` as the daemon will build them; ConfigProblems
    naming every bad key of both."""
    import os

    import httpx

    from core.alerting import build_sinks
    from core.clock import SystemClock
    from core.errors import ConfigError
    from core.tracking import TrackingSettings

    problems: list[ConfigError] = []
    file = str(config.path)

    try:  # built, never used: nothing is sent
        build_sinks(config.alert_sinks, client=httpx.AsyncClient(), clock=SystemClock(),
                    environ=os.environ, file=file)
    except ConfigProblems as found:
        problems += found.problems
    try:
        tracking = TrackingSettings.from_config(config.tracking, file)
    except ConfigProblems as found:
        problems += found.problems
    else:
        if tracking is not None:
            try:
                registry.tracking_provider(tracking.provider)
            except KeyError:
                problems.append(ConfigError(file, "tracking.provider",
                                            f"{tracking.provider!r} is not an installed "
                                            "tracking provider"))
    if problems:
        raise ConfigProblems(problems)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def with_runtime(config: Config, body: Callable[[Any], Awaitable[T]]) -> T:
    """Open a Runtime on a current database (else exit 2 naming `erpsync db upgrade`)."""
    from core.db import OutOfDate, require_current
    from core.runtime import Runtime

    rt = Runtime(config)
    try:
        try:
            await require_current(rt.engine)
        except OutOfDate as exc:
            err.print(f"[red]error[/red] {exc}")
            raise typer.Exit(2) from None
        await rt.sync_shops()
        return await body(rt)
    finally:
        await rt.close()


def in_runtime(config: Config, body: Callable[[Any], Awaitable[int]]) -> None:
    """Run `body` with a runtime; its return value is the exit code."""
    code = run(with_runtime(config, body))
    if code:
        raise typer.Exit(code)


def parse_when(text: str | None) -> datetime | None:
    if text is None:
        return None
    from core.clock import BEIJING

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO time like 2026-11-10T08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)
