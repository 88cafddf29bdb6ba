"""Serving an ASGI app over real HTTP with uvicorn, for the daemon's listener, the demo's
sandboxes and the simulator: one way, with the details that matter on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL (port 0: any free port).

    The socket is made with proto IPPROTO_TCP: asyncio turns TCP_NODELAY on only for such
    sockets, and without it every small response waits for the client's delayed ACK
    (~44 ms per loopback round trip instead of ~1 ms)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           access_log=False))
    # the daemon handles SIGTERM/SIGINT itself: uvicorn's capture would swallow the first
    # signal and raise it again when it stops, which reads as a second signal
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task
        sock.close()
