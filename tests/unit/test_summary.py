"""The daily summary: when it is due (local time, daylight saving, once a day) and what it says."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

from bot.services.summary import DailySummary, day_start, summary_day
from bot.telegram.events import summary_text
from engine.catalog import default_instrument
from engine.controls import ControlSource, PairControl, PairState
from engine.domain import QualityScore, ScoredSetup, Setup, Side, SignalStatus
from engine.ports import SignalRecord
from engine.trading import ExitReason, Trade, TradeKind

AT = time(18, 0)
LONDON = "Europe/London"


def test_due_after_its_local_time_once_per_local_day_across_daylight_saving() -> None:
    summer = datetime(2025, 6, 10, 16, 59, tzinfo=UTC)  # 17:59 BST
    assert summary_day(summer, AT, LONDON, None) is None
    assert summary_day(summer.replace(minute=0, hour=17), AT, LONDON, None) == date(2025, 6, 10)  # 18:00 BST
    assert summary_day(summer.replace(hour=17), AT, LONDON, date(2025, 6, 10)) is None  # already sent today
    winter = datetime(2025, 12, 10, 17, 59, tzinfo=UTC)  # 17:59 GMT
    assert summary_day(winter, AT, LONDON, date(2025, 12, 9)) is None
    assert summary_day(winter.replace(hour=18, minute=0), AT, LONDON, date(2025, 12, 9)) == date(2025, 12, 10)
    # Tokyo's 18:00 is 09:00 UTC; at 23:30 UTC it is already the next local day, before its 18:00.
    assert summary_day(datetime(2025, 6, 10, 23, 30, tzinfo=UTC), AT, "Asia/Tokyo", date(2025, 6, 10)) is None


def test_day_start_is_local_midnight_in_utc() -> None:
    assert day_start(date(2025, 6, 10), LONDON) == datetime(2025, 6, 9, 23, 0, tzinfo=UTC)
    assert day_start(date(2025, 12, 10), LONDON) == datetime(2025, 12, 10, 0, 0, tzinfo=UTC)


def scored_setup() -> ScoredSetup:
    d = Decimal
    setup = Setup(
        "trend_pullback",
        "EURUSD",
        Side.LONG,
        d("1.10000"),
        d("1.09000"),
        (d("1.12000"),),
        datetime(2025, 6, 10, 8, tzinfo=UTC),
        default_instrument("EURUSD").interval,
        ("test",),
    )
    return ScoredSetup(setup, QualityScore(70.0, ()))


def trade(symbol: str, pnl: str | None, side: Side = Side.LONG) -> Trade:
    t = Trade(
        trade_id=f"t-{symbol}-{pnl}",
        signal_id=f"s-{symbol}-{pnl}",
        kind=TradeKind.PAPER,
        strategy="trend_pullback",
        symbol=symbol,
        side=side,
        quantity=Decimal("0.10"),
        contract_size=Decimal(100000),
        entry_time=datetime(2025, 6, 10, 9, tzinfo=UTC),
        entry_price=Decimal("1.10000"),
        stop=Decimal("1.09000") if side is Side.LONG else Decimal("1.11000"),
        target=Decimal("1.12000") if side is Side.LONG else Decimal("1.08000"),
    )
    if pnl is None:
        return t
    price = Decimal("1.10000") + Decimal(pnl) / Decimal(10000)
    return t.closed(datetime(2025, 6, 10, 12, tzinfo=UTC), price, ExitReason.TARGET, Decimal(0))


def test_text_lists_trades_pnl_win_rate_positions_controls_protections_and_dropped_reasons() -> None:
    closed = [trade("EURUSD", "100"), trade("GBPUSD", "-50"), trade("USDJPY", "30")]
    dropped = [
        SignalRecord(scored_setup(), SignalStatus.DROPPED, 1, datetime(2025, 6, 10, 9, tzinfo=UTC), reason=reason)
        for reason in ("max open positions: 5 open", "max open positions: 5 open", "news embargo: USD CPI")
    ]
    control = PairControl(
        "trend_pullback", "XAUUSD", PairState.DISABLED, ControlSource.DRIFT, "drift CRITICAL", datetime.now(UTC), 1
    )
    summary = DailySummary(
        day=date(2025, 6, 10),
        timezone=LONDON,
        closed=closed,
        pnl=sum((t.pnl or Decimal(0) for t in closed), Decimal(0)),
        currency="USD",
        open_trades=[trade("AUDUSD", None, Side.SHORT)],
        dropped=dropped,
        protections=["daily loss limit reached: -312.00 of -300.00"],
        drift=[],
        controls={("trend_pullback", "XAUUSD"): control},
    )
    text = summary_text(summary)
    assert "Daily summary Tue 10 Jun 2025" in text
    assert "trades closed: 3 · won 2 (67%) · P&amp;L +80.00 USD" in text
    assert "open positions: 1 (AUDUSD short)" in text
    assert "turned off: trend_pullback on XAUUSD (disabled)" in text
    assert "protections now: daily loss limit reached" in text
    assert "signals dropped today: 3 (max open positions ×2; news embargo ×1)" in text
    assert "drift: no baselines to compare with" in text
