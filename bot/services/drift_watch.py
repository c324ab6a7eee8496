"""Compare live results with the pre-deploy baselines on a schedule; alert, and disable a pair on CRITICAL.

For each traded system with a baseline of its own (and for each strategy overall, those baselines pooled) the
closed paper, live and reported trades of that very system (the signal's fingerprint is the baseline's), entered
after the baseline was made (and after the trader's last /enable of the pair), are compared with the baseline's
out-of-sample R sample by `engine.drift.assess`. A baseline of other parameters is never compared with trades,
and trades of other parameters never with a baseline.
Shadow outcomes (rejected and expired signals, had they been taken) are assessed the same way and shown
apart in /drift; they never alert.

HIGH and CRITICAL verdicts are told to the chat with their numbers, at most once per pair within the
cooldown unless the severity rises; the alert times are stored, so a restart does not repeat them. A
CRITICAL verdict on a pair disables it for new entries (`[drift] disable_on_critical`) and the message
carries an Enable button; the strategy-overall verdict alerts but disables nothing by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import DriftSettings
from bot.ops.metrics import Dimension, MetricName, Metrics, NullMetrics
from bot.services.book import TRADED_KINDS
from bot.services.events import Announcer, DriftFound
from bot.services.systems import SystemBook
from engine.controls import ALL_SYMBOLS, ControlSource, DriftAlert, PairControl, PairState
from engine.drift import DriftConfig, DriftReport, Severity, assess
from engine.ports import BotStore, Clock
from engine.trading import Trade, TradeKind

log = logging.getLogger(__name__)

LAST_CHECK_KEY = "drift.last_check"
_ALERTING = (Severity.HIGH, Severity.CRITICAL)


@dataclass(frozen=True)
class DriftRow:
    """One line of /drift: a pair (or a strategy overall) with its verdict, its shadow verdict and its state."""

    strategy: str
    symbol: str  # ALL_SYMBOLS for the strategy overall
    report: DriftReport
    shadow: DriftReport | None
    control: PairControl | None

    @property
    def label(self) -> str:
        return f"{self.strategy} {'(all)' if self.symbol == ALL_SYMBOLS else self.symbol}"


def drift_config(settings: DriftSettings) -> DriftConfig:
    """The engine's drift rules from `[drift]`."""
    return DriftConfig(
        degradation=settings.degradation,
        min_trades=settings.min_trades,
        window=settings.window,
        ks_alpha=settings.ks_alpha,
        false_alarm=settings.false_alarm,
        horizon=settings.horizon,
        win_rate_drop=settings.win_rate_drop,
    )


class DriftWatch:
    """Runs the drift check, tells the chat, and keeps pair controls in step with CRITICAL verdicts."""

    def __init__(
        self,
        store: BotStore,
        notifier: Announcer,
        clock: Clock,
        settings: DriftSettings,
        metrics: Metrics | None = None,
        systems: SystemBook | None = None,
    ) -> None:
        self.metrics: Metrics = metrics or NullMetrics()
        self.systems = systems if systems is not None else SystemBook(())
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.settings = settings
        self.config = drift_config(settings)
        self._lock = asyncio.Lock()  # ticks may overlap: one check at a time, so an alert is never told twice

    async def check_if_due(self) -> list[DriftRow] | None:
        """Run the check when it is due (see `due`); None when it was not."""
        async with self._lock:
            if not await self.due(self.clock.now()):
                return None
            return await self._check()

    async def due(self, now: datetime) -> bool:
        """Whether `check_minutes` of bot time have passed since the last check (stored, so restarts keep it)."""
        if not self.settings.enabled:
            return False
        last = await self.store.get_state(LAST_CHECK_KEY)
        return last is None or now - datetime.fromisoformat(last) >= timedelta(minutes=self.settings.check_minutes)

    async def table(self) -> list[DriftRow]:
        """Every pair with a baseline and every strategy overall, assessed now (nothing is told or changed)."""
        baselines = (await self.systems.refresh(self.store)).matching()
        controls = await self.store.pair_controls()
        traded = await self.store.trades(TRADED_KINDS)
        shadow = await self.store.trades([TradeKind.SHADOW])
        found_by = await self.store.signal_fingerprints({t.signal_id for t in (*traded, *shadow)})

        def compare() -> list[DriftRow]:
            rows: list[DriftRow] = []
            pooled_base: dict[str, list[float]] = defaultdict(list)
            pooled_live: dict[str, list[Trade]] = defaultdict(list)
            pooled_shadow: dict[str, list[Trade]] = defaultdict(list)
            for key in sorted(baselines):
                baseline, control = baselines[key], controls.get(key)
                since = _since(baseline.created_at, control)
                live = _after(traded, key, since, baseline.fingerprint, found_by)
                missed = _after(shadow, key, since, baseline.fingerprint, found_by)
                base_r = list(baseline.r_multiples)
                rows.append(DriftRow(*key, self._assess(live, base_r), self._shadow(missed, base_r), control))
                pooled_base[key[0]] += base_r
                pooled_live[key[0]] += live
                pooled_shadow[key[0]] += missed
            for strategy in sorted(pooled_base):
                live = sorted(pooled_live[strategy], key=_exit_order)
                missed = sorted(pooled_shadow[strategy], key=_exit_order)
                base_r = pooled_base[strategy]
                report = self._assess(live, base_r)
                rows.append(DriftRow(strategy, ALL_SYMBOLS, report, self._shadow(missed, base_r), None))
            return rows

        # Every pair's trades against its baseline over the whole closed book: Python that would hold the event
        # loop (and the clicks) as long as it runs; in a thread, on what was read above.
        return await asyncio.to_thread(compare)

    async def check(self) -> list[DriftRow]:
        """Assess everything, alert on HIGH and CRITICAL (cooldown permitting), disable pairs on CRITICAL."""
        async with self._lock:
            return await self._check()

    async def _check(self) -> list[DriftRow]:
        now = self.clock.now()
        rows = await self.table()
        for row in rows:
            severity = row.report.severity
            if severity not in _ALERTING:
                continue
            disabled = None
            if severity is Severity.CRITICAL and self.settings.disable_on_critical and row.symbol != ALL_SYMBOLS:
                disabled = await self._disable(row, now)
            if disabled is None and not await self._alert_due(row, now):
                continue
            await self._tell(row, disabled)
            self.metrics.record(MetricName.DRIFT_ALERTS, 1, dimensions={Dimension.SEVERITY: severity.name})
            await self.store.record_drift_alert(
                DriftAlert(row.strategy, row.symbol, severity.label, now, row.report.summary())
            )
        await self.store.set_state(LAST_CHECK_KEY, now.isoformat())
        return rows

    def _assess(self, trades: Sequence[Trade], baseline_r: Sequence[float]) -> DriftReport:
        return assess([_r(t) for t in trades], baseline_r, self.config)

    def _shadow(self, trades: Sequence[Trade], baseline_r: Sequence[float]) -> DriftReport | None:
        return self._assess(trades, baseline_r) if trades else None

    async def _alert_due(self, row: DriftRow, now: datetime) -> bool:
        """False within the cooldown of an alert of the same or a higher severity for this pair."""
        last = await self.store.last_drift_alert(row.strategy, row.symbol)
        if last is None or now - last.alerted_at >= timedelta(hours=self.settings.cooldown_hours):
            return True
        return Severity[last.severity.upper()] < row.report.severity

    async def _disable(self, row: DriftRow, now: datetime) -> PairControl | None:
        """Disable the pair for new entries; None when it already was."""
        if row.control is not None and row.control.state is PairState.DISABLED:
            return None
        reason = f"drift CRITICAL: {row.report.summary()}"
        control = PairControl(row.strategy, row.symbol, PairState.DISABLED, ControlSource.DRIFT, reason, now)
        stored = await self.store.set_pair_control(control)
        log.warning("disabled %s on %s: %s", row.strategy, row.symbol, reason)
        return stored

    async def _tell(self, row: DriftRow, disabled: PairControl | None) -> None:
        await self.notifier.announce(DriftFound(row.strategy, row.symbol, row.label, row.report, disabled))


async def enable_pair(store: BotStore, control: PairControl, user: int, now: datetime) -> PairControl | None:
    """Turn a disabled or demoted pair back on, if `control` is still its newest record (else None)."""
    enabled = PairControl(
        control.strategy, control.symbol, PairState.ENABLED, ControlSource.OPERATOR, "enabled by the trader", now, user
    )
    return await store.set_pair_control(enabled, expected_id=control.control_id)


def _since(baseline_at: datetime, control: PairControl | None) -> datetime:
    """Trades count from the baseline's creation, or from the trader's last /enable of the pair if later."""
    if control is not None and control.state is PairState.ENABLED and control.source is ControlSource.OPERATOR:
        return max(baseline_at, control.at)
    return baseline_at


def _after(
    trades: Sequence[Trade], key: tuple[str, str], since: datetime, fingerprint: str, found_by: Mapping[str, str]
) -> list[Trade]:
    """The pair's trades of the system with `fingerprint`, entered since `since`."""
    return [
        t
        for t in trades
        if (t.strategy, t.symbol) == key and t.entry_time >= since and found_by.get(t.signal_id) == fingerprint
    ]


def _exit_order(trade: Trade) -> tuple[datetime, str]:
    assert trade.exit_time is not None
    return trade.exit_time, trade.trade_id


def _r(trade: Trade) -> float:
    r = trade.pnl_r
    if r is None:
        raise ValueError(f"trade {trade.trade_id} has no R multiple")
    return float(r)
