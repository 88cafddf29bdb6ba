"""Alerts: list, acknowledge, resolve by hand, deliver to the configured sinks."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from core.cli.common import ConfigOption, console, err, in_runtime, load_config
from core.config import DEFAULT_CONFIG

app = typer.Typer(no_args_is_help=True, help="Alerts.")


@app.command("list")
def alerts_list(
    config: ConfigOption = DEFAULT_CONFIG,
    show_all: Annotated[bool, typer.Option("--all", help="Resolved alerts too.")] = False,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. shipment_stalled.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 200,
) -> None:
    """Open alerts (newest first)."""
    from sqlalchemy import select

    from core.clock import format_beijing
    from core.model import Alert

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        query = select(Alert).order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(limit)
        if not show_all:
            query = query.where(Alert.open_key.is_not(None))
        if kind:
            query = query.where(Alert.kind == kind)
        async with rt.sessions() as session:
            rows = list((await session.scalars(query)).all())
        table = Table("id", "opened (Beijing)", "severity", "kind", "subject", "state",
                      "message", title="alerts" if show_all else "open alerts")
        for alert in rows:
            state = ("resolved" if alert.resolved_at else "acked" if alert.acked_at else "open")
            table.add_row(str(alert.id), format_beijing(alert.opened_at), alert.severity,
                          alert.kind, alert.subject, state, alert.message)
        console.print(table)
        return 0

    in_runtime(cfg, go)


@app.command("ack")
def alerts_ack(alert_id: Annotated[int, typer.Argument(metavar="ID")],
               config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Acknowledge an alert: someone is on it. It stays open until its condition clears."""
    _change(config, alert_id, "ack")


@app.command("resolve")
def alerts_resolve(alert_id: Annotated[int, typer.Argument(metavar="ID")],
                   config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Close an alert by hand. The same episode is not alerted again; a new one is."""
    _change(config, alert_id, "resolve")


def _change(config: Any, alert_id: int, action: str) -> None:
    from sqlalchemy import update

    from core.db import transaction
    from core.model import Alert

    cfg = load_config(config)

    async def go(rt: Any) -> int:
        now = rt.now()
        async with transaction(rt.sessions) as session:
            alert = await session.get(Alert, alert_id)
            if alert is None:
                err.print(f"[red]error[/red] no alert {alert_id}")
                return 2
            if alert.open_key is None:
                err.print(f"alert {alert_id} is already resolved")
                return 1
            values = ({"acked_at": now} if action == "ack"
                      else {"open_key": None, "resolved_at": now})
            await session.execute(update(Alert).where(Alert.id == alert_id,
                                                      Alert.open_key.is_not(None))
                                  .values(**values))
        console.print(f"alert {alert_id} {'acknowledged' if action == 'ack' else 'resolved'}")
        return 0

    in_runtime(cfg, go)


@app.command("deliver")
def alerts_deliver(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Send undelivered alerts and resolution notices to the sinks (the daemon's job)."""
    from core.alerting import deliver_alerts
    from core.errors import ConfigError

    cfg = load_config(config, sections=True)

    async def go(rt: Any) -> int:
        try:
            delivered = await deliver_alerts(rt)
        except ConfigError as exc:
            err.print(f"[red]error[/red] {exc}", highlight=False)
            return 2
        console.print(f"{delivered} alerts delivered")
        return 0

    in_runtime(cfg, go)
