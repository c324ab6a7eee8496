"""The owner's daily broker login (Kite): the link, the exchange, the morning reminder, the session's state.

Kite's session ends about 06:00 IST every day. On each NSE trading day with no valid session the owner is
reminded `remind_before` ahead of the open (once a day, also across restarts: the day is kept in the state
table). A session that ends early (Kite answered TokenException) is told once. Without a session, orders
routed to Kite are refused by the broker with the reason, so entries there wait for `/login`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Final, Protocol

from bot.services.events import Announcer, Notice, Tone
from engine.audit import AuditEvent, AuditKind, actor_of
from engine.calendars import SessionCalendar
from engine.ports import AuditLog, BrokerError, BrokerSession, Clock, DailyLogin, KeyValueState

log = logging.getLogger(__name__)

REMINDED_KEY: Final = "broker_login_reminded"  # the trading date of the last reminder


@dataclass(frozen=True)
class LoginDone:
    """A completed login: whose account, until when, and the funds it holds (None when unreadable now)."""

    session: BrokerSession
    funds: Decimal | None


class LoginStore(KeyValueState, AuditLog, Protocol):
    """The reminder's day and the audit trail's login lines."""


class BrokerLogin:
    """Lets the owner renew a broker's daily session from the chat, and reminds them before the open."""

    def __init__(
        self,
        broker: DailyLogin,
        state: LoginStore,
        announcer: Announcer,
        clock: Clock,
        calendar: SessionCalendar,
        *,
        remind_before: timedelta = timedelta(minutes=45),
    ) -> None:
        self.broker = broker
        self.state = state
        self.announcer = announcer
        self.clock = clock
        self.calendar = calendar
        self.remind_before = remind_before
        self._had_session = broker.current_session() is not None

    @property
    def link(self) -> str:
        return self.broker.login_url

    async def complete(self, text: str, by: int | None = None) -> LoginDone:
        """Exchange what the owner sent for today's session; ValueError or BrokerError say why not."""
        session = await self.broker.login_from(text)
        self._had_session = True
        until = f"session for {session.user_id} until {session.expires_at:%Y-%m-%d %H:%M}Z"
        await self.state.audit(AuditEvent(self.clock.now(), AuditKind.LOGIN, actor_of(by), session.broker, until))
        try:
            funds: Decimal | None = await self.broker.funds()
        except BrokerError as exc:
            log.warning("logged in to %s, but the funds could not be read: %s", session.broker, exc)
            funds = None
        log.info("%s session for %s until %s", session.broker, session.user_id, session.expires_at.isoformat())
        return LoginDone(session, funds)

    def status(self) -> str:
        """One line for /status and /health."""
        session = self.broker.current_session()
        if session is None:
            return f"{self.broker.name}: no session today: orders routed there are refused; log in with /login"
        who = f"{session.user_name} ({session.user_id})"
        return f"{self.broker.name}: logged in as {who} until {session.expires_at:%Y-%m-%d %H:%M}Z"

    async def check(self) -> None:
        """Remind before the open when there is no session, and tell once when a session ended early."""
        now = self.clock.now()
        session = self.broker.current_session()
        if session is not None:
            self._had_session = True
            return
        if self._had_session:
            self._had_session = False
            await self.announcer.announce(
                Notice(f"{self.broker.name} session ended: orders routed there are refused until /login")
            )
        day = now.astimezone(self.calendar.zone).date()  # the exchange's date: its session may not have begun
        hours = self.calendar.session(day)
        if hours is None:
            return
        opens, closes = hours
        if not opens - self.remind_before <= now < closes:
            return
        if await self.state.get_state(REMINDED_KEY) == day.isoformat():
            return
        await self.state.set_state(REMINDED_KEY, day.isoformat())
        await self.announcer.announce(
            Notice(
                f"{self.broker.name}: no session for today ({day:%a %d %b}); the market opens at "
                f"{opens.astimezone(self.calendar.zone):%H:%M} local. Log in with /login.",
                Tone.WAITING,
            )
        )
