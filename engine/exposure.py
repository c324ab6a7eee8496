"""Exposure caps: how much notional one position, and the whole open book, may hold as multiples of equity.

Each instrument falls in an exposure class (cash equity, major or other FX, gold, other metals, index futures,
crypto); a position's notional is capped at its class's multiple of equity (overridden per symbol), and all open
positions together at `max_total_leverage` x equity. `engine.sizing.Sizing.size` applies both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Final

from engine.domain import AssetClass, Instrument


class ExposureClass(StrEnum):
    """What kind of exposure an instrument is, for its notional cap."""

    CASH_EQUITY = "cash_equity"  # shares and ETFs, bought outright
    FX_MAJOR = "fx_major"  # both currencies among USD, EUR, JPY, GBP, CHF, CAD
    FX_OTHER = "fx_other"
    GOLD = "gold"
    METAL = "metal"
    INDEX = "index"  # index futures (NIFTY)
    CRYPTO = "crypto"


FX_MAJOR_CURRENCIES: Final = frozenset({"USD", "EUR", "JPY", "GBP", "CHF", "CAD"})
# Notional per position as a multiple of equity: what a careful retail trader would allow, at or below the ESMA
# retail leverage limits (30:1 major FX, 20:1 other FX and gold, 10:1 other metals, 2:1 crypto), with no margin on
# shares and 5x on index futures (NSE margins allow about 8x).
DEFAULT_MAX_LEVERAGE: Final = MappingProxyType(
    {
        ExposureClass.CASH_EQUITY: Decimal(1),
        ExposureClass.FX_MAJOR: Decimal(30),
        ExposureClass.FX_OTHER: Decimal(20),
        ExposureClass.GOLD: Decimal(20),
        ExposureClass.METAL: Decimal(10),
        ExposureClass.INDEX: Decimal(5),
        ExposureClass.CRYPTO: Decimal(2),
    }
)
DEFAULT_MAX_TOTAL_LEVERAGE: Final = Decimal(30)  # all open positions together


_CLASS_WORDS: Final = MappingProxyType({kind: kind.value.replace("_", " ") for kind in ExposureClass})


def exposure_class(instrument: Instrument) -> ExposureClass:
    """The exposure class of an instrument (its notional cap)."""
    return _exposure_class(instrument.asset_class, instrument.symbol)


@lru_cache(maxsize=1024)
def _exposure_class(a: AssetClass, symbol: str) -> ExposureClass:
    if a in (AssetClass.EQUITY, AssetClass.ETF):
        return ExposureClass.CASH_EQUITY
    if a is AssetClass.INDEX:
        return ExposureClass.INDEX
    if a is AssetClass.CRYPTO:
        return ExposureClass.CRYPTO
    if a is AssetClass.METAL:
        return ExposureClass.GOLD if symbol.upper().startswith("XAU") else ExposureClass.METAL
    symbol = symbol.upper()
    major = len(symbol) == 6 and {symbol[:3], symbol[3:]} <= FX_MAJOR_CURRENCIES
    return ExposureClass.FX_MAJOR if major else ExposureClass.FX_OTHER


@dataclass(frozen=True)
class ExposureLimits:
    """Notional caps: per position by exposure class (overridden per symbol), and for the whole open book."""

    max_leverage: Mapping[ExposureClass, Decimal] = field(default_factory=lambda: dict(DEFAULT_MAX_LEVERAGE))
    per_symbol: Mapping[str, Decimal] = field(default_factory=dict)
    max_total_leverage: Decimal = DEFAULT_MAX_TOTAL_LEVERAGE

    def __post_init__(self) -> None:
        merged = {**DEFAULT_MAX_LEVERAGE, **self.max_leverage}
        for name, value in (*((str(k), v) for k, v in merged.items()), *self.per_symbol.items()):
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"max leverage of {name} must be a positive Decimal, was {value!r}")
        total = self.max_total_leverage
        if not isinstance(total, Decimal) or not total.is_finite() or total <= 0:
            raise ValueError(f"max_total_leverage must be a positive Decimal, was {total!r}")
        object.__setattr__(self, "max_leverage", merged)
        object.__setattr__(self, "per_symbol", dict(self.per_symbol))

    def cap(self, instrument: Instrument) -> tuple[Decimal, str]:
        """The most notional one position may hold, as a multiple of equity, and what sets it."""
        own = self.per_symbol.get(instrument.symbol)
        if own is not None:
            return own, f"{instrument.symbol}'s"
        kind = exposure_class(instrument)
        return self.max_leverage[kind], _CLASS_WORDS[kind]
