"""The HTTP listener's app: push intake, with room for whatever else the daemon serves.

`build_app(rt, routes=[...])` returns one Starlette app serving `POST /hooks/{platform}/{shop}`
plus the routes it is given (the daemon adds `/healthz` and `/metrics` the same way);
`core.serving.serve_asgi` runs it over HTTP.

A push is answered only after it is safe:

* unknown shop, a shop of another platform, or a platform that does not push → 404;
* `verify_push` says the signature is wrong → 401 and nothing is stored (a forged or
  misrouted request must leave no trace in the order book);
* it verified but does not parse (BadResponse) → the body goes to quarantine with an alert,
  and the platform gets its normal acknowledgement. Platforms redeliver what is not
  acknowledged — for hours, some for days — and a body that cannot parse now will not parse
  on the hundredth try either; it is kept, alerted and retriable by an operator instead;
* otherwise every event naming an order is written to the inbox, unique per (shop, event
  id) so redeliveries are ignored, and committed BEFORE the acknowledgement is sent. If the
  database is down the answer is 503 and the platform tries again later. The events are
  processed asynchronously by `core.intake.process_inbox`; `on_stored` (if given) is called
  after each commit so a running daemon can wake its intake job at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.db import insert_for, transaction
from core.errors import BadResponse, SignatureInvalid
from core.intake import event_to_json
from core.logs import get_logger
from core.model import InboxEvent
from core.quarantine import quarantine
from core.records import Capability, PushEvent
from core.runtime import Runtime

log = get_logger("erpsync.web")
MAX_BODY = 4 * 1024 * 1024  # platforms batch pushes, but none near this


def hook_path(platform: str, shop: str) -> str:
    """Where a shop's platform must send its pushes (register `http(s)://host` + this)."""
    return f"/hooks/{platform}/{shop}"


def build_app(rt: Runtime, routes: Sequence[BaseRoute] = (), *,
              on_stored: Callable[[], None] | None = None) -> Starlette:
    """One app: the push receiver plus `routes` (health, metrics, …) in front of it."""
    return Starlette(routes=[*routes, *hook_routes(rt, on_stored=on_stored)])


def hook_routes(rt: Runtime, *, on_stored: Callable[[], None] | None = None) -> list[BaseRoute]:
    async def receive(request: Request) -> Response:
        return await receive_push(rt, request, on_stored)

    return [Route("/hooks/{platform}/{shop}", receive, methods=["POST"])]


async def receive_push(rt: Runtime, request: Request,
                       on_stored: Callable[[], None] | None = None) -> Response:
    platform, shop = request.path_params["platform"], request.path_params["shop"]
    config = next((s for s in rt.enabled_shops() if s.name == shop), None)
    if config is None or config.platform != platform or shop not in rt.shop_ids:
        return _error(404, f"no {platform} shop named {shop!r} here")
    connector = rt.connector(shop)
    if Capability.PUSH_ORDERS not in connector.capabilities:
        return _error(404, f"{platform} does not push orders to erpsync")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return _error(413, "push body too large")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _error(413, "push body too large")
    shop_id = rt.shop_ids[shop]
    try:
        events = connector.verify_push(dict(request.headers), body)
    except SignatureInvalid as exc:
        log.warning("push refused", shop=shop, reason=str(exc))
        return _error(401, "signature does not verify")
    except BadResponse as exc:
        try:
            async with transaction(rt.sessions) as session:
                await quarantine(session, shop_id=shop_id, source="push",
                                 payload=exc.body or body, error=str(exc), now=rt.now(),
                                 reference=f"push:{hashlib.sha1(body).hexdigest()[:16]}")
        except SQLAlchemyError:
            log.exception("push not quarantined: database unavailable", shop=shop)
            return _error(503, "storage unavailable, send again later")
        return _ack(connector.push_ack([]))
    try:
        stored = await store_events(rt, shop_id, events, body)
    except SQLAlchemyError:
        log.exception("push not stored: database unavailable", shop=shop)
        return _error(503, "storage unavailable, send again later")
    if stored and on_stored is not None:
        on_stored()
    return _ack(connector.push_ack(events))


async def store_events(rt: Runtime, shop_id: int, events: Sequence[PushEvent],
                       body: bytes) -> int:
    """Write the events that name an order to the inbox; a redelivered event id is ignored.
    Returns how many were new."""
    rows: dict[str, dict[str, Any]] = {}
    text = body.decode("utf-8", errors="replace")
    now = rt.now()
    for event in events:
        order_id = event.order.platform_order_id if event.order else event.platform_order_id
        if not order_id:
            continue  # pings, heartbeats, events about other things: nothing to do
        event_id = event.event_id if len(event.event_id) <= 128 else (
            "sha1:" + hashlib.sha1(event.event_id.encode()).hexdigest())
        rows.setdefault(event_id, {
            "shop_id": shop_id, "event_id": event_id, "topic": event.topic[:64],
            "platform_order_id": order_id[:64], "body": text, "event": event_to_json(event),
            "state": "pending", "received_at": now, "attempts": 0, "error": ""})
    if not rows:
        return 0
    async with transaction(rt.sessions) as session:
        result = await session.execute(
            insert_for(session, InboxEvent).values(list(rows.values()))
            .on_conflict_do_nothing(index_elements=["shop_id", "event_id"]))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _ack(ack: Any) -> Response:
    return Response(ack.body, ack.status, media_type=ack.content_type)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)
