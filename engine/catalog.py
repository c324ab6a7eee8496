"""Built-in instrument definitions: the default watchlist when no config file names one.

Symbols match the files of the shared market data (`SYMBOL_INTERVAL.csv`); tickers are Yahoo Finance's.
Quantities are in lots of `lot_size` steps, each lot `contract_size` units (100,000 for FX, 100 oz for
gold, 1 share, 1 coin, 75 for a NIFTY future).
"""

from __future__ import annotations

from decimal import Decimal

from engine.domain import AssetClass, Instrument, Interval


def _i(
    symbol: str,
    ticker: str,
    asset: AssetClass,
    interval: Interval,
    tick: str,
    pip: str,
    lot: str,
    contract: str,
    calendar: str,
    tz: str,
    spread: str,
    has_volume: bool = True,
) -> Instrument:
    return Instrument(
        symbol=symbol,
        ticker=ticker,
        asset_class=asset,
        interval=interval,
        tick_size=Decimal(tick),
        pip_size=Decimal(pip),
        lot_size=Decimal(lot),
        contract_size=Decimal(contract),
        calendar=calendar,
        timezone=tz,
        spread=Decimal(spread),
        has_volume=has_volume,
    )


_NY = "America/New_York"
_IST = "Asia/Kolkata"
_FX, _METAL, _CRYPTO = AssetClass.FX, AssetClass.METAL, AssetClass.CRYPTO
_EQ, _ETF, _IDX = AssetClass.EQUITY, AssetClass.ETF, AssetClass.INDEX
_H1, _M5 = Interval.H1, Interval.M5

DEFAULT_WATCHLIST: tuple[Instrument, ...] = (
    _i("EURUSD", "EURUSD=X", _FX, _H1, "0.00001", "0.0001", "0.01", "100000", "FX", _NY, "0.00008"),
    _i("GBPUSD", "GBPUSD=X", _FX, _H1, "0.00001", "0.0001", "0.01", "100000", "FX", _NY, "0.00012"),
    _i("XAUUSD", "GC=F", _METAL, _H1, "0.01", "0.1", "0.01", "100", "FX", _NY, "0.25"),
    _i("BTCUSDT", "BTC-USD", _CRYPTO, _H1, "0.01", "1", "0.00001", "1", "CRYPTO", "UTC", "1.00"),
    _i("ETHUSDT", "ETH-USD", _CRYPTO, _H1, "0.01", "0.1", "0.0001", "1", "CRYPTO", "UTC", "0.10"),
    _i("SPY", "SPY", _ETF, _M5, "0.01", "0.01", "1", "1", "XNYS", _NY, "0.01"),
    _i("QQQ", "QQQ", _ETF, _M5, "0.01", "0.01", "1", "1", "XNYS", _NY, "0.01"),
    _i("AAPL", "AAPL", _EQ, _M5, "0.01", "0.01", "1", "1", "XNYS", _NY, "0.01"),
    _i("MSFT", "MSFT", _EQ, _M5, "0.01", "0.01", "1", "1", "XNYS", _NY, "0.02"),
    _i("NIFTY50", "^NSEI", _IDX, _M5, "0.05", "0.05", "1", "75", "XNSE", _IST, "0.50", has_volume=False),
    _i("RELIANCE", "RELIANCE.NS", _EQ, _M5, "0.05", "0.05", "1", "1", "XNSE", _IST, "0.05"),
    _i("HDFCBANK", "HDFCBANK.NS", _EQ, _M5, "0.05", "0.05", "1", "1", "XNSE", _IST, "0.05"),
    _i("INFY", "INFY.NS", _EQ, _M5, "0.05", "0.05", "1", "1", "XNSE", _IST, "0.05"),
    _i("TCS", "TCS.NS", _EQ, _M5, "0.05", "0.05", "1", "1", "XNSE", _IST, "0.10"),
    _i("SBIN", "SBIN.NS", _EQ, _M5, "0.05", "0.05", "1", "1", "XNSE", _IST, "0.05"),
    _i("ICICIBANK", "ICICIBANK.NS", _EQ, _M5, "0.05", "0.05", "1", "1", "XNSE", _IST, "0.05"),
)


def default_instrument(symbol: str) -> Instrument:
    """The built-in definition of `symbol` (raises KeyError naming the known symbols)."""
    for instrument in DEFAULT_WATCHLIST:
        if instrument.symbol == symbol:
            return instrument
    raise KeyError(f"no built-in instrument {symbol!r}; known: {', '.join(i.symbol for i in DEFAULT_WATCHLIST)}")
