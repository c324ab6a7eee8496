"""What trades, and whether the pre-deploy gate validated exactly that.

A *system* is one strategy with its exact parameters on one instrument under the rules that turn its setups into
trades: the instrument's definition and its calendar's entry rules, the setup validation rules, the quality
weights and the minimum score, the costs and the exit rules, and the engine code that applies them. Its
*fingerprint* hashes all of that (and the end of the data its parameters were tuned on, which decides where the
gate's out-of-sample period starts). Money management is left out: equity, risk per trade, the account currency
and size limits scale a system's trades; they do not choose them.

The gate stores the fingerprint with every baseline. A pair's status (`judge`):

* VALIDATED: the newest baseline of exactly this system passed, and its data ends within `max_age` of now;
* FAILED: the newest baseline of exactly this system failed the gate;
* STALE: the pair has baselines, but none of this system (its parameters, rules, engine code or tuning window
  changed since), or the one it has ends more than `max_age` before now, or after now (a replay on the bot clock
  must not be validated on data from its own future);
* UNVALIDATED: the pair was never validated.

Every figure shown with a status says how sure it is: the baseline's out-of-sample win rate with its 90 %
Clopper-Pearson interval and expectancy with its 90 % Student-t interval (`BaselineStats`), and whether the
quality score ranks its trades at all (`ScoreEdge`: the one-sided Spearman test on the out-of-sample trades).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any, Final

from engine import probability
from engine.domain import Interval, ensure_utc

FINGERPRINT_CHARS: Final = 16
PARAMS_ID_CHARS: Final = 10
CONFIDENCE: Final = 0.90  # the intervals every validated figure is shown with
SCORE_ALPHA: Final = 0.05  # a score has a measured edge when its one-sided rank test has p below this
MIN_SCORE_TRADES: Final = 20  # fewer out-of-sample trades: the score's edge is not measured at all
_SPEC_PARTS: Final = {"params": "parameters", "rules": "trading rules", "code": "engine code", "tuned_until": "tuning"}


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces; Decimals, enums, instants and durations as plain text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain, allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return ensure_utc(value, "instant").isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} has no canonical JSON form: {value!r}")


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


@dataclass(frozen=True)
class SystemSpec:
    """One traded system: strategy, instrument and everything that decides its trades (see the module docstring)."""

    strategy: str
    symbol: str
    interval: Interval
    params: Mapping[str, Any]
    rules: Mapping[str, Any]
    code: str
    tuned_until: datetime | None = None  # its parameters were chosen on data up to here
    _fingerprint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.strategy or not self.symbol or not self.code:
            raise ValueError(f"a system needs a strategy, a symbol and a code version, was {self!r}")
        if self.tuned_until is not None:
            ensure_utc(self.tuned_until, "tuned_until")
        # Normalised through JSON once (fresh copies): the fingerprint depends on the values, not on their types.
        object.__setattr__(self, "params", json.loads(canonical_json(dict(self.params))))
        object.__setattr__(self, "rules", json.loads(canonical_json(dict(self.rules))))
        object.__setattr__(self, "_fingerprint", _digest(canonical_json(self.to_json()), FINGERPRINT_CHARS))

    @property
    def pair(self) -> tuple[str, str]:
        return self.strategy, self.symbol

    @property
    def fingerprint(self) -> str:
        """The system's identity: equal exactly when everything that decides its trades is equal."""
        return self._fingerprint

    @property
    def params_id(self) -> str:
        """A short hash of the parameters alone, to tell parameter sets apart at a glance."""
        return _digest(canonical_json(dict(self.params)), PARAMS_ID_CHARS)

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "symbol": self.symbol,
            "interval": self.interval.value,
            "params": dict(self.params),
            "rules": dict(self.rules),
            "code": self.code,
            "tuned_until": None if self.tuned_until is None else self.tuned_until.isoformat(),
        }

    def differences(self, stored: Mapping[str, Any]) -> tuple[str, ...]:
        """What differs from a stored system (`to_json` of another): parameters, trading rules, engine code..."""
        mine = self.to_json()
        if not stored:
            return ("the system's record (validated before systems were fingerprinted)",)
        return tuple(
            word for key, word in _SPEC_PARTS.items() if canonical_json(mine[key]) != canonical_json(stored.get(key))
        )


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure and its two-sided interval at `CONFIDENCE`."""

    value: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.low <= self.value <= self.high):
            raise ValueError(f"an estimate must lie within its interval, was {self.value} in {self.low}..{self.high}")


@dataclass(frozen=True, slots=True)
class BaselineStats:
    """Out-of-sample trade count, win rate and expectancy of a baseline, each with its 90 % interval."""

    trades: int
    win_rate: Estimate | None
    expectancy_r: Estimate | None

    @classmethod
    def of(cls, r_multiples: Sequence[float], win_r: float) -> BaselineStats:
        """Win rate (wins are R >= `win_r`) with its Clopper-Pearson interval; mean R with its Student-t interval."""
        rs = [float(r) for r in r_multiples]
        n = len(rs)
        if n == 0:
            return cls(0, None, None)
        wins = sum(r >= win_r for r in rs)
        tail = (1 - CONFIDENCE) / 2
        low = 0.0 if wins == 0 else probability.beta_ppf(tail, wins, n - wins + 1)
        high = 1.0 if wins == n else probability.beta_ppf(1 - tail, wins + 1, n - wins)
        win_rate = Estimate(wins / n, low, high)
        mean = math.fsum(rs) / n
        if n < 2:
            return cls(n, win_rate, None)
        sd = math.sqrt(math.fsum((r - mean) ** 2 for r in rs) / (n - 1))
        half = probability.student_t_ppf(1 - tail, n - 1) * sd / math.sqrt(n)
        return cls(n, win_rate, Estimate(mean, mean - half, mean + half))

    def text(self) -> str:
        """`70 trades · win 41% (31-51%) · exp +0.38R (+0.05..+0.71R)`, the intervals at 90 %."""
        parts = [f"{self.trades} trades"]
        if self.win_rate is not None:
            w = self.win_rate
            parts.append(f"win {w.value:.0%} ({w.low:.0%}-{w.high:.0%})")
        if self.expectancy_r is not None:
            e = self.expectancy_r
            parts.append(f"exp {e.value:+.2f}R ({e.low:+.2f}..{e.high:+.2f}R)")
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class ScoreEdge:
    """Whether the quality score ranks a baseline's out-of-sample trades: Spearman's rho of quality with R.

    The test is one-sided (does a higher score go with a higher R?); fewer than `MIN_SCORE_TRADES` trades or
    no spread in the scores or the outcomes measure nothing.
    """

    trades: int
    rho: float | None
    p_value: float | None

    def __post_init__(self) -> None:
        if (self.rho is None) != (self.p_value is None):
            raise ValueError("rho and its p-value are measured together")
        if self.p_value is not None and not 0.0 <= self.p_value <= 1.0:
            raise ValueError(f"p-value must be within 0..1, was {self.p_value}")

    @classmethod
    def measure(cls, quality: Sequence[float], r_multiples: Sequence[float]) -> ScoreEdge:
        """Measure the rank correlation of scores with the R multiples of the same trades."""
        if len(quality) != len(r_multiples):
            raise ValueError(f"one score per trade: {len(quality)} scores for {len(r_multiples)} trades")
        n = len(quality)
        if n < MIN_SCORE_TRADES or len(set(quality)) < 2 or len(set(r_multiples)) < 2:
            return cls(n, None, None)
        rho, p = probability.spearman_greater([float(q) for q in quality], [float(r) for r in r_multiples])
        if not (math.isfinite(rho) and math.isfinite(p)):
            return cls(n, None, None)
        return cls(n, rho, p)

    @property
    def has_edge(self) -> bool:
        """A positive rank correlation that chance alone gives less than `SCORE_ALPHA` of the time."""
        return self.rho is not None and self.p_value is not None and self.rho > 0 and self.p_value < SCORE_ALPHA

    def strength(self) -> str:
        rho = abs(self.rho or 0.0)
        return "very weak" if rho < 0.1 else "weak" if rho < 0.3 else "moderate" if rho < 0.5 else "strong"

    def text(self) -> str:
        """What the score is worth for this pair, in words with its numbers."""
        if self.rho is None or self.p_value is None:
            return f"score: edge not measured ({self.trades} out-of-sample trades, at least {MIN_SCORE_TRADES} needed)"
        figures = f"rank corr. {self.rho:+.2f} with R, p {self.p_value:.2g}, n {self.trades}"
        if self.has_edge:
            return f"score: {self.strength()} measured edge ({figures})"
        return f"score: no measured edge ({figures})"

    def to_json(self) -> dict[str, Any]:
        return {"trades": self.trades, "rho": self.rho, "p_value": self.p_value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScoreEdge:
        rho, p = data.get("rho"), data.get("p_value")
        return cls(int(data["trades"]), None if rho is None else float(rho), None if p is None else float(p))


@dataclass(frozen=True)
class Baseline:
    """The outcome of a pre-deploy validation of one system (versioned per strategy x instrument)."""

    strategy: str
    symbol: str
    interval: str
    params: dict[str, Any]
    data_source: str
    data_from: datetime
    data_to: datetime
    passed: bool
    reasons: tuple[str, ...]
    metrics: dict[str, float | int | None]
    r_multiples: tuple[float, ...]
    created_at: datetime
    version: int = 0
    fingerprint: str = ""  # the system validated; "" for baselines stored before systems had fingerprints
    system: Mapping[str, Any] = field(default_factory=dict)  # `SystemSpec.to_json()` of that system
    oos_from: datetime | None = None  # the first out-of-sample bar: later trades only count
    score: ScoreEdge | None = None

    @property
    def pair(self) -> tuple[str, str]:
        return self.strategy, self.symbol


class ValidationStatus(StrEnum):
    VALIDATED = "validated"
    FAILED = "failed"
    STALE = "stale"
    UNVALIDATED = "unvalidated"


@dataclass(frozen=True)
class PairValidation:
    """A system's validation status with the baseline figures behind it (a snapshot stored with each signal)."""

    status: ValidationStatus
    reason: str
    version: int | None = None
    fingerprint: str = ""
    stats: BaselineStats | None = None
    score: ScoreEdge | None = None

    @property
    def validated(self) -> bool:
        """Whether the bot may act on this system without asking: only a passed, current baseline of exactly it."""
        return self.status is ValidationStatus.VALIDATED

    def line(self) -> str:
        """One line for a signal message: the status, its baseline figures with their intervals, or the warning."""
        if self.status is ValidationStatus.VALIDATED and self.stats is not None:
            return f"✅ validated v{self.version}, out of sample: {self.stats.text()} (90% intervals)"
        if self.status is ValidationStatus.FAILED:
            return f"⛔ FAILED validation v{self.version}: {self.reason}"
        word = "STALE validation" if self.status is ValidationStatus.STALE else "NOT VALIDATED"
        return f"⚠️ {word}: {self.reason}. Never executed automatically; trade it only on your own judgement"

    def short(self) -> str:
        """A few words for a digest line or a table cell."""
        if self.status is ValidationStatus.VALIDATED and self.stats is not None and self.stats.expectancy_r:
            return f"✅ v{self.version} {self.stats.expectancy_r.value:+.2f}R n={self.stats.trades}"
        return {
            ValidationStatus.VALIDATED: f"✅ v{self.version}",
            ValidationStatus.FAILED: "⛔ failed",
            ValidationStatus.STALE: "⚠️ stale",
            ValidationStatus.UNVALIDATED: "⚠️ unvalidated",
        }[self.status]

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "status": self.status.value,
            "reason": self.reason,
            "baseline_version": self.version,
            "fingerprint": self.fingerprint,
            "oos_trades": None if s is None else s.trades,
            "win_rate": None if s is None or s.win_rate is None else _estimate_json(s.win_rate),
            "expectancy_r": None if s is None or s.expectancy_r is None else _estimate_json(s.expectancy_r),
            "score": None if self.score is None else self.score.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairValidation:
        trades = data.get("oos_trades")
        stats_ = None
        if trades is not None:
            stats_ = BaselineStats(int(trades), _estimate(data.get("win_rate")), _estimate(data.get("expectancy_r")))
        score = data.get("score")
        return cls(
            status=ValidationStatus(data["status"]),
            reason=str(data["reason"]),
            version=data.get("baseline_version"),
            fingerprint=str(data.get("fingerprint", "")),
            stats=stats_,
            score=None if score is None else ScoreEdge.from_json(score),
        )


def _estimate_json(e: Estimate) -> dict[str, float]:
    return {"value": e.value, "low": e.low, "high": e.high, "confidence": CONFIDENCE}


def _estimate(data: Any) -> Estimate | None:
    return None if data is None else Estimate(float(data["value"]), float(data["low"]), float(data["high"]))


def judge(
    spec: SystemSpec, baselines: Iterable[Baseline], now: datetime, *, win_r: float, max_age: timedelta | None = None
) -> PairValidation:
    """The validation status of `spec` given every stored baseline (see the module docstring)."""
    ensure_utc(now, "now")
    pair = [
        b for b in baselines if (b.strategy, b.symbol, b.interval) == (spec.strategy, spec.symbol, spec.interval.value)
    ]
    fp = spec.fingerprint
    if not pair:
        return PairValidation(ValidationStatus.UNVALIDATED, "never validated (tradebot validate)", fingerprint=fp)
    mine = [b for b in pair if b.fingerprint == fp]
    if not mine:
        newest = max(pair, key=lambda b: b.version)
        changed = ", ".join(spec.differences(newest.system)) or "the system"
        why = f"baseline v{newest.version} validated different {changed}; re-validate (tradebot validate)"
        return PairValidation(ValidationStatus.STALE, why, newest.version, fp)
    b = max(mine, key=lambda x: x.version)
    stats_ = BaselineStats.of(b.r_multiples, win_r)
    if b.data_to > now:  # a replay on the bot clock: a baseline of later data would be look-ahead
        why = f"baseline v{b.version} was measured on data up to {b.data_to:%Y-%m-%d}, after now; validate up to now"
        return PairValidation(ValidationStatus.STALE, why, b.version, fp, stats_, b.score)
    if max_age is not None and now - b.data_to > max_age:
        why = f"baseline v{b.version} ends {b.data_to:%Y-%m-%d}, more than {max_age.days} days ago; re-validate"
        return PairValidation(ValidationStatus.STALE, why, b.version, fp, stats_, b.score)
    if not b.passed:
        return PairValidation(ValidationStatus.FAILED, "; ".join(b.reasons[:2]), b.version, fp, stats_, b.score)
    where = f"{b.data_source} {b.data_from:%Y-%m-%d}..{b.data_to:%Y-%m-%d}"
    return PairValidation(ValidationStatus.VALIDATED, f"passed the gate on {where}", b.version, fp, stats_, b.score)
