"""Breakeven, trailing stops and partial targets: the same cases through the exit kernel, the backtester and the
live position monitor (a real SQLite store), which must agree on every fill, stop move and the trade's R.

RELIANCE 5-minute bars in one session; a long signalled at bar 2, entered at bar 3's open at 100.00 with its stop at
95.00 (R = 5.00) and its target at 110.00; no costs, so the figures are the rules' alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bot.services.monitor import PositionMonitor
from bot.telegram.notifier import Notifier
from data.sqlite.store import SqliteStore
from engine.audit import AuditKind
from engine.backtest import BacktestConfig, backtest
from engine.bars import Bars
from engine.calendars import get_calendar
from engine.costs import CostModel
from engine.domain import Instrument, Side
from engine.exits import ExitPlan, TrailBy, manage_exit
from engine.pipeline import EngineConfig
from engine.ports import FixedClock
from engine.trading import ExitReason, TradeKind, trade_from_setup
from tests.unit.test_backtest import QUIET, Row, Scripted, close_time, context

D = Decimal
ENTRY, STOP, TARGET = 100.0, 95.0, 110.0
NO_COSTS = CostModel(D(0), D(0), D(0))


@dataclass(frozen=True)
class Case:
    name: str
    plan: ExitPlan
    rows: tuple[Row, ...]  # bars from 3 on (the entry bar first)
    legs: tuple[tuple[int, float, float, ExitReason], ...]  # (bar, level, fraction, reason)
    moves: tuple[tuple[int, float], ...]
    exit_price: str
    r: str


CASES = (
    Case(
        "breakeven after +1R, then stopped at the entry",
        ExitPlan(breakeven_r=1.0),
        ((100.0, 106.0, 99.5, 105.0), (105.0, 105.5, 99.0, 99.5)),
        ((4, 100.0, 1.0, ExitReason.TRAILING_STOP),),
        ((4, 100.0),),
        "100.00",
        "0.00",
    ),
    Case(
        "trailing 1R behind the best high after +1R",
        ExitPlan(trail_by=TrailBy.R, trail_distance=1.0, trail_after_r=1.0),
        ((100.0, 106.0, 99.5, 105.0), (105.0, 109.0, 104.5, 108.0), (108.0, 108.5, 103.5, 104.0)),
        ((5, 104.0, 1.0, ExitReason.TRAILING_STOP),),
        ((4, 101.0), (5, 104.0)),
        "104.00",
        "0.80",
    ),
    Case(
        "half at +1R, the rest at the target",
        ExitPlan(partials=((1.0, 0.5),)),
        ((100.0, 106.0, 99.5, 105.0), (105.0, 110.5, 104.0, 110.0)),
        ((3, 105.0, 0.5, ExitReason.PARTIAL), (4, 110.0, 0.5, ExitReason.TARGET)),
        (),
        "107.50",
        "1.50",
    ),
    Case(
        "half at +1R with the stop to breakeven, the rest stopped there",
        ExitPlan(breakeven_r=1.0, partials=((1.0, 0.5),)),
        ((100.0, 106.0, 99.5, 105.0), (104.0, 104.5, 99.0, 99.5)),
        ((3, 105.0, 0.5, ExitReason.PARTIAL), (4, 100.0, 0.5, ExitReason.TRAILING_STOP)),
        ((4, 100.0),),
        "102.50",
        "0.50",
    ),
    Case(
        "a gap below the moved stop fills at the open",
        ExitPlan(breakeven_r=1.0),
        ((100.0, 106.0, 99.5, 105.0), (97.0, 98.0, 96.0, 97.5)),
        ((4, 97.0, 1.0, ExitReason.TRAILING_STOP),),
        ((4, 100.0),),
        "97.00",
        "-0.60",
    ),
    Case(
        "a bar touching the moved stop and the target takes the stop",
        ExitPlan(breakeven_r=1.0),
        ((100.0, 106.0, 99.5, 105.0), (105.0, 111.0, 99.0, 105.0)),
        ((4, 100.0, 1.0, ExitReason.TRAILING_STOP),),
        ((4, 100.0),),
        "100.00",
        "0.00",
    ),
)

PAD = (QUIET,) * 3  # bars 0..2: the signal is bar 2


def rows_of(case: Case) -> list[Row]:
    return [*PAD, *case.rows, *[(r[3], r[3], r[3], r[3]) for r in case.rows[-1:]] * 2]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_kernel(case: Case) -> None:
    rows = np.array(rows_of(case))
    managed = manage_exit(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], 3, Side.LONG, ENTRY, STOP, TARGET, case.plan)
    assert managed.done
    assert [(leg.bar_index, leg.price, leg.fraction, leg.reason) for leg in managed.legs] == list(case.legs)
    assert managed.stop_moves == case.moves
    assert f"{managed.r_multiple(Side.LONG, ENTRY, ENTRY - STOP):.2f}" == case.r


def backtested(case: Case) -> tuple[Bars, Instrument, object]:
    ctx = context(rows_of(case))
    config = BacktestConfig(score_setups=False, exit_plans={"scripted": case.plan})
    result = backtest(ctx, Scripted({2: (Side.LONG, ENTRY, STOP, TARGET)}), EngineConfig(), config)
    (bt,) = result.trades
    return ctx.bars, ctx.instrument, bt


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_backtester(case: Case) -> None:
    _, _, bt = backtested(case)
    trade = bt.trade  # type: ignore[attr-defined]
    last_bar = case.legs[-1][0]
    assert (trade.entry_price, trade.quantity) == (D("100.00"), D(20))  # 100 at risk over 5.00: 20 shares
    assert trade.exit_price == D(case.exit_price) and trade.exit_reason is case.legs[-1][3]
    assert trade.exit_time == close_time(last_bar) and bt.exit_index == last_bar  # type: ignore[attr-defined]
    assert trade.pnl_r == D(case.r)  # the partial fills' R together


class BarsProvider:
    """The case's bars, closed by `end`, as the CSV provider serves them."""

    name = "bars"

    def __init__(self, bars: Bars) -> None:
        self.frame = bars.to_frame()

    def fetch(self, instrument: Instrument, end: datetime, bars: int) -> pd.DataFrame:
        closes = self.frame.index + pd.Timedelta(instrument.interval.delta)
        return self.frame[closes <= pd.Timestamp(end)].tail(bars)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_the_live_monitor_agrees_with_the_backtester(case: Case, tmp_path: Path) -> None:
    bars, instrument, bt = backtested(case)
    setup = bt.setup  # type: ignore[attr-defined]
    entered = setup.bar_time + instrument.interval.delta
    async with await SqliteStore.open(tmp_path / "bot.db") as store:
        shadow = trade_from_setup(setup, TradeKind.SHADOW, D(20), instrument.contract_size, entered, D("100.00"), D(0))
        assert await store.open_shadow_trade(shadow)
        clock = FixedClock(close_time(len(bars) - 1))
        notifier = Notifier(store, [1], {instrument.symbol: instrument}, clock)
        calendars = {instrument.symbol: get_calendar(instrument.calendar)}
        monitor = PositionMonitor(
            store,
            BarsProvider(bars),
            notifier,
            clock,
            {instrument.symbol: instrument},
            calendars,
            history_bars=500,
            max_hold_bars=48,
            costs=NO_COSTS,
            exit_plans={setup.strategy: case.plan},
        )
        (closed,) = await monitor.check()
        trade = bt.trade  # type: ignore[attr-defined]
        assert (closed.exit_time, closed.exit_price, closed.exit_reason) == (
            trade.exit_time,
            trade.exit_price,
            trade.exit_reason,
        )
        assert closed.pnl_r == trade.pnl_r == D(case.r)
        partials = (await store.partial_exits([shadow.trade_id])).get(shadow.trade_id, [])
        expected = [(D(f"{lvl:.2f}"), D(20) * D(str(f))) for _, lvl, f, why in case.legs if why is ExitReason.PARTIAL]
        assert [(p.price, p.quantity) for p in partials] == expected
        moves = await store.stop_moves([shadow.trade_id])
        # The monitor looks once, after the exit: a move the plan made on the way is in the trade's R, and a
        # position still open would have recorded it (see the next test).
        assert moves.get(shadow.trade_id, []) == []
        kinds = [e.kind for e in await store.audit_events()]
        assert kinds.count(AuditKind.PARTIAL_EXIT) == len(expected) and AuditKind.POSITION_CLOSED in kinds


async def test_an_open_position_gets_its_moved_stop_recorded_and_told(tmp_path: Path) -> None:
    case = CASES[1]  # trailing: after bar 4 the stop is at 104.00, the position still open
    bars, instrument, bt = backtested(case)
    open_bars = bars.head(5)  # bars 0..4 closed: the stop moved twice, nothing hit
    setup = bt.setup  # type: ignore[attr-defined]
    entered = setup.bar_time + instrument.interval.delta
    async with await SqliteStore.open(tmp_path / "bot.db") as store:
        shadow = trade_from_setup(setup, TradeKind.SHADOW, D(20), instrument.contract_size, entered, D("100.00"), D(0))
        assert await store.open_shadow_trade(shadow)
        clock = FixedClock(close_time(4))
        monitor = PositionMonitor(
            store,
            BarsProvider(open_bars),
            Notifier(store, [1], {instrument.symbol: instrument}, clock),
            clock,
            {instrument.symbol: instrument},
            {instrument.symbol: get_calendar(instrument.calendar)},
            history_bars=500,
            max_hold_bars=48,
            costs=NO_COSTS,
            exit_plans={setup.strategy: case.plan},
        )
        assert await monitor.check() == []
        [move] = (await store.stop_moves([shadow.trade_id]))[shadow.trade_id]
        assert (move.old, move.new) == (D("95.00"), D("104.00"))
        assert await monitor.check() == []  # looked at again: nothing new to record
        assert len((await store.stop_moves([shadow.trade_id]))[shadow.trade_id]) == 1
        [event] = [e for e in await store.audit_events() if e.kind is AuditKind.STOP_MOVED]
        assert (event.actor, event.detail) == ("bot", "stop 95.00 -> 104.00")


def test_a_plan_that_does_not_add_up_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="leave some of the position"):
        ExitPlan(partials=((1.0, 0.5), (2.0, 0.5)))
    with pytest.raises(ValueError, match="rising order"):
        ExitPlan(partials=((2.0, 0.3), (1.0, 0.3)))
    with pytest.raises(ValueError, match="breakeven_r must be a positive"):
        ExitPlan(breakeven_r=0.0)
