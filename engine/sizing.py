"""Order sizing in the account's currency: risk per trade converted to the instrument's money, with limits.

One sizing path for the desk and the backtester (`Sizing.size`): the risk budget is in the account's currency,
so the money risked per lot is converted first:

    loss per lot (account) = |entry - stop| x contract_size x lot_size x rate(quote -> account)
    lots = floor(equity x risk_fraction / loss per lot)     (whole lot steps, never rounded up)

The rate is exact (`Fraction`): 1 when the quote currency is the account's (EURUSD, XAUUSD for a USD
account), 1/entry when the instrument is quoted in the account currency's units the other way round
(USDJPY: a yen is 1/150 of a dollar at 150.000), and otherwise the price of the pair that links them, given
by the caller (EURGBP for a USD account needs GBPUSD). Gold's pip is 0.1 and its contract 100 oz: a $10 stop
on one lot risks $1,000, not $100,000 (the system we replace was 10,000x wrong there).

Limits after the risk budget, each counted with its reason: `max_quantity` caps, a `max_notional` (account
money) caps, a result under `min_quantity` is not traded. Orders larger than the instrument's
`freeze_quantity` (NSE F&O style) go out as child orders of at most that size, whole lots each.

Conversion prices come from the caller: the desk's latest known prices (`bot.rates.RateBook`), or in a
backtest the prices as of each trade's time (`RateHistory`: the linking pair's bars, else configured prices).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Final

import numpy as np

from engine.bars import Bars, to_nanos
from engine.domain import AssetClass, Instrument

MAX_RISK_FRACTION: Final = Decimal("0.1")
CALENDAR_CURRENCY: Final = {"XNSE": "INR", "XNYS": "USD"}
STABLECOINS: Final = {"USDT": "USD", "USDC": "USD"}
CANNOT_SIZE: Final = "cannot size in"  # how every refusal for want of a conversion price begins


def quote_currency(instrument: Instrument, configured: str | None = None) -> str:
    """The currency the instrument's prices are in (EURUSD: USD, USDJPY: JPY, RELIANCE: INR, BTCUSDT: USD)."""
    if configured is not None:
        return configured
    if instrument.calendar in CALENDAR_CURRENCY:
        return CALENDAR_CURRENCY[instrument.calendar]
    symbol = instrument.symbol.upper()
    for coin, currency in STABLECOINS.items():
        if symbol.endswith(coin):
            return currency
    if instrument.asset_class in (AssetClass.FX, AssetClass.METAL, AssetClass.CRYPTO) and len(symbol) == 6:
        return symbol[3:]
    raise ValueError(f"{instrument.symbol}: cannot tell its quote currency; configure it explicitly")


def conversion_pair(instrument: Instrument, account_currency: str, quote: str | None = None) -> str | None:
    """The pair whose price converts this instrument's money into the account's, or None when none is needed.

    None when the quote currency is the account's or the instrument is itself quoted against it (USDJPY for
    a USD account converts at its own price); otherwise `{quote}{account}` (INRUSD, GBPUSD), which callers
    may also find inverted (USDINR).
    """
    quoted = quote_currency(instrument, quote)
    if quoted == account_currency or base_currency(instrument) == account_currency:
        return None
    return f"{quoted}{account_currency}"


def base_currency(instrument: Instrument) -> str | None:
    """The first currency of a 6-letter FX or metal pair (EURUSD: EUR, XAUUSD: XAU), else None."""
    symbol = instrument.symbol.upper()
    if instrument.asset_class in (AssetClass.FX, AssetClass.METAL) and len(symbol) == 6:
        return symbol[:3]
    return None


def quote_to_account(
    instrument: Instrument,
    account_currency: str,
    entry: Decimal,
    rates: Mapping[str, Decimal] | None = None,
    quote: str | None = None,
) -> Fraction:
    """Account money per one unit of the instrument's quote currency, exactly.

    `rates` holds prices of other pairs by symbol ("GBPUSD": 1.27) for crosses; a missing one raises
    ValueError naming the pair needed. `quote` overrides the quote currency told from the symbol.
    """
    quote = quote_currency(instrument, quote)
    if quote == account_currency:
        return Fraction(1)
    if base_currency(instrument) == account_currency:
        return 1 / Fraction(entry)  # USDJPY for a USD account: one yen is 1/entry dollars
    known = rates or {}
    direct, inverse = f"{quote}{account_currency}", f"{account_currency}{quote}"
    if direct in known:
        return Fraction(known[direct])
    if inverse in known:
        return 1 / Fraction(known[inverse])
    raise ValueError(
        f"{instrument.symbol}: no {direct} or {inverse} price to convert {quote} into the {account_currency} account"
    )


@dataclass(frozen=True)
class SizeLimits:
    """Per-instrument order limits (quantities in lots of the instrument, notional in account money)."""

    min_quantity: Decimal | None = None
    max_quantity: Decimal | None = None
    max_notional: Decimal | None = None
    freeze_quantity: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("min_quantity", "max_quantity", "max_notional", "freeze_quantity"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value <= 0):
                raise ValueError(f"{name} must be a positive Decimal or None, was {value!r}")
        if self.min_quantity is not None and self.max_quantity is not None and self.min_quantity > self.max_quantity:
            raise ValueError(
                f"min_quantity must not exceed max_quantity, was {self.min_quantity} > {self.max_quantity}"
            )


@dataclass(frozen=True)
class SizedOrder:
    """The size that gets sent: total quantity, its child orders, and what it risks, with why it is capped."""

    quantity: Decimal
    children: tuple[Decimal, ...]
    risk_money: Decimal  # account money lost at the stop, before costs, rounded to 0.01
    notional: Decimal  # account money, rounded to 0.01
    notes: tuple[str, ...]  # caps applied, or why the quantity is 0
    rate: Fraction = Fraction(1)  # account money per unit of the quote currency it was sized at

    def __post_init__(self) -> None:
        if self.quantity < 0:
            raise ValueError(f"quantity must not be negative, was {self.quantity}")
        if sum(self.children, Decimal(0)) != self.quantity:
            raise ValueError(f"child orders {self.children} must add up to the quantity {self.quantity}")


CENT: Final = Decimal("0.01")


def size_order(
    instrument: Instrument,
    entry: Decimal,
    stop: Decimal,
    equity: Decimal,
    risk_fraction: Decimal,
    rate: Fraction,
    limits: SizeLimits | None = None,
) -> SizedOrder:
    """Size an order risking at most `equity x risk_fraction` (account money) to the stop, within `limits`."""
    if not isinstance(equity, Decimal) or not equity.is_finite() or equity <= 0:
        raise ValueError(f"equity must be a positive Decimal, was {equity!r}")
    if not isinstance(risk_fraction, Decimal) or not 0 < risk_fraction <= MAX_RISK_FRACTION:
        raise ValueError(f"risk_fraction must be within (0, {MAX_RISK_FRACTION}], was {risk_fraction!r}")
    if entry <= 0 or stop <= 0 or entry == stop:
        raise ValueError(f"{instrument.symbol}: entry and stop must be distinct positive prices, were {entry}, {stop}")
    if rate <= 0:
        raise ValueError(f"the quote-to-account rate must be positive, was {rate}")
    limits = limits or SizeLimits()
    lot, contract = Fraction(instrument.lot_size), Fraction(instrument.contract_size)
    loss_per_step = abs(Fraction(entry) - Fraction(stop)) * contract * lot * rate
    steps = math.floor(Fraction(equity) * Fraction(risk_fraction) / loss_per_step)
    notes: list[str] = []
    if limits.max_quantity is not None:
        cap = math.floor(Fraction(limits.max_quantity) / lot)
        if steps > cap:
            steps = cap
            notes.append(f"capped at the maximum size {limits.max_quantity}")
    if limits.max_notional is not None:
        cap = math.floor(Fraction(limits.max_notional) / (Fraction(entry) * contract * lot * rate))
        if steps > cap:
            steps = cap
            notes.append(f"capped at the maximum notional {limits.max_notional}")
    quantity = _lots(steps, instrument.lot_size)
    if steps <= 0:
        notes.append("position too small for the risk budget (0 lots)")
    elif limits.min_quantity is not None and quantity < limits.min_quantity:
        notes.append(f"{quantity} is under the minimum size {limits.min_quantity}")
        steps, quantity = 0, _lots(0, instrument.lot_size)
    children = split_children(quantity, limits.freeze_quantity, instrument.lot_size)
    if len(children) > 1:
        notes.append(f"sent as {len(children)} child orders of at most {limits.freeze_quantity}")
    risk = Fraction(steps) * loss_per_step
    notional = Fraction(steps) * Fraction(entry) * contract * lot * rate
    return SizedOrder(quantity, children, to_money(risk), to_money(notional), tuple(notes), rate)


def split_children(quantity: Decimal, freeze: Decimal | None, lot: Decimal) -> tuple[Decimal, ...]:
    """Split `quantity` into orders of at most `freeze` (floored to whole lots), the remainder last."""
    if quantity <= 0:
        return ()
    if freeze is None or quantity <= freeze:
        return (quantity,)
    chunk = (freeze // lot) * lot
    if chunk <= 0:
        raise ValueError(f"freeze quantity {freeze} is below one lot step {lot}")
    full, rest = divmod(quantity, chunk)
    return (*([chunk.quantize(lot)] * int(full)), *((rest.quantize(lot),) if rest else ()))


def _lots(steps: int, lot: Decimal) -> Decimal:
    return (Decimal(max(steps, 0)) * lot).quantize(lot)


def to_money(value: Fraction) -> Decimal:
    """Round a Fraction of money half-even to 0.01."""
    cents = round(value * 100)
    return (Decimal(cents) / 100).quantize(CENT)


def pnl_to_account(pnl: Decimal, rate: Fraction) -> Decimal:
    """A P&L in the instrument's quote currency as account money, exactly converted, to 0.01."""
    return to_money(Fraction(pnl) * rate)


@dataclass(frozen=True)
class Sizing:
    """How an account sizes orders: `risk_fraction` of its equity at risk, in its currency, within limits.

    `account_currency` None sizes each instrument in its own quote currency (a backtest of one symbol in its
    money, rate 1). `quote_currencies` overrides the quote currency told from a symbol; `limits` are the
    per-symbol order limits.
    """

    risk_fraction: Decimal = Decimal("0.01")
    account_currency: str | None = None
    quote_currencies: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, SizeLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rf = self.risk_fraction
        if not isinstance(rf, Decimal) or not rf.is_finite() or not 0 < rf <= MAX_RISK_FRACTION:
            raise ValueError(f"risk_fraction must be a Decimal within (0, {MAX_RISK_FRACTION}], was {rf!r}")
        object.__setattr__(self, "quote_currencies", dict(self.quote_currencies))  # copies: the caller's stay theirs
        object.__setattr__(self, "limits", dict(self.limits))

    def currency(self, instrument: Instrument) -> str:
        """The currency money is counted in for `instrument`: the account's, or its own quote currency."""
        if self.account_currency is not None:
            return self.account_currency
        return quote_currency(instrument, self.quote_currencies.get(instrument.symbol))

    def rate(self, instrument: Instrument, price: Decimal, prices: Mapping[str, Decimal]) -> Fraction:
        """Account money per unit of the instrument's quote currency at `price` (ValueError names a missing pair)."""
        if self.account_currency is None:
            return Fraction(1)
        quote = self.quote_currencies.get(instrument.symbol)
        return quote_to_account(instrument, self.account_currency, price, prices, quote)

    def size(
        self, instrument: Instrument, entry: Decimal, stop: Decimal, equity: Decimal, prices: Mapping[str, Decimal]
    ) -> SizedOrder | str:
        """The order risking `risk_fraction` of `equity` from `entry` to `stop`, or why it cannot be sized."""
        try:
            rate = self.rate(instrument, entry, prices)
        except ValueError as exc:
            return f"{CANNOT_SIZE} {self.account_currency}: {exc}; set [bot.fx_rates] or add the pair to the watchlist"
        limits = self.limits.get(instrument.symbol)
        return size_order(instrument, entry, stop, equity, self.risk_fraction, rate, limits)

    def to_account(
        self, instrument: Instrument, pnl: Decimal, exit_price: Decimal, prices: Mapping[str, Decimal]
    ) -> Decimal:
        """A closed trade's P&L in account money, converted at `exit_price` or the linking pair's price.

        ValueError names the missing pair.
        """
        return pnl_to_account(pnl, self.rate(instrument, exit_price, prices))


@dataclass(frozen=True, eq=False)
class RateHistory:
    """Conversion prices over time for a backtest: the last close of a linking pair's bars, else a fixed price.

    `series` holds bars by the symbol they are quoted as (USDINR); a bar's close counts from its close time.
    `fixed` holds configured prices (`[bot.fx_rates]`), used as written before the series starts or without one.
    """

    fixed: Mapping[str, Decimal] = field(default_factory=dict)
    series: Mapping[str, Bars] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for symbol, price in self.fixed.items():
            if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
                raise ValueError(f"fixed rate {symbol} must be a positive Decimal, was {price!r}")

    def prices_at(self, at: datetime) -> dict[str, Decimal]:
        """Known prices by symbol as of `at`: each series' last close of a bar closed by then, over the fixed ones."""
        prices = dict(self.fixed)
        if self.series:
            now = to_nanos(at)
            for symbol, bars in self.series.items():
                k = int(np.searchsorted(bars.close_time, now, side="right")) - 1
                if k >= 0:
                    prices[symbol] = Decimal(repr(float(bars.close[k])))
        return prices
