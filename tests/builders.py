"""Builders for small hand-made bar series used by unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from engine.bars import Bars, to_nanos
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.domain import Instrument, Interval, QualityScore, ScoredSetup, Setup, Side
from engine.indicators import MarketContext
from engine.ports import BotStore
from engine.systems import Baseline, PairValidation, SystemSpec, ValidationStatus
from engine.trading import ExitReason, Trade, TradeKind


def make_bars(
    close: Sequence[float],
    *,
    open: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    low: Sequence[float] | None = None,
    volume: Sequence[float] | None = None,
    start: datetime = datetime(2025, 1, 6, 3, 45, tzinfo=UTC),
    interval: Interval = Interval.M5,
    times: Sequence[datetime] | None = None,
) -> Bars:
    """Bars from price lists; open defaults to the previous close, high/low to the body's extremes."""
    c = np.asarray(close, dtype=np.float64)
    o = np.asarray(open, dtype=np.float64) if open is not None else np.r_[c[:1], c[:-1]]
    h = np.asarray(high, dtype=np.float64) if high is not None else np.maximum(o, c)
    lo = np.asarray(low, dtype=np.float64) if low is not None else np.minimum(o, c)
    v = np.asarray(volume, dtype=np.float64) if volume is not None else np.full(len(c), 1000.0)
    if times is not None:
        t = np.array([to_nanos(x) for x in times], dtype=np.int64)
    else:
        t = to_nanos(start) + np.arange(len(c), dtype=np.int64) * interval.nanos
    return Bars(interval, t, o, h, lo, c, v)


def make_context(bars: Bars, symbol: str = "RELIANCE", **overrides: object) -> MarketContext:
    """A MarketContext over `bars` for a built-in instrument, with its interval set to the bars'."""
    instrument: Instrument = replace(default_instrument(symbol), interval=bars.interval, **overrides)  # type: ignore[arg-type]
    return MarketContext(instrument, bars, get_calendar(instrument.calendar))


WINS_AND_LOSSES = (2.0, -1.0, 2.0, -1.0, -1.0, 2.0, -1.0, 2.0, -1.0, 2.0) * 4  # 40 trades, 50 % wins, +0.5R


def baseline_for(spec: SystemSpec, at: datetime, *, passed: bool = True, **changes: object) -> Baseline:
    """A baseline of exactly the system `spec`, as the gate stores it (passed by default), made at `at`."""
    made = Baseline(
        strategy=spec.strategy,
        symbol=spec.symbol,
        interval=spec.interval.value,
        params=dict(spec.params),
        data_source="csv:shared",
        data_from=at - timedelta(days=600),
        data_to=at - timedelta(days=1),
        passed=passed,
        reasons=() if passed else ("out-of-sample profit factor 0.92 < 1.2",),
        metrics={},
        r_multiples=WINS_AND_LOSSES,
        created_at=at,
        fingerprint=spec.fingerprint,
        system=spec.to_json(),
    )
    return replace(made, **changes)  # type: ignore[arg-type]


def gbpusd_trade(n: int, won: bool, entry_time: datetime) -> Trade:
    """An external trend_pullback GBPUSD long of 1 lot, closed after 5 hours at +2R or -1R (risk 100 USD)."""
    return Trade(
        trade_id=f"t{n:04d}-external",
        signal_id=f"{n:010x}",
        kind=TradeKind.EXTERNAL,
        strategy="trend_pullback",
        symbol="GBPUSD",
        side=Side.LONG,
        quantity=Decimal(1),
        contract_size=Decimal(100000),
        entry_time=entry_time,
        entry_price=Decimal("1.30000"),
        stop=Decimal("1.29900"),
        target=Decimal("1.30200"),
        exit_time=entry_time + timedelta(hours=5),
        exit_price=Decimal("1.30200") if won else Decimal("1.29900"),
        exit_reason=ExitReason.EXTERNAL,
    )


async def record_system_trades(store: BotStore, spec: SystemSpec, trades: Sequence[Trade]) -> list[Trade]:
    """Store a signal of the system `spec` for each external trade (found an interval before its entry, offered
    with the system's fingerprint), then the trade under that signal's id; return the trades as stored."""
    interval = spec.interval.delta
    setups = [
        ScoredSetup(
            Setup(
                t.strategy, t.symbol, t.side, t.entry_price, t.stop, (t.target,), t.entry_time - interval, spec.interval
            ),
            QualityScore(60.0, ()),
        )
        for t in trades
    ]
    first = min(t.entry_time for t in trades)
    run = await store.start_run(first, first, "test", [spec.symbol])
    await store.finish_run(run, first, setups, [], [])
    stored = []
    for scored, trade in zip(setups, trades, strict=True):
        signal_id = scored.setup.signal_id
        await store.set_signal_validation(
            signal_id, PairValidation(ValidationStatus.VALIDATED, "", fingerprint=spec.fingerprint)
        )
        mine = replace(trade, trade_id=f"{signal_id}-{trade.kind.value}", signal_id=signal_id)
        await store.record_external_trade(mine)
        stored.append(mine)
    return stored
