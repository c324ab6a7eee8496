"""The paper broker over the real shared bar files: quotes, fills, fees, idempotency and provider failures."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from bot.brokers.paper import FillModel, PaperBroker
from data.market.csv_provider import CsvProvider
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.costs import CostModel, fill_price, quote_from_price
from engine.domain import Instrument, Side
from engine.ports import BrokerError, BrokerErrorKind, FixedClock, ProviderError
from engine.trading import Fill, OrderRequest, OrderState, Quote

pytestmark = pytest.mark.shared_data

D = Decimal
SPY = default_instrument("SPY")  # 5m, tick 0.01, spread 0.01
EURUSD = default_instrument("EURUSD")  # 1h, tick 0.00001, spread 0.00008, contract 100000
INSTRUMENTS = {i.symbol: i for i in (SPY, EURUSD)}
# At 13:40 the SPY bar that opened 13:35 (close 579.21 in SPY_5m.csv) has just closed; the 13:40 bar has not.
SPY_AT = datetime(2025, 5, 12, 13, 40, tzinfo=UTC)
COSTS = CostModel(slippage_bps=D(10), commission_bps=D(5), commission_per_order=D(1))


def broker(market_dir: Path, at: datetime, costs: CostModel = COSTS) -> PaperBroker:
    return PaperBroker(CsvProvider(market_dir), INSTRUMENTS, FixedClock(at), costs)


async def test_quote_is_the_last_closed_bars_close_with_half_the_spread_each_side(market_dir: Path) -> None:
    quote = await broker(market_dir, SPY_AT).quote(SPY)
    # 579.21 -/+ 0.005, rounded outward to the cent; the time is that bar's close.
    assert quote == Quote("SPY", D("579.20"), D("579.22"), SPY_AT)
    a_second_before = await broker(market_dir, datetime(2025, 5, 12, 13, 39, 59, tzinfo=UTC)).quote(SPY)
    # Only the 13:30 bar (close 579.23) had closed.
    assert a_second_before == Quote("SPY", D("579.22"), D("579.24"), datetime(2025, 5, 12, 13, 35, tzinfo=UTC))


async def test_a_quote_fetches_and_validates_off_the_event_loop(
    market_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.brokers.paper as paper  # noqa: PLC0415

    threads = []
    checked = paper.validate_bars

    def validate(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread())
        return checked(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(paper, "validate_bars", validate)
    quote = await broker(market_dir, SPY_AT).quote(SPY)
    assert quote == Quote("SPY", D("579.20"), D("579.22"), SPY_AT)  # the same quote as on the loop
    assert len(threads) == 1 and threads[0] is not threading.main_thread()  # the loop runs on the main thread


async def test_fx_quote(market_dir: Path) -> None:
    quote = await broker(market_dir, datetime(2024, 11, 27, 5, 0, tzinfo=UTC)).quote(EURUSD)
    # The 04:00 bar closed at 05:00 at 1.04788 (EURUSD_1h.csv): +-0.00004.
    assert quote == Quote("EURUSD", D("1.04784"), D("1.04792"), datetime(2024, 11, 27, 5, 0, tzinfo=UTC))


async def test_a_stale_quote_keeps_its_bar_time(market_dir: Path) -> None:
    # Saturday: the last SPY bar closed Friday 20:00Z; the quote says so instead of pretending to be fresh.
    saturday = datetime(2025, 5, 17, 12, 0, tzinfo=UTC)
    quote = await broker(market_dir, saturday).quote(SPY)
    assert quote.at == datetime(2025, 5, 16, 20, 0, tzinfo=UTC)
    last = CsvProvider(market_dir).fetch(SPY, saturday, 1)
    assert last.index[-1] == pd.Timestamp("2025-05-16T19:55Z")


async def test_buy_and_sell_fills_with_fees(market_dir: Path) -> None:
    paper = broker(market_dir, SPY_AT)
    buy = await paper.place_order(SPY, OrderRequest("sig-buy", "SPY", Side.LONG, D(10)))
    # Ask 579.22 x 1.001 = 579.79922 -> 579.80; fees 5798.00 x 0.0005 + 1 = 3.899 -> 3.90.
    assert buy == Fill("sig-buy", "SPY", Side.LONG, D(10), D("579.80"), D("3.90"), SPY_AT)
    sell = await paper.place_order(SPY, OrderRequest("sig-sell", "SPY", Side.SHORT, D(10)))
    # Bid 579.20 x 0.999 = 578.6208 -> 578.62; fees 5786.20 x 0.0005 + 1 = 3.8931 -> 3.89.
    assert sell == Fill("sig-sell", "SPY", Side.SHORT, D(10), D("578.62"), D("3.89"), SPY_AT)


async def test_fx_fill_in_lots(market_dir: Path) -> None:
    at = datetime(2024, 11, 27, 5, 0, tzinfo=UTC)
    paper = broker(market_dir, at, CostModel(slippage_bps=D(2), commission_bps=D("0.5")))
    fill = await paper.place_order(EURUSD, OrderRequest("fx-1", "EURUSD", Side.LONG, D("0.20")))
    # Ask 1.04792 x 1.0002 = 1.048129584 -> 1.04813; fees 1.04813 x 0.20 x 100000 x 0.00005 = 1.04813 -> 1.05.
    assert (fill.price, fill.fees, fill.filled_at) == (D("1.04813"), D("1.05"), at)


class _MovingClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


async def test_placing_the_same_order_twice_fills_it_once(market_dir: Path) -> None:
    clock = _MovingClock(SPY_AT)
    paper = PaperBroker(CsvProvider(market_dir), INSTRUMENTS, clock, COSTS)
    request = OrderRequest("sig-1", "SPY", Side.LONG, D(10))
    first = await paper.place_order(SPY, request)
    # Even after the market moved, a retry returns the original fill, not a second one at a new price.
    clock.at = datetime(2025, 5, 12, 15, 0, tzinfo=UTC)
    again = await paper.place_order(SPY, request)
    assert again == first and again.price == D("579.80")
    concurrent = await asyncio.gather(*(paper.place_order(SPY, request) for _ in range(5)))
    assert all(f == first for f in concurrent)
    with pytest.raises(BrokerError, match="sig-1 was already placed with different details"):
        await paper.place_order(SPY, OrderRequest("sig-1", "SPY", Side.LONG, D(11)))
    assert await paper.positions() == []


async def test_concurrent_first_placements_fill_once(market_dir: Path) -> None:
    paper = broker(market_dir, SPY_AT)
    request = OrderRequest("sig-race", "SPY", Side.SHORT, D(3))
    fills = await asyncio.gather(*(paper.place_order(SPY, request) for _ in range(4)))
    assert len({id(f) for f in fills}) == 1


async def test_missing_data_file_is_a_broker_error(market_dir: Path) -> None:
    unknown: Instrument = replace(SPY, symbol="NOPE")
    paper = PaperBroker(CsvProvider(market_dir), {**INSTRUMENTS, "NOPE": unknown}, FixedClock(SPY_AT), COSTS)
    with pytest.raises(BrokerError, match="no price for NOPE: no data file for NOPE 5m"):
        await paper.quote(unknown)
    with pytest.raises(BrokerError, match="no price for NOPE"):
        await paper.place_order(unknown, OrderRequest("x", "NOPE", Side.LONG, D(1)))


async def test_no_bar_closed_yet_is_a_broker_error(market_dir: Path) -> None:
    before_data = datetime(2020, 1, 1, tzinfo=UTC)
    with pytest.raises(BrokerError, match="no price for SPY: no bar has closed by 2020-01-01 00:00Z"):
        await broker(market_dir, before_data).quote(SPY)


class _FailingProvider:
    name = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def fetch(self, instrument: Instrument, end: datetime, bars: int) -> pd.DataFrame:
        raise self.error


async def test_provider_errors_become_plain_broker_errors() -> None:
    paper = PaperBroker(
        _FailingProvider(ProviderError("rate limited by Yahoo")), INSTRUMENTS, FixedClock(SPY_AT), COSTS
    )
    with pytest.raises(BrokerError, match=r"^no price for SPY: rate limited by Yahoo$"):
        await paper.quote(SPY)
    crashing = PaperBroker(_FailingProvider(ConnectionResetError("boom")), INSTRUMENTS, FixedClock(SPY_AT), COSTS)
    with pytest.raises(BrokerError, match=r"^no price for SPY: the price source failed \(ConnectionResetError\)$"):
        await crashing.quote(SPY)


async def test_orders_the_venue_cannot_take_are_refused(market_dir: Path) -> None:
    paper = broker(market_dir, SPY_AT)
    with pytest.raises(BrokerError, match="is for EURUSD but was sent as SPY"):
        await paper.place_order(SPY, OrderRequest("a", "EURUSD", Side.LONG, D(1)))
    with pytest.raises(BrokerError, match=r"0\.005 EURUSD is not a whole number of lots of 0\.01"):
        await paper.place_order(EURUSD, OrderRequest("b", "EURUSD", Side.LONG, D("0.005")))
    aapl = default_instrument("AAPL")
    with pytest.raises(BrokerError, match="AAPL is not an instrument the paper broker trades"):
        await paper.place_order(aapl, OrderRequest("c", "AAPL", Side.LONG, D(1)))


# --- next-open fills (the backtester's entry) ---------------------------------------------------------------------


class SteppedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def next_open_broker(market_dir: Path, clock: SteppedClock) -> PaperBroker:
    calendars = {"SPY": get_calendar("XNYS")}
    return PaperBroker(
        CsvProvider(market_dir), INSTRUMENTS, clock, COSTS, fill_model=FillModel.NEXT_OPEN, calendars=calendars
    )


async def test_a_next_open_order_is_pending_until_its_bar_has_closed_then_fills_at_its_open(market_dir: Path) -> None:
    clock = SteppedClock(SPY_AT)  # the 13:40 bar opens now
    paper = next_open_broker(market_dir, clock)
    request = OrderRequest("n1", "SPY", Side.LONG, D(10), stop=D("575.00"), target=D("590.00"))
    with pytest.raises(BrokerError) as pending:
        await paper.place_order(SPY, request)
    assert pending.value.kind is BrokerErrorKind.PENDING and "fills at the open of the next SPY bar" in str(
        pending.value
    )
    status = await paper.order_status("n1")
    assert status is not None and status.state is OrderState.PENDING
    clock.at = datetime(2025, 5, 12, 13, 45, tzinfo=UTC)  # the 13:40 bar has closed: its open is known
    status = await paper.order_status("n1")
    opened = D(str(CsvProvider(market_dir).fetch(SPY, clock.at, 1)["open"].iloc[-1]))
    # The open of the 13:40 bar, +half the spread, +10 bps, up to the cent; the fill time is that bar's open.
    expected = fill_price(quote_from_price(SPY, opened, SPY_AT), Side.LONG, COSTS, SPY)
    assert status is not None and status.state is OrderState.FILLED
    assert (status.average_price, status.filled_at, status.filled_quantity) == (expected, SPY_AT, D(10))
    assert await paper.place_order(SPY, request) == Fill("n1", "SPY", Side.LONG, D(10), expected, status.fees, SPY_AT)


async def test_a_next_open_order_whose_bar_opens_beyond_its_stop_is_rejected_as_the_backtester_skips_it(
    market_dir: Path,
) -> None:
    clock = SteppedClock(SPY_AT)
    paper = next_open_broker(market_dir, clock)
    # A long whose stop sits above where the next bar opens: the move the setup was about has already happened.
    request = OrderRequest("n2", "SPY", Side.LONG, D(10), stop=D("579.90"), target=D("590.00"))
    with pytest.raises(BrokerError):
        await paper.place_order(SPY, request)
    clock.at = datetime(2025, 5, 12, 13, 45, tzinfo=UTC)
    status = await paper.order_status("n2")
    assert status is not None and status.state is OrderState.REJECTED
    assert "the entry bar opened at or beyond the stop" in (status.reason or "")


def spy_until(market_dir: Path, folder: Path, last: str, *, broken_last: bool = False) -> Path:
    """A data folder whose SPY file ends at `last` (a halted feed), its last bar impossible if `broken_last`."""
    folder.mkdir()
    lines = (market_dir / "SPY_5m.csv").read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln[:20] <= last]
    if broken_last:
        fields = kept[-1].split(",")
        fields[2], fields[3] = fields[3], fields[2]  # high below low: a bar no market can print
        kept[-1] = ",".join(fields)
    (folder / "SPY_5m.csv").write_text("\n".join(kept) + "\n")
    return folder


async def test_a_halted_feed_gives_no_quote_as_it_gives_no_analysis(market_dir: Path, tmp_path: Path) -> None:
    halted = spy_until(market_dir, tmp_path / "halted", "2025-05-12T13:35:00Z")
    a_day_later = datetime(2025, 5, 13, 14, 0, tzinfo=UTC)
    paper = PaperBroker(CsvProvider(halted), INSTRUMENTS, FixedClock(a_day_later), COSTS)
    with pytest.raises(BrokerError, match=r"no price for SPY: stale feed: last bar closed"):
        await paper.quote(SPY)


async def test_a_broken_last_bar_is_dropped_and_the_quote_comes_from_the_bar_before(
    market_dir: Path, tmp_path: Path
) -> None:
    broken = spy_until(market_dir, tmp_path / "broken", "2025-06-12T15:05:00Z", broken_last=True)
    at = datetime(2025, 6, 12, 15, 10, tzinfo=UTC)
    quote = await PaperBroker(CsvProvider(broken), INSTRUMENTS, FixedClock(at), COSTS).quote(SPY)
    # The 15:05 bar is impossible and is dropped (1 bad bar of 100): the price is the 15:00 bar's close.
    assert quote.at == datetime(2025, 6, 12, 15, 5, tzinfo=UTC)
    assert quote.mid == Decimal((market_dir / "SPY_5m.csv").read_text().split("2025-06-12T15:00:00Z,")[1].split(",")[3])
