"""The backtester's columns and whole-tick paths decide as the scalar path does: levels, entries, sizing, exits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backtest import BacktestConfig
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.columns import Entry, candidate_columns, quantize_units
from engine.costs import CostModel, exit_fill_price
from engine.domain import Instrument, Interval, Setup, Side, quantize_float
from engine.exposure import ExposureClass, ExposureLimits
from engine.indicators import MarketContext
from engine.pipeline import Candidate, ValidationRules, validate
from engine.results import Proposal
from engine.sizing import SizeLimits, Sizing, TickSizer
from engine.strategy import SignalArrays
from engine.trade_book import ENTRY_SKIPS, TradeBook
from tests.builders import make_bars

TICKS = [Decimal(t) for t in ("0.00001", "0.01", "0.05", "0.25", "1", "5")]
PROPERTY = settings(max_examples=150, deadline=None)


def on_and_near_ticks(tick: Decimal) -> st.SearchStrategy[float]:
    """Prices anywhere, on a tick, and a hair either side of a tick or a half tick: where rounding is decided."""
    anywhere = st.floats(min_value=1e-4, max_value=2e6, allow_nan=False, allow_infinity=False)
    steps = st.one_of(st.integers(min_value=1, max_value=10**7), st.integers(min_value=1, max_value=6))
    on = steps.map(lambda k: float(k * tick))
    half = steps.map(lambda k: float((k + Decimal("0.5")) * tick))
    nudged = st.tuples(st.one_of(on, half), st.sampled_from([-2, -1, 1, 2])).map(
        lambda pair: float(np.nextafter(pair[0], np.inf if pair[1] > 0 else -np.inf))
    )
    return st.one_of(anywhere, on, half, nudged)


@PROPERTY
@given(st.data())
def test_floor_and_ceiling_in_whole_ticks_are_quantize_floats(data: st.DataObject) -> None:
    tick = data.draw(st.sampled_from(TICKS))
    values = np.array(data.draw(st.lists(on_and_near_ticks(tick), min_size=1, max_size=40)))
    for rounding in (ROUND_FLOOR, ROUND_CEILING):
        units, decided = quantize_units(values, tick, rounding)
        for value, unit, known in zip(values.tolist(), units.tolist(), decided.tolist(), strict=True):
            if known:
                assert Decimal(unit) * tick == quantize_float(value, tick, rounding)


def test_what_a_double_cannot_hold_is_left_undecided() -> None:
    values = np.array([np.nan, np.inf, 1e30, 1.5])
    _, decided = quantize_units(values, Decimal("0.01"), ROUND_FLOOR)
    assert decided.tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="floors or ceils"):
        quantize_units(values, Decimal("0.01"), ROUND_HALF_EVEN)


def instrument_with(tick: Decimal, spread_ticks: Fraction) -> Instrument:
    spread = Decimal(spread_ticks.numerator) * tick / spread_ticks.denominator
    return replace(default_instrument("BTCUSDT"), tick_size=tick, spread=spread, interval=Interval.H1)


@st.composite
def markets(draw: st.DrawFn) -> tuple[MarketContext, SignalArrays, BacktestConfig, ValidationRules]:
    """Bars with gaps in time and opens on and off the tick, signals with good and bad levels, and costs."""
    tick = draw(st.sampled_from(TICKS[:5]))
    spread_ticks = draw(
        st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(1), Fraction(3, 2), Fraction(8), Fraction(7, 3)])
    )
    instrument = instrument_with(tick, spread_ticks)
    n = 80
    level = draw(st.sampled_from([0.5, 3.0, 250.0, 24000.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    close = level * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    on_grid = rng.random(n) < 0.6
    close = np.where(on_grid, np.round(close / float(tick)) * float(tick), close)
    opened = np.r_[close[:1], close[:-1]] * np.where(rng.random(n) < 0.15, 1 + rng.normal(0, 0.01, n), 1.0)
    opened = np.maximum(opened, float(tick) / 3)
    hours = np.cumsum(np.where(rng.random(n) < 0.1, 3, 1))  # some bars after a gap
    times = [datetime(2025, 3, 3, tzinfo=UTC) + timedelta(hours=int(h)) for h in hours]
    bars = make_bars(close, open=opened, interval=Interval.H1, times=times)
    ctx = MarketContext(instrument, bars, get_calendar(instrument.calendar))
    direction = rng.choice(np.array([0, 0, 1, -1], dtype=np.int8), n)
    risk = close * rng.uniform(0.0005, 0.03, n)
    entry = close * np.where(rng.random(n) < 0.3, 1 + rng.normal(0, 0.001, n), 1.0)
    stop = entry - direction * risk * np.where(rng.random(n) < 0.05, -1, 1)  # some on the wrong side
    target = entry + direction * risk * rng.uniform(0.2, 3, n)
    stop = np.where(rng.random(n) < 0.03, np.nan, stop)
    reward_risk = draw(st.sampled_from([None, None, 2.0, 1.5, 0.6666666666666666]))
    signals = SignalArrays(direction, entry, stop, target, reward_risk)
    costs = CostModel(slippage_bps=draw(st.sampled_from([Decimal(0), Decimal(1), Decimal("2.5"), Decimal("37")])))
    config = BacktestConfig(costs=costs, slippage_atr=draw(st.sampled_from([0.0, 0.05, 0.3])))
    rules = ValidationRules(
        min_stop_ticks=draw(st.integers(1, 5)),
        min_stop_spreads=draw(st.sampled_from([0.0, 1.0, 2.5])),
        max_age_bars=draw(st.integers(1, 3)),
    )
    return ctx, signals, config, rules


@PROPERTY
@given(markets())
def test_the_columns_validate_and_enter_every_candidate_as_the_scalar_path_does(
    market: tuple[MarketContext, SignalArrays, BacktestConfig, ValidationRules],
) -> None:
    ctx, signals, config, rules = market
    instrument, tick = ctx.instrument, ctx.instrument.tick_size
    fired = signals.fired()
    book = TradeBook(ctx, config, rules)
    columns = candidate_columns(ctx, signals, fired, rules, config.costs, config.slippage_atr, book.atr)
    assert columns is not None
    for k, i in enumerate(fired.tolist()):
        side = signals.side_at(i)
        candidate = Candidate(
            "s",
            side,
            i,
            ctx.bars.bar_time(i),
            *(float(a[i]) for a in (signals.entry, signals.stop, signals.target)),
            (),
            signals.reward_risk,
        )
        scalar = validate(instrument, ctx.calendar, candidate, candidate.bar_time + timedelta(hours=1), rules)
        if not columns.valid[k]:  # rejected, or beyond what a double holds exactly: the scalar path decides
            far = max(abs(float(a[i])) for a in (signals.entry, signals.stop, signals.target)) / float(tick)
            assert not isinstance(scalar, Setup) or far > 2**29, (k, scalar)
            continue
        assert isinstance(scalar, Setup), (k, scalar)
        levels = (scalar.entry, scalar.stop, scalar.target)
        assert tuple(Decimal(int(x[k])) * tick for x in (columns.entry, columns.stop, columns.target)) == levels
        state = Entry(int(columns.state[k]))
        if state is Entry.SCALAR:
            continue
        book.skips.clear()
        try:
            entered = book._entry(scalar, i)
        except ValueError:  # a sell slipped to zero: the columns leave that to the scalar path
            pytest.fail(f"the scalar path raised where the columns decided {state}")
        if state is Entry.FILL:
            assert entered == (int(ctx.bars.time[i + 1]), Decimal(int(columns.fill[k])) * tick)
        else:
            assert entered is None and dict(book.skips) == {ENTRY_SKIPS[state]: 1}


@PROPERTY
@given(st.data())
def test_the_tick_sizer_sizes_as_the_desk_does(data: st.DataObject) -> None:
    symbol = data.draw(st.sampled_from(["EURUSD", "XAUUSD", "RELIANCE", "NIFTY50", "AAPL"]))
    instrument = default_instrument(symbol)
    tick = instrument.tick_size
    costs = CostModel(
        slippage_bps=data.draw(st.sampled_from([Decimal(0), Decimal("1.5")])),
        commission_bps=data.draw(st.sampled_from([Decimal(0), Decimal(3)])),
        commission_per_order=data.draw(st.sampled_from([Decimal(0), Decimal("0.35"), Decimal(20)])),
    )
    caps = data.draw(st.sampled_from([Decimal("0.5"), Decimal(2), Decimal(30)]))
    sizing = Sizing(
        risk_fraction=data.draw(st.sampled_from([Decimal("0.001"), Decimal("0.01"), Decimal("0.02")])),
        account_currency=data.draw(st.sampled_from([None, "USD", "EUR"])),
        exposure=ExposureLimits(max_leverage=dict.fromkeys(ExposureClass, caps), max_total_leverage=caps * 2),
    )
    prices = {"USDINR": Decimal("83.1"), "EURUSD": Decimal("1.0832"), "EURINR": Decimal("90.2")}
    sizer = TickSizer.of(sizing, instrument, costs)
    assert sizer is not None
    entry = data.draw(st.integers(10, 10**8))
    stop = entry + data.draw(st.sampled_from([-1, 1])) * data.draw(st.integers(1, entry - 1))
    equity = Decimal(data.draw(st.integers(1, 10**9))) / 100
    held = Decimal(data.draw(st.integers(0, 10**9))) / 100
    price, stopped = Decimal(entry) * tick, Decimal(stop) * tick
    expected = sizing.size(instrument, price, stopped, equity, prices, costs=costs, open_notional=held)
    assert not isinstance(expected, str)
    figures = sizer.size(entry, stop, equity, sizing.rate(instrument, price, prices), held)
    assert repr(figures) == repr((expected.quantity, expected.risk_with_costs, expected.notional))


def test_a_symbol_with_order_limits_is_sized_by_the_desks_sizing() -> None:
    limited = Sizing(limits={"RELIANCE": SizeLimits(max_quantity=Decimal(10))})
    assert TickSizer.of(limited, default_instrument("RELIANCE"), CostModel()) is None
    assert TickSizer.of(limited, default_instrument("SBIN"), CostModel()) is not None


@PROPERTY
@given(st.data())
def test_an_exit_fills_in_whole_ticks_as_exit_fill_price_does(data: st.DataObject) -> None:
    tick = data.draw(st.sampled_from(TICKS[:5]))
    spread = data.draw(st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(3), Fraction(7, 3)]))
    instrument = instrument_with(tick, spread)
    costs = CostModel(slippage_bps=data.draw(st.sampled_from([Decimal(0), Decimal(1), Decimal("2.5"), Decimal(9000)])))
    bars = make_bars([1.0, 1.0, 1.0], interval=Interval.H1)
    book = TradeBook(
        MarketContext(instrument, bars, get_calendar(instrument.calendar)),
        BacktestConfig(costs=costs),
        ValidationRules(),
    )
    level = data.draw(on_and_near_ticks(tick))
    side = data.draw(st.sampled_from(list(Side)))

    def outcome(fill: object) -> Decimal | str:
        try:
            return fill()  # type: ignore[operator, no-any-return]
        except ValueError as exc:
            return str(exc)

    expected = outcome(lambda: exit_fill_price(instrument.price(level, ROUND_HALF_EVEN), side, costs, instrument))
    assert repr(outcome(lambda: book._closing_fill(level, side))) == repr(expected)


def test_a_setup_off_the_tick_is_sized_by_the_desks_sizing() -> None:
    instrument = instrument_with(Decimal("0.01"), Fraction(0))
    bars = make_bars([100.0, 100.0, 100.0], interval=Interval.H1)
    book = TradeBook(
        MarketContext(instrument, bars, get_calendar(instrument.calendar)), BacktestConfig(), ValidationRules()
    )
    at = bars.bar_time(0)
    setup = Setup(
        "s", instrument.symbol, Side.LONG, Decimal("100.005"), Decimal("99.003"), (Decimal(103),), at, Interval.H1
    )
    quantity, rate, risk, notional = book._size(Proposal.of(setup), {}, Decimal(0))  # type: ignore[misc]
    expected = Sizing().size(instrument, setup.entry, setup.stop, Decimal(10000), {})
    assert not isinstance(expected, str)
    assert (quantity, rate, risk, notional) == (
        expected.quantity,
        expected.rate,
        expected.risk_with_costs,
        expected.notional,
    )


def test_a_tick_a_double_cannot_step_leaves_every_candidate_to_the_scalar_path() -> None:
    instrument = instrument_with(Decimal("0.03"), Fraction(1))  # neither k nor 1/k: no exact float step
    bars = make_bars([1.0, 1.03, 1.06, 1.09], interval=Interval.H1)
    ctx = MarketContext(instrument, bars, get_calendar(instrument.calendar))
    signals = SignalArrays(np.array([1, 0, 0, 0], dtype=np.int8), bars.close, bars.close - 0.3, bars.close + 0.6)
    assert candidate_columns(ctx, signals, signals.fired(), ValidationRules(), CostModel(), 0.0, None) is None
    assert not quantize_units(bars.close, Decimal("0.03"), ROUND_FLOOR)[1].any()
