"""The fill cost model: quotes around a price, fills with slippage, commissions and exit fills, to the cent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.catalog import default_instrument
from engine.costs import CostModel, commission, exit_fill_price, fill_price, market_fill, quote_from_price
from engine.domain import Side
from engine.trading import Quote

D = Decimal
AT = datetime(2025, 5, 12, 13, 40, tzinfo=UTC)
SPY = default_instrument("SPY")  # tick 0.01, spread 0.01
EURUSD = default_instrument("EURUSD")  # tick 0.00001, spread 0.00008, contract 100000


@pytest.mark.parametrize(
    ("symbol", "price", "bid", "ask"),
    [
        ("SPY", "579.21", "579.20", "579.22"),  # 579.205 floored, 579.215 ceiled
        ("EURUSD", "1.04788", "1.04784", "1.04792"),  # +-0.00004, already on the tick
        ("XAUUSD", "2000.00", "1999.87", "2000.13"),  # +-0.125 -> outward to the cent
        ("NIFTY50", "24000.03", "23999.75", "24000.30"),  # off-tick price: 23999.78 down, 24000.28 up to 0.05
        ("RELIANCE", "1300.00", "1299.95", "1300.05"),  # +-0.025 -> outward to 0.05
    ],
)
def test_quote_is_half_the_spread_each_side_rounded_outward(symbol: str, price: str, bid: str, ask: str) -> None:
    quote = quote_from_price(default_instrument(symbol), D(price), AT)
    assert quote == Quote(symbol, D(bid), D(ask), AT)


def test_zero_spread_on_tick_price_quotes_the_price_both_sides() -> None:
    quote = quote_from_price(replace(SPY, spread=D(0)), D("579.21"), AT)
    assert (quote.bid, quote.ask) == (D("579.21"), D("579.21"))


def test_bid_never_reaches_zero() -> None:
    penny = replace(SPY, spread=D("1.00"))
    quote = quote_from_price(penny, D("0.30"), AT)  # 0.30 - 0.50 would be negative
    assert (quote.bid, quote.ask) == (D("0.01"), D("0.80"))


@pytest.mark.parametrize("price", [D(0), D(-1), D("NaN")])
def test_quote_rejects_a_non_positive_price(price: Decimal) -> None:
    with pytest.raises(ValueError, match="price must be a positive finite Decimal"):
        quote_from_price(SPY, price, AT)


def test_fill_prices_pay_spread_and_slippage_rounded_against_the_trader() -> None:
    quote = Quote("SPY", D("579.20"), D("579.22"), AT)
    costs = CostModel(slippage_bps=D(10))
    assert fill_price(quote, Side.LONG, costs, SPY) == D("579.80")  # 579.22 x 1.001 = 579.79922 -> up
    assert fill_price(quote, Side.SHORT, costs, SPY) == D("578.62")  # 579.20 x 0.999 = 578.6208 -> down
    assert fill_price(quote, Side.LONG, CostModel(), SPY) == D("579.22")
    assert fill_price(quote, Side.SHORT, CostModel(), SPY) == D("579.20")


def test_fx_fill_prices_to_the_fifth_decimal() -> None:
    quote = Quote("EURUSD", D("1.04784"), D("1.04792"), AT)
    costs = CostModel(slippage_bps=D(2))
    assert fill_price(quote, Side.LONG, costs, EURUSD) == D("1.04813")  # 1.048129584 -> up
    assert fill_price(quote, Side.SHORT, costs, EURUSD) == D("1.04763")  # 1.047630432 -> down


@pytest.mark.parametrize("symbol", ["SPY", "EURUSD", "XAUUSD", "NIFTY50", "RELIANCE", "BTCUSDT"])
@pytest.mark.parametrize("slippage", ["0", "1", "2.5", "10"])
def test_a_market_fill_is_the_fill_of_the_quote_around_the_price(symbol: str, slippage: str) -> None:
    instrument = default_instrument(symbol)
    costs = CostModel(slippage_bps=D(slippage))
    tick = instrument.tick_size
    for base in (D("0.37"), D("1.0847"), D("579.21"), D("24000.03"), D("61234.5")):
        for mid in (base, base + tick / 3, base + tick / 2, base - tick / 7):
            quote = quote_from_price(instrument, mid, AT)
            for side in Side:
                expected = outcome(fill_price, quote, side, costs, instrument)
                assert outcome(market_fill, instrument, mid, side, costs) == expected


def outcome(fn: Callable[..., Decimal], *args: object) -> Decimal | str:
    """What `fn(*args)` returns, or the refusal it raises (a sell slipped to zero)."""
    try:
        return fn(*args)
    except ValueError as exc:
        return str(exc)


def test_fill_price_refuses_another_instruments_quote() -> None:
    with pytest.raises(ValueError, match="quote is for SPY, not EURUSD"):
        fill_price(Quote("SPY", D("579.20"), D("579.22"), AT), Side.LONG, CostModel(), EURUSD)


def test_a_sell_slipped_to_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="not above 0"):
        fill_price(Quote("SPY", D("0.01"), D("0.01"), AT), Side.SHORT, CostModel(slippage_bps=D(9999)), SPY)


def test_commission_is_bps_of_notional_plus_per_order() -> None:
    costs = CostModel(commission_bps=D(5), commission_per_order=D(1))
    # 579.80 x 10 = 5798.00; x 0.0005 = 2.899; + 1 = 3.899 -> 3.90
    assert commission(D("579.80"), D(10), SPY, costs) == D("3.90")
    # EURUSD 0.20 lots: 1.04813 x 0.20 x 100000 = 20962.6; x 0.00005 = 1.04813 -> 1.05
    assert commission(D("1.04813"), D("0.20"), EURUSD, CostModel(commission_bps=D("0.5"))) == D("1.05")


def test_commission_rounds_half_up_to_the_cent() -> None:
    one_bp = CostModel(commission_bps=D(1))
    assert commission(D(50), D(1), SPY, one_bp) == D("0.01")  # exactly 0.005 -> up (half-even would give 0.00)
    assert commission(D(125), D(1), SPY, one_bp) == D("0.01")  # 0.0125 -> 0.01
    assert commission(D(40), D(1), SPY, one_bp) == D("0.00")  # 0.004 -> 0.00
    zero = commission(D("579.80"), D(10), SPY, CostModel())
    assert zero == 0 and str(zero) == "0.00"


def test_commission_needs_a_positive_price_and_quantity() -> None:
    with pytest.raises(ValueError, match="positive price and quantity"):
        commission(D("579.80"), D(0), SPY, CostModel())


def test_exit_fills_pay_half_the_spread_and_slippage() -> None:
    costs = CostModel(slippage_bps=D(10))
    aapl = default_instrument("AAPL")  # tick 0.01, spread 0.01
    # A long closes by selling: bid 94.995 -> 94.99; x 0.999 = 94.89501 -> 94.89.
    assert exit_fill_price(D("95.00"), Side.LONG, costs, aapl) == D("94.89")
    # A short closes by buying: ask 95.005 -> 95.01; x 1.001 = 95.10501 -> 95.11.
    assert exit_fill_price(D("95.00"), Side.SHORT, costs, aapl) == D("95.11")
    # The float level from the exit search converts through its shortest repr.
    assert exit_fill_price(95.0, Side.LONG, costs, aapl) == D("94.89")
    assert exit_fill_price(0.1 + 0.2, Side.LONG, CostModel(), replace(aapl, spread=D(0))) == D("0.30")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slippage_bps": D(-1)}, "slippage_bps must be a non-negative finite Decimal"),
        ({"commission_bps": D("-0.1")}, "commission_bps must be a non-negative finite Decimal"),
        ({"commission_per_order": D("Infinity")}, "commission_per_order must be a non-negative finite Decimal"),
        ({"commission_per_order": 1.0}, "commission_per_order must be a non-negative finite Decimal"),
        ({"slippage_bps": D(10_000)}, "slippage_bps must be below 10000"),
    ],
)
def test_cost_model_invariants_name_the_rule(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CostModel(**kwargs)  # type: ignore[arg-type]
