"""Start an aiohttp app on 127.0.0.1 (or another host): the embedded servers' shared start-up."""

from __future__ import annotations

import socket

from aiohttp import web


async def listen(
    app: web.Application, port: int = 0, *, host: str = "127.0.0.1", handler_cancellation: bool = False
) -> tuple[web.AppRunner, int]:
    """Serve `app` on `host`:`port` (0: an ephemeral port) on the running loop; return the runner and port.

    `handler_cancellation`: cancel a handler whose client hung up (a held long poll must not linger).
    """
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]
