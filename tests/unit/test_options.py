"""The option expression of a weekly-zone signal (spec §7) and the Black-Scholes model behind "modelled"."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

import pytest

from engine.domain import Side
from engine.options import (
    LegRole,
    OptionType,
    black_scholes,
    child_quantities,
    hedge_strike,
    lot_size,
    lots_for_risk,
    main_strike,
    model_spread,
    spread_for,
)


@pytest.mark.parametrize(
    ("side", "stop", "strike"),
    [
        (Side.LONG, 23172.7, 23150),  # put: floor
        (Side.LONG, 23150.0, 23150),  # on the grid stays
        (Side.SHORT, 23308.35, 23350),  # call: ceiling
        (Side.SHORT, 23300.4, 23350),  # < 1 point above 23300: the original's (stop+49)//50 gave 23300, below
        (Side.SHORT, 23300.0, 23300),
    ],
)
def test_main_strike_is_the_stop_on_the_grid_away_from_the_money(side: Side, stop: float, strike: int) -> None:
    assert main_strike(side, stop) == strike


def test_hedge_lot_size_and_leg_order() -> None:
    assert hedge_strike(Side.LONG, 23150) == 22950 and hedge_strike(Side.SHORT, 23350) == 23550
    assert lot_size(date(2025, 12, 30)) == 75 and lot_size(date(2026, 1, 6)) == 65
    spread = spread_for(Side.SHORT, 23308.35, date(2025, 1, 23), lots=3)
    assert spread.main.kind is OptionType.CALL and spread.quantity == 225
    assert [leg.role for leg in spread.entry_legs] == [LegRole.HEDGE, LegRole.MAIN]  # buy the hedge first
    assert [leg.role for leg in spread.exit_legs] == [LegRole.MAIN, LegRole.HEDGE]  # buy back the main first
    assert spread.main.label == "NIFTY 2025-01-23 23350 CE" and spread.hedge.bought and not spread.main.bought


def test_legs_above_the_freeze_quantity_split_into_whole_lot_children() -> None:
    assert child_quantities(75 * 30, 75, 1800) == (1800, 450)
    assert child_quantities(65 * 10, 65, 1800) == (650,)
    assert child_quantities(65 * 40, 65, 1800) == (1755, 845)  # 27 lots, then 13
    with pytest.raises(ValueError, match="whole number of lots"):
        child_quantities(100, 75, 1800)
    with pytest.raises(ValueError, match="below one lot"):
        child_quantities(150, 75, 50)


def test_black_scholes_put_call_parity_and_intrinsic_at_expiry() -> None:
    s, k, t, v, r = 23000.0, 22800.0, 5 / 365, 0.14, 0.065
    call, put = black_scholes(OptionType.CALL, s, k, t, v, r), black_scholes(OptionType.PUT, s, k, t, v, r)
    assert call - put == pytest.approx(s - k * math.exp(-r * t), abs=1e-6)
    assert black_scholes(OptionType.PUT, 22500.0, 22800.0, 0.0, v) == 300.0
    assert black_scholes(OptionType.CALL, 22500.0, 22800.0, 0.0, v) == 0.0


def test_a_modelled_spread_kept_out_of_the_money_keeps_its_credit_less_costs() -> None:
    spread = spread_for(Side.LONG, 22900.0, date(2025, 3, 6), lots=1)  # sell 22900 PE, buy 22700 PE
    result = model_spread(spread, 23300.0, 3 / 365, 23400.0, 0.0, 0.15)
    assert result.main_exit == 0.0 and result.hedge_exit == 0.0 and result.net_credit > 0
    expected = Decimal(repr(result.net_credit)) * 75 - Decimal(240)
    assert result.pnl == expected.quantize(Decimal("0.01")) and result.costs == Decimal(240)


def test_risk_based_lots_fit_the_spreads_maximum_loss() -> None:
    assert lots_for_risk(Decimal("50000"), 200, 40.0, 75) == 4  # (200 - 40) x 75 = 12,000 a lot
    assert lots_for_risk(Decimal("10000"), 200, 40.0, 75) == 0
