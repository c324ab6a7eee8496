"""An in-process fake of ForexFactory's weekly calendar feed, served over real HTTP on 127.0.0.1.

async with FakeNewsFeed(body=FF_WEEK) as feed:
    source = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path)
    ...
    feed.status = 503          # later requests fail with Service Unavailable
    assert feed.requests == 1  # how many GETs reached the server
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from tests.fakes.local_http import listen

FEED_PATH: Final = "/ff_calendar_thisweek.json"


class FakeNewsFeed:
    """Serves `body` at `FEED_PATH` with `status`, counting requests; both may be changed between requests."""

    def __init__(self, body: str = "[]", status: int = 200) -> None:
        self.body = body
        self.status = status
        self.requests = 0
        self._port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Return the feed URL (after start)."""
        if not self._port:
            raise RuntimeError("FakeNewsFeed is not started")
        return f"http://127.0.0.1:{self._port}{FEED_PATH}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        return web.Response(status=200, text=self.body, content_type="application/json")

    async def start(self) -> FakeNewsFeed:
        """Start listening on an ephemeral port on the running event loop."""
        app = web.Application()
        app.router.add_get(FEED_PATH, self._handle)
        self._runner, self._port = await listen(app)
        return self

    async def stop(self) -> None:
        """Stop listening."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeNewsFeed:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
