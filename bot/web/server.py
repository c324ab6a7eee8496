"""The dashboard's HTTP side: the page, the equity chart, the emergency stop, and who may see them.

Security:
- Bound to 127.0.0.1 by default. On any other address every request needs a token issued by
  `tradebot web token` (only its SHA-256 is stored, in the bot's database): `Authorization: Bearer <token>`, or
  the `tradebot_web` cookie that `/dashboard/login?token=...` sets (HttpOnly, SameSite=Strict). Anything else
  is 401 and changes nothing.
- Every state-changing request (the emergency stop) carries the page's CSRF token, checked in constant time.
- No secret or token is ever rendered: the page shows the bot's state only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web

from bot.config import Settings
from bot.sandbox.listen import listen
from bot.services.dashboard import Dashboard, EquityPoint
from bot.services.runtime import BotRuntime
from engine.ports import KeyValueState

log = logging.getLogger(__name__)

HERE: Final = Path(__file__).parent
TOKENS_KEY: Final = "web.token_hashes"  # bot_state: JSON list of SHA-256 hex digests of the issued tokens
COOKIE: Final = "tradebot_web"
CHART_W, CHART_H = 640, 180


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(state: KeyValueState) -> str:
    """A new dashboard token; only its digest is kept. Printed once by `tradebot web token`."""
    token = secrets.token_urlsafe(32)
    known = json.loads(await state.get_state(TOKENS_KEY) or "[]")
    await state.set_state(TOKENS_KEY, json.dumps([*known, token_digest(token)]))
    return token


async def token_digests(state: KeyValueState) -> frozenset[str]:
    return frozenset(json.loads(await state.get_state(TOKENS_KEY) or "[]"))


class DashboardSite:
    """The dashboard's routes on an aiohttp application; `require_token` on any non-loopback address."""

    def __init__(self, dashboard: Dashboard, state: KeyValueState, *, require_token: bool, banner: str = "") -> None:
        self.dashboard = dashboard
        self.state = state
        self.require_token = require_token
        self.banner = banner
        self.csrf = secrets.token_urlsafe(32)
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
        )

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/dashboard", self.page)
        app.router.add_get("/dashboard/login", self._login)
        app.router.add_post("/dashboard/stop", self.stop)

    async def page(self, request: web.Request) -> web.StreamResponse:
        return await self._guard(self._page)(request)

    async def login(self, request: web.Request) -> web.StreamResponse:
        return await self._login(request)

    async def stop(self, request: web.Request) -> web.StreamResponse:
        return await self._guard(self._stop)(request)

    def _guard(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[..., Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.require_token and not await self._authorised(request):
                raise web.HTTPUnauthorized(text="401: log in with a token from `tradebot web token`")
            return await handler(request)

        return guarded

    async def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        given = (
            header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else request.cookies.get(COOKIE, "")
        )
        if not given:
            return False
        digest = token_digest(given)
        return any(secrets.compare_digest(digest, known) for known in await token_digests(self.state))

    async def _login(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        if not token or not any(
            secrets.compare_digest(token_digest(token), known) for known in await token_digests(self.state)
        ):
            raise web.HTTPUnauthorized(text="401: that token is not one `tradebot web token` issued")
        response = web.HTTPSeeOther("/dashboard")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/dashboard")
        raise response

    async def _page(self, request: web.Request) -> web.Response:
        view = await self.dashboard.view()
        html = self._templates.get_template("dashboard.html").render(
            v=view,
            csrf=self.csrf,
            banner=self.banner,
            chart=equity_chart(view.equity),
            money=_money,
            notice=request.query.get("notice", ""),
        )
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _stop(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not secrets.compare_digest(str(form.get("csrf", "")), self.csrf):
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the dashboard")
        if form.get("confirm") != "STOP":
            raise web.HTTPBadRequest(text="type STOP to confirm the emergency stop")
        done = await self.dashboard.emergency_stop()
        raise web.HTTPSeeOther(f"/dashboard?notice={_quote(done)}")


def _quote(text: str) -> str:
    from urllib.parse import quote  # noqa: PLC0415

    return quote(text, safe="")


def _money(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:+,.2f}"


def equity_chart(points: Sequence[EquityPoint]) -> dict[str, str]:
    """SVG polylines (equity above, drawdown below) of the realised equity, drawn offline: no chart library."""
    if len(points) < 2:
        return {"equity": "", "drawdown": "", "low": "", "high": ""}
    values = [float(p.equity) for p in points]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = CHART_W / (len(points) - 1)
    equity = " ".join(
        f"{i * step:.1f},{CHART_H - (v - low) / span * (CHART_H - 10) - 5:.1f}" for i, v in enumerate(values)
    )
    worst = max(float(p.drawdown) for p in points) or 1.0
    drawdown = " ".join(f"{i * step:.1f},{float(p.drawdown) / worst * 60:.1f}" for i, p in enumerate(points))
    return {"equity": equity, "drawdown": drawdown, "low": f"{low:,.2f}", "high": f"{high:,.2f}"}


async def start_dashboard(runtime: BotRuntime, settings: Settings) -> Callable[[], Awaitable[None]] | None:
    """`tradebot run` with `[web] enabled`: serve the dashboard on its own address, or say why not."""
    w = settings.web
    require = not is_loopback(w.host)
    if require and not await token_digests(runtime.store):
        log.error("dashboard not started: %s is not loopback and no token exists (run `tradebot web token`)", w.host)
        return None
    site = DashboardSite(Dashboard(runtime), runtime.store, require_token=require)
    app = web.Application(client_max_size=16 * 1024)
    site.add_routes(app)
    runner, port = await listen(app, w.port, host=w.host)
    log.warning("dashboard at http://%s:%d/dashboard%s", w.host, port, " (token required)" if require else "")
    return runner.cleanup
