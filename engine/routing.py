"""Which market an instrument trades in, and the broker account that market is routed to.

Markets: FX and metals (OANDA or paper), NSE cash and F&O (Kite or paper), everything else (paper). Each
routed account has its own currency, starting equity and protections (daily loss, positions); the bot's
overall limits apply on top. Sizing uses the routed account's currency, so an INR account sizes NSE trades
without any USDINR rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Final

from engine.domain import AssetClass, Instrument
from engine.protections import ProtectionConfig
from engine.sizing import Sizing

NSE_CALENDAR: Final = "XNSE"


class Market(StrEnum):
    FX = "fx"  # FX pairs and metals (gold)
    NSE = "nse"  # NSE cash and F&O
    OTHER = "other"  # US stocks and ETFs, crypto, ...


def market_of(instrument: Instrument) -> Market:
    if instrument.asset_class in (AssetClass.FX, AssetClass.METAL):
        return Market.FX
    if instrument.calendar == NSE_CALENDAR:
        return Market.NSE
    return Market.OTHER


@dataclass(frozen=True)
class Account:
    """A broker account: its name (the broker), money, starting equity, protections and sizing."""

    name: str
    equity: Decimal
    sizing: Sizing
    protections: ProtectionConfig = field(default_factory=ProtectionConfig)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an account needs a name")
        if not self.equity.is_finite() or self.equity <= 0:
            raise ValueError(f"account {self.name}: equity must be positive, was {self.equity}")
        if not self.sizing.account_currency:
            raise ValueError(f"account {self.name}: sizing needs the account's currency")

    @property
    def currency(self) -> str:
        return self.sizing.account_currency or ""
