"""Kite's NFO instrument master (`GET /instruments/NFO`, a CSV), parsed once a day: the option contracts.

Each row gives a contract's tradingsymbol, expiry, strike, tick size, lot size and type (CE/PE). The lot
size and the expiry a live spread trades come from here, never from the backtest's rule.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from engine.options import OptionType


@dataclass(frozen=True, slots=True)
class OptionContract:
    """One NFO option: underlying name, expiry, strike, type, tradingsymbol, lot size and tick."""

    name: str
    expiry: date
    strike: int
    kind: OptionType
    tradingsymbol: str
    lot_size: int
    tick_size: Decimal


class InstrumentMaster:
    """The option contracts of one day's NFO master, looked up by (name, expiry, strike, type)."""

    def __init__(self, day: date, contracts: list[OptionContract]) -> None:
        self.day = day
        self._by_key = {(c.name, c.expiry, c.strike, c.kind): c for c in contracts}
        self._expiries: dict[str, list[date]] = {}
        for c in contracts:
            self._expiries.setdefault(c.name, []).append(c.expiry)
        for name in self._expiries:
            self._expiries[name] = sorted(set(self._expiries[name]))

    def __len__(self) -> int:
        return len(self._by_key)

    @classmethod
    def parse(cls, text: str, day: date) -> InstrumentMaster:
        """Parse the CSV; rows that are not CE/PE options with a strike and an expiry are skipped."""
        contracts = []
        for row in csv.DictReader(io.StringIO(text)):
            kind = row.get("instrument_type", "")
            if kind not in (OptionType.CALL.value, OptionType.PUT.value) or not row.get("expiry"):
                continue
            try:
                strike = Decimal(row["strike"])
                contracts.append(
                    OptionContract(
                        name=row["name"].strip('"'),
                        expiry=date.fromisoformat(row["expiry"]),
                        strike=int(strike),
                        kind=OptionType(kind),
                        tradingsymbol=row["tradingsymbol"],
                        lot_size=int(row["lot_size"]),
                        tick_size=Decimal(row["tick_size"]),
                    )
                )
            except (KeyError, ValueError, ArithmeticError):
                continue
        return cls(day, contracts)

    def contract(self, name: str, expiry: date, strike: int, kind: OptionType) -> OptionContract | None:
        return self._by_key.get((name, expiry, strike, kind))

    def next_expiry(self, name: str, on_or_after: date) -> date | None:
        """The first listed expiry of `name` on or after a date."""
        return next((d for d in self._expiries.get(name, []) if d >= on_or_after), None)
