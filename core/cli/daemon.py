"""Running erpsync: the daemon, its status, the outbox, and sandboxes served on their own."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from core.cli.common import ConfigOption, console, err, in_runtime, load_config, run
from core.config import DEFAULT_CONFIG

outbox_app = typer.Typer(no_args_is_help=True, help="Tasks waiting to reach the platforms.")
sandbox_app = typer.Typer(no_args_is_help=True, help="Sandbox platforms for trials.")


def register(app: typer.Typer) -> None:
    app.command("run")(run_daemon)
    app.command("status")(status)
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(sandbox_app, name="sandbox")


def run_daemon(config: ConfigOption = DEFAULT_CONFIG,
               no_http: Annotated[bool, typer.Option("--no-http",
                                                     help="No HTTP listener.")] = False) -> None:
    """The daemon: every job of every shop on schedule; SIGTERM drains and exits 0."""
    from core.daemon import Daemon, SecondCopy

    cfg = load_config(config, sections=True)

    async def go(rt: Any) -> int:
        daemon = Daemon(rt, serve_http=not no_http)
        try:
            return await daemon.run(ready=lambda: err.print(
                f"erpsync daemon running: {len(rt.enabled_shops())} shops, node {rt.node}"
                + ("" if no_http else f", http://{cfg.daemon.listen_host}:"
                   f"{cfg.daemon.listen_port}")))
        except SecondCopy as exc:
            err.print(f"[red]error[/red] {exc}")
            return 2

    in_runtime(cfg, go)


def status(config: ConfigOption = DEFAULT_CONFIG,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per shop: last pull, cursor lag, outbox depth, failing tasks, token expiry, alerts."""
    from core.status import shop_status

    cfg = load_config(config, check_env=False)

    async def go(rt: Any) -> int:
        rows = await shop_status(rt)
        if as_json:
            console.print_json(json.dumps(rows, default=str))
            return 0
        table = Table("shop", "platform", "last pull", "cursor lag", "outbox", "failing",
                      "token expires", "open alerts", title="erpsync status")
        for row in rows:
            lag = row["cursor_lag_seconds"]
            lag_text = "-" if lag is None else str(timedelta(seconds=int(lag)))
            style = "red" if row["failing"] or (lag or 0) > 3600 else (
                "yellow" if row["open_alerts"] else "green")
            table.add_row(row["shop"], row["platform"], str(row["last_pull"] or "never"),
                          lag_text, str(row["outbox"]), str(row["failing"]),
                          str(row["token_expires"] or "-"), str(row["open_alerts"]), style=style)
        console.print(table)
        return 0

    in_runtime(cfg, go)


@outbox_app.command("list")
def outbox_list(config: ConfigOption = DEFAULT_CONFIG,
                state: Annotated[str | None, typer.Option(help="pending, sending, failed, done")] = None,
                limit: Annotated[int, typer.Option()] = 50) -> None:
    """Outbox tasks (failed ones with the platform's message)."""
    from sqlalchemy import select

    from core.model import OutboxTask

    cfg = load_config(config, check_env=False)

    async def go(rt: Any) -> int:
        query = select(OutboxTask).order_by(OutboxTask.id.desc()).limit(limit)
        query = query.where(OutboxTask.state == state) if state else query.where(
            OutboxTask.state != "done")
        async with rt.sessions() as session:
            tasks = (await session.scalars(query)).all()
        table = Table("id", "shop", "kind", "target", "version", "state", "attempts",
                      "next attempt", "last error")
        for task in tasks:
            table.add_row(str(task.id), rt.shop_name(task.shop_id), task.kind, task.target,
                          str(task.version), task.state, str(task.attempts),
                          # the platform's words, whole (they come last) and never markup
                          str(task.next_attempt_at), Text(task.last_error))
        console.print(table)
        return 0

    in_runtime(cfg, go)


def _set_state(config: Any, ids: list[int], state: str, verb: str) -> None:
    """Move failed (or pending) tasks to `state`. An id that does not exist, or a task in
    another state, is named and nothing is changed."""
    from sqlalchemy import select, update

    from core.alerts import resolve_alert
    from core.db import transaction
    from core.model import OutboxTask

    cfg = load_config(config, check_env=False)
    movable = ("failed", "pending")

    async def go(rt: Any) -> int:
        async with transaction(rt.sessions) as session:
            found = dict((await session.execute(
                select(OutboxTask.id, OutboxTask.state).where(OutboxTask.id.in_(ids)))).all())
            problems = [f"no outbox task {task_id}" if task_id not in found else
                        f"outbox task {task_id} is {found[task_id]}: only failed or pending "
                        "tasks can be " + verb
                        for task_id in dict.fromkeys(ids)
                        if found.get(task_id) not in movable]
            if problems:
                for problem in problems:
                    err.print(f"[red]error[/red] {problem}", highlight=False)
                return 2
            result = await session.execute(
                update(OutboxTask).where(OutboxTask.id.in_(ids), OutboxTask.state.in_(movable))
                .values(state=state, attempts=0, next_attempt_at=rt.now(), updated_at=rt.now()))
            if state == "dropped":  # the operator has decided: the refusal is no longer open
                for task_id in ids:
                    for kind in ("push_failed", "tracking_push_failed"):
                        await resolve_alert(session, kind, f"outbox:{task_id}", rt.now())
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        wanted = len(set(ids))
        console.print(f"{verb} {count} of {wanted} tasks")
        return 0 if count == wanted else 1  # a sender claimed one meanwhile

    in_runtime(cfg, go)


@outbox_app.command("retry")
def outbox_retry(ids: list[int], config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Send failed tasks again (after fixing what the platform refused)."""
    _set_state(config, ids, "pending", "queued again")


@outbox_app.command("drop")
def outbox_drop(ids: list[int], config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Give up on tasks; they stay listed as dropped."""
    _set_state(config, ids, "dropped", "dropped")


@sandbox_app.command("serve")
def sandbox_serve(config: ConfigOption = DEFAULT_CONFIG,
                  port: Annotated[int, typer.Option()] = 8471,
                  seed: Annotated[int, typer.Option()] = 11,
                  orders: Annotated[int, typer.Option(help="Orders per shop to start with.")] = 0
                  ) -> None:
    """Serve the config's sandbox shops at http://127.0.0.1:PORT/<shop> (with the demo
    catalogue), for `erpsync run` against them; `/_sandbox/...` is their operator API."""
    import asyncio

    from core.demo import build_sandboxes, place_orders
    from core.plugins import Registry
    from core.sandbox import serve

    cfg = load_config(config, check_env=False)
    sandboxes = build_sandboxes(cfg, Registry.discover(), seed)
    place_orders(sandboxes, seed, orders)

    async def go() -> None:
        async with serve(sandboxes, port=port) as urls:
            for name in sandboxes:
                console.print(f"{name}: {urls[name]}")
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        run(go())
