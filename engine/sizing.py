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

Conversion prices come from the caller: the desk's latest known prices (`bot.services.rates.RateBook`), or in a
backtest the prices as of each trade's time (`RateHistory`: the linking pair's bars, else configured prices).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Final

import numpy as np

from engine.bars import Bars, to_nanos
from engine.costs import CostModel
from engine.domain import AssetClass, Instrument
from engine.exposure import ExposureLimits

MAX_RISK_FRACTION: Final = Decimal("0.1")
CALENDAR_CURRENCY: Final = {"XNSE": "INR", "XNYS": "USD"}
STABLECOINS: Final = {"USDT": "USD", "USDC": "USD"}
CANNOT_SIZE: Final = "cannot size in"  # how every refusal for want of a conversion price begins
NO_EQUITY: Final = "no equity to risk"


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
        return ONE
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


NO_LIMITS: Final = SizeLimits()


@dataclass(frozen=True)
class SizedOrder:
    """The size that gets sent: total quantity, its child orders, and what it risks, with why it is capped."""

    quantity: Decimal
    children: tuple[Decimal, ...]
    risk_money: Decimal  # account money lost at the stop, before costs, rounded to 0.01
    notional: Decimal  # account money, rounded to 0.01
    notes: tuple[str, ...]  # caps applied, or why the quantity is 0
    rate: Fraction = Fraction(1)  # account money per unit of the quote currency it was sized at
    costs: Decimal = Decimal("0.00")  # expected costs of the round trip (spread, slippage, commissions), account money
    leverage: Decimal = Decimal("0.00")  # notional / equity

    @property
    def risk_with_costs(self) -> Decimal:
        """What the trade loses at its stop once its costs are paid: what the risk budget holds."""
        return self.risk_money + self.costs

    def summary(self, currency: str) -> SizingSummary:
        """The figures a signal shows of this size, in `currency` (the account's)."""
        return SizingSummary(currency, self.notional, self.leverage, self.risk_money, self.costs, self.notes)

    def __post_init__(self) -> None:
        if self.quantity < 0:
            raise ValueError(f"quantity must not be negative, was {self.quantity}")
        if sum(self.children, Decimal(0)) != self.quantity:
            raise ValueError(f"child orders {self.children} must add up to the quantity {self.quantity}")


CENT: Final = Decimal("0.01")
_EXACT_CENTS: Final = 10**26  # cents within the default context's 28 digits
_ZERO_CENTS: Final = Decimal("0.00")
_EXACT_DIGITS: Final = 24  # a money amount below 10^24 quantises to cents within those digits
ONE: Final = Fraction(1)  # the rate of money already in the account's currency
Words = str | Callable[[], str]  # a cap's name, or a function that writes it when the cap holds


@dataclass(frozen=True)
class SizingSummary:
    """What a signal's size means in account money, as shown with it: notional and leverage, the loss at the stop
    and the expected costs of the round trip, and any cap that held it."""

    currency: str
    notional: Decimal
    leverage: Decimal
    risk: Decimal  # to the stop, before costs
    costs: Decimal  # expected: spread, slippage and commission both ways
    notes: tuple[str, ...] = ()

    @property
    def risk_with_costs(self) -> Decimal:
        return self.risk + self.costs

    def to_json(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "notional": str(self.notional),
            "leverage": str(self.leverage),
            "risk": str(self.risk),
            "costs": str(self.costs),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SizingSummary:
        notes = data.get("notes") or []
        assert isinstance(notes, list)
        return cls(
            str(data["currency"]),
            Decimal(str(data["notional"])),
            Decimal(str(data["leverage"])),
            Decimal(str(data["risk"])),
            Decimal(str(data["costs"])),
            tuple(str(n) for n in notes),
        )


def size_order(
    instrument: Instrument,
    entry: Decimal,
    stop: Decimal,
    equity: Decimal,
    risk_fraction: Decimal,
    rate: Fraction,
    limits: SizeLimits | None = None,
    *,
    costs: CostModel | None = None,
    notional_caps: Sequence[tuple[Decimal, Words]] = (),
) -> SizedOrder:
    """Size an order risking at most `equity x risk_fraction` (account money) to the stop, its expected `costs`
    included (None: the price distance alone), within `limits` and each notional cap (account money, with the
    words that name it, or a function that writes them: they are needed only when the cap holds the size)."""
    if not isinstance(equity, Decimal) or not equity.is_finite() or equity <= 0:
        raise ValueError(f"equity must be a positive Decimal, was {equity!r}")
    if not isinstance(risk_fraction, Decimal) or not 0 < risk_fraction <= MAX_RISK_FRACTION:
        raise ValueError(f"risk_fraction must be within (0, {MAX_RISK_FRACTION}], was {risk_fraction!r}")
    if entry <= 0 or stop <= 0 or entry == stop:
        raise ValueError(f"{instrument.symbol}: entry and stop must be distinct positive prices, were {entry}, {stop}")
    if rate.numerator <= 0:  # a Fraction's denominator is positive
        raise ValueError(f"the quote-to-account rate must be positive, was {rate}")
    limits = limits or NO_LIMITS
    # Exact rationals as (numerator, denominator) pairs of ints, never reduced: the same figures as Fraction
    # arithmetic, without a gcd per operation (sizing runs once per trade in a backtest).
    lot, contract = instrument.lot_size.as_integer_ratio(), instrument.contract_size.as_integer_ratio()
    fx = (rate.numerator, rate.denominator)
    per_unit, fixed = ((0, 1), (0, 1)) if costs is None else _expected_costs(instrument, entry, stop, costs)
    price_loss = _mul(_abs_diff(entry, stop), contract, lot, fx)
    cost_per_step = _mul(per_unit, contract, lot, fx)
    fixed_money = _mul(fixed, fx)
    budget = _sub(_mul(equity.as_integer_ratio(), risk_fraction.as_integer_ratio()), fixed_money)
    steps = max(_floor_div(budget, _add(price_loss, cost_per_step)), 0)
    notes: list[str] = []
    if limits.max_quantity is not None:
        cap = _floor_div(limits.max_quantity.as_integer_ratio(), lot)
        if steps > cap:
            steps = cap
            notes.append(f"capped at the maximum size {limits.max_quantity}")
    step_notional = _mul(entry.as_integer_ratio(), contract, lot, fx)
    caps = list(notional_caps)
    if limits.max_notional is not None:
        caps.append((limits.max_notional, f"the maximum notional {limits.max_notional}"))
    for money, words in caps:
        cap = max(_floor_div(money.as_integer_ratio(), step_notional), 0)
        if steps > cap:
            steps = cap
            notes.append(f"capped at {words if isinstance(words, str) else words()}")
    quantity = _lots(steps, instrument.lot_size)
    if steps <= 0:
        notes.append("position too small for the risk budget (0 lots)")
    elif limits.min_quantity is not None and quantity < limits.min_quantity:
        notes.append(f"{quantity} is under the minimum size {limits.min_quantity}")
        steps, quantity = 0, _lots(0, instrument.lot_size)
    children = split_children(quantity, limits.freeze_quantity, instrument.lot_size)
    if len(children) > 1:
        notes.append(f"sent as {len(children)} child orders of at most {limits.freeze_quantity}")
    many = (steps, 1)
    risk = _mul(many, price_loss)
    notional = _mul(many, step_notional)
    spent = _add(_mul(many, cost_per_step), fixed_money if steps else (0, 1))
    money = _cents(notional)
    leverage = (money / equity).quantize(CENT)
    return SizedOrder(quantity, children, _cents(risk), money, tuple(notes), rate, _cents(spent), leverage)


_Ratio = tuple[int, int]  # numerator, positive denominator


def _mul(*factors: _Ratio) -> _Ratio:
    num, den = 1, 1
    for n, d in factors:
        num, den = num * n, den * d
    return num, den


def _add(a: _Ratio, b: _Ratio) -> _Ratio:
    return a[0] * b[1] + b[0] * a[1], a[1] * b[1]


def _sub(a: _Ratio, b: _Ratio) -> _Ratio:
    return a[0] * b[1] - b[0] * a[1], a[1] * b[1]


def _abs_diff(a: Decimal, b: Decimal) -> _Ratio:
    an, ad = a.as_integer_ratio()
    bn, bd = b.as_integer_ratio()
    return abs(an * bd - bn * ad), ad * bd


def _floor_div(a: _Ratio, b: _Ratio) -> int:
    """floor(a / b) for b > 0."""
    return (a[0] * b[1]) // (a[1] * b[0])


def _cents(value: _Ratio) -> Decimal:
    """Round a ratio of money half-even to 0.01."""
    q, r = divmod(value[0] * 100, value[1])
    if 2 * r > value[1] or (2 * r == value[1] and q % 2):
        q += 1
    if -_EXACT_CENTS < q < _EXACT_CENTS:
        return Decimal(q).scaleb(-2)  # the same Decimal, exponent -2, without a division
    return (Decimal(q) / 100).quantize(CENT)


def _expected_costs(instrument: Instrument, entry: Decimal, stop: Decimal, costs: CostModel) -> tuple[_Ratio, _Ratio]:
    """`expected_costs` as ratios."""
    if not (costs.slippage_bps or costs.commission_bps or costs.commission_per_order):
        return instrument.spread.as_integer_ratio(), (0, 1)
    bps = _add(costs.slippage_bps.as_integer_ratio(), costs.commission_bps.as_integer_ratio())
    levels = _add(entry.as_integer_ratio(), stop.as_integer_ratio())
    per_unit = _add(instrument.spread.as_integer_ratio(), _mul(bps, levels, (1, 10_000)))
    per_order = costs.commission_per_order.as_integer_ratio()
    return per_unit, (2 * per_order[0], per_order[1])


def expected_costs(
    instrument: Instrument, entry: Decimal, stop: Decimal, costs: CostModel
) -> tuple[Fraction, Fraction]:
    """The round trip's expected costs to the stop, in the quote currency: per unit of the instrument (the whole
    spread, slippage and the commission's basis points on the entry and on the stop) and per trade (the
    per-order commission, twice)."""
    per_unit, per_trade = _expected_costs(instrument, entry, stop, costs)
    return Fraction(*per_unit), Fraction(*per_trade)


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


def _power_of_ten_exponent(step: Decimal) -> int:
    """-k for a step of 10^-k (k >= 1), else 0."""
    shape = step.as_tuple()
    exponent = shape.exponent
    return exponent if shape.digits == (1,) and isinstance(exponent, int) and exponent < 0 else 0


def _lots(steps: int, lot: Decimal) -> Decimal:
    return (Decimal(max(steps, 0)) * lot).quantize(lot)


def to_money(value: Fraction) -> Decimal:
    """Round a Fraction of money half-even to 0.01."""
    return _cents((value.numerator, value.denominator))


def pnl_to_account(pnl: Decimal, rate: Fraction) -> Decimal:
    """A P&L in the instrument's quote currency as account money, exactly converted, to 0.01."""
    if rate == 1 and pnl.is_finite() and pnl.adjusted() < _EXACT_DIGITS:  # the same cents, without the ratio
        cents = pnl.quantize(CENT, rounding=ROUND_HALF_EVEN)
        return cents if cents else _ZERO_CENTS  # never -0.00
    return _cents(_mul(pnl.as_integer_ratio(), (rate.numerator, rate.denominator)))


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
    exposure: ExposureLimits = field(default_factory=ExposureLimits)

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
            return ONE
        quote = self.quote_currencies.get(instrument.symbol)
        return quote_to_account(instrument, self.account_currency, price, prices, quote)

    def rate_inputs(self, instrument: Instrument, prices: Mapping[str, Decimal]) -> tuple[Decimal | None, ...]:
        """The prices `to_account` reads from `prices` for `instrument` (its linking pair, either way round): a closed
        trade's P&L in account money changes only when these do. Empty when none is read."""
        if self.account_currency is None:
            return ()
        quote = quote_currency(instrument, self.quote_currencies.get(instrument.symbol))
        account = self.account_currency
        if quote == account or base_currency(instrument) == account:
            return ()
        return prices.get(f"{quote}{account}"), prices.get(f"{account}{quote}")

    def size(
        self,
        instrument: Instrument,
        entry: Decimal,
        stop: Decimal,
        equity: Decimal,
        prices: Mapping[str, Decimal],
        *,
        costs: CostModel | None = None,
        open_notional: Decimal = Decimal(0),
    ) -> SizedOrder | str:
        """The order risking `risk_fraction` of `equity` from `entry` to `stop` with its expected `costs`, within
        the symbol's limits, its notional cap and what the open book (`open_notional`, account money) leaves of the
        total cap; or why it cannot be sized."""
        if not equity.is_finite() or equity <= 0:
            return f"{NO_EQUITY}: realised equity is {equity:,.2f}; entries are refused until it is positive"
        try:
            rate = self.rate(instrument, entry, prices)
        except ValueError as exc:
            return f"{CANNOT_SIZE} {self.account_currency}: {exc}; set [bot.fx_rates] or add the pair to the watchlist"
        own, whose = self.exposure.cap(instrument)
        total = self.exposure.max_total_leverage
        room = max(equity * total - open_notional, Decimal(0))
        caps: list[tuple[Decimal, Words]] = [
            (equity * own, lambda: f"the {own:g}x notional cap of {whose} positions ({equity * own:,.2f})"),
            (room, lambda: f"the {total:g}x cap on all open positions ({room:,.2f} left)"),
        ]
        limits = self.limits.get(instrument.symbol)
        return size_order(
            instrument, entry, stop, equity, self.risk_fraction, rate, limits, costs=costs, notional_caps=caps
        )

    def notional(
        self, instrument: Instrument, quantity: Decimal, price: Decimal, prices: Mapping[str, Decimal]
    ) -> Decimal:
        """A position's notional in account money at `price` (ValueError names a missing conversion pair)."""
        rate = self.rate(instrument, price, prices)
        ratios = (quantity, instrument.contract_size, price)
        return _cents(_mul(*(x.as_integer_ratio() for x in ratios), (rate.numerator, rate.denominator)))

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


@dataclass(frozen=True, eq=False)
class TickSizer:
    """`Sizing.size` for one instrument and cost model with levels in whole ticks, to the same quantity and money:
    the instrument's and the account's ratios taken once (a backtest sizes thousands of entries). For a symbol
    without order limits (`of` gives None otherwise); a size of 0 leaves its reason to `Sizing.size`."""

    sizing: Sizing
    instrument: Instrument
    costs: CostModel
    tick_units: _Ratio  # one tick of one lot step in quote money: tick x contract x lot
    units: _Ratio  # one lot step of contracts: contract x lot
    tick: _Ratio
    spread: _Ratio
    bps: _Ratio  # slippage and commission, basis points of price
    fixed: _Ratio  # the per-order commission, both ways
    risk_fraction: _Ratio
    own_cap: _Ratio  # the position's notional cap, a multiple of equity
    total_cap: _Ratio  # all open positions' notional cap, a multiple of equity
    lot_exponent: int  # a lot step that is a power of ten below 1 (10^-k: -k), else 0

    @classmethod
    def of(cls, sizing: Sizing, instrument: Instrument, costs: CostModel) -> TickSizer | None:
        if sizing.limits.get(instrument.symbol) is not None:
            return None
        own, _ = sizing.exposure.cap(instrument)
        slippage, commission_bps = costs.slippage_bps.as_integer_ratio(), costs.commission_bps.as_integer_ratio()
        per_order = costs.commission_per_order.as_integer_ratio()
        tick = instrument.tick_size.as_integer_ratio()
        units = _mul(instrument.contract_size.as_integer_ratio(), instrument.lot_size.as_integer_ratio())
        return cls(
            sizing,
            instrument,
            costs,
            _mul(tick, units),
            units,
            tick,
            instrument.spread.as_integer_ratio(),
            _add(slippage, commission_bps),
            (2 * per_order[0], per_order[1]),
            sizing.risk_fraction.as_integer_ratio(),
            own.as_integer_ratio(),
            sizing.exposure.max_total_leverage.as_integer_ratio(),
            _power_of_ten_exponent(instrument.lot_size),
        )

    def size(
        self, entry: int, stop: int, equity: Decimal, rate: Fraction, open_notional: Decimal
    ) -> tuple[Decimal, Decimal, Decimal]:
        """(quantity, what it risks with its expected costs, its notional) of the order from `entry` to `stop` (in
        ticks): `size_order`'s arithmetic on the same exact ratios. Equity must be positive."""
        fx_num, fx_den = rate.numerator, rate.denominator
        if self.bps[0] or self.fixed[0]:
            levels = ((entry + stop) * self.tick[0], self.tick[1])
            per_unit = _add(self.spread, _mul(self.bps, levels, (1, 10_000)))
        else:
            per_unit = self.spread
        money_num, money_den = self.tick_units[0] * fx_num, self.tick_units[1] * fx_den  # a tick of a step
        price_loss = (abs(entry - stop) * money_num, money_den)
        cost_per_step = (per_unit[0] * self.units[0] * fx_num, per_unit[1] * self.units[1] * fx_den)
        fixed_money = (self.fixed[0] * fx_num, self.fixed[1] * fx_den)
        money = equity.as_integer_ratio()
        budget = _sub(_mul(money, self.risk_fraction), fixed_money)
        steps = max(_floor_div(budget, _add(price_loss, cost_per_step)), 0)
        step_notional = (entry * money_num, money_den)
        room = _sub(_mul(money, self.total_cap), open_notional.as_integer_ratio())
        for cap_money in (_mul(money, self.own_cap), room if room[0] > 0 else (0, 1)):
            steps = min(steps, max(_floor_div(cap_money, step_notional), 0))
        if steps <= 0:
            return _lots(0, self.instrument.lot_size), _ZERO_CENTS, _ZERO_CENTS
        risk = _cents((steps * price_loss[0], price_loss[1]))
        spent = _add((steps * cost_per_step[0], cost_per_step[1]), fixed_money)
        quantity = (
            Decimal(steps).scaleb(self.lot_exponent) if self.lot_exponent else _lots(steps, self.instrument.lot_size)
        )
        notional = _cents((steps * step_notional[0], step_notional[1]))
        return quantity, risk + _cents(spent) if spent[0] else risk, notional
