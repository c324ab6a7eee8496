"""The learning loop of the running bot: fit, persist as a version, apply; rank and annotate signals with it.

`learn` gathers the inputs, calls the pure `engine.learning` functions and stores the result as the next
model version (with a summary of what it was fitted from), which becomes the active one:

* baselines: the latest validation result of every pair (its out-of-sample R sample is the prior);
* recorded outcomes: closed paper, live, reported and shadow trades with the quality score and components of
  the signal they came from;
* backtest outcomes (for calibration and hour buckets): every enabled strategy over the last
  `[learning] backtest_bars` bars of each watchlist instrument from the bot's market data, through the same
  backtester the gate uses; a backtest trade of a signal that was also recorded live is left out, so no setup
  counts twice.

In the running bot the backtests and the fit (posteriors, the calibration with scikit-learn and scipy, the score
weights) run in its worker process: seconds of CPU, and the libraries and memory they leave behind, are kept out of
the process that answers clicks. Where there is no worker (`tradebot learn`), or it fails, they run here.

The active version then ranks new setups (higher posterior expected R first, then quality), gives each signal
its win estimate ("est. win 58 % (n=143)", or "n/a" with the reason when the calibration does not beat the base
rate out of sample), and demotes pairs whose posterior expectancy is below zero with high confidence
(`[learning] demote_action`: ask-only or paused). Learning never changes the risk per trade. A demotion made by
learning is lifted by learning when the posterior recovers; one made by drift is never lifted by learning.
`rollback` makes the previous version active and re-applies its demotions. With `[learning] frozen` nothing
is fitted or changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from bot.config import DemoteAction, Settings
from bot.ops.worker import WorkerProcess
from bot.services.configure import backtest_config, system_book
from bot.services.scan import WatchItem
from bot.services.systems import SystemBook
from data.market.validation import validate_bars
from engine.backtest import BacktestConfig, backtest
from engine.calibration import CalibrationModel, fit_calibration
from engine.controls import ControlSource, PairControl, PairState
from engine.domain import Instrument, ScoredSetup, SignalStatus
from engine.indicators import MarketContext
from engine.learning import (
    CalibrationMethod,
    LearningConfig,
    Outcome,
    Posterior,
    TraderEdge,
    Verdict,
    demotion,
    posterior_for,
    posteriors,
    rank_key,
    trader_edge,
)
from engine.pipeline import EngineConfig
from engine.ports import BarProvider, BotStore, Clock, ModelVersion, ProviderError, SignalEstimate
from engine.score_weights import WeightsComparison, compare_weights
from engine.trading import Trade, TradeKind

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LAST_RUN_KEY: Final = "learning.last_run"
RECORDED_KINDS: Final = (TradeKind.PAPER, TradeKind.LIVE, TradeKind.EXTERNAL, TradeKind.SHADOW)
MODEL_SCHEMA: Final = 1
_NEVER_STALE: Final = 10**9
BACKTEST_DEADLINE_SECONDS: Final = 600.0  # one instrument's backtests in the worker process
FIT_DEADLINE_SECONDS: Final = 600.0  # the posteriors, the calibration and the score weights there
_REALITY: Final = {TradeKind.LIVE: 0, TradeKind.PAPER: 1, TradeKind.EXTERNAL: 2, TradeKind.SHADOW: 3}
_STATE_OF: Final = {Verdict.ASK_ONLY: PairState.ASK_ONLY, Verdict.PAUSE: PairState.DISABLED}


def learning_config(settings: Settings) -> LearningConfig:
    """The engine's learning rules from `[learning]`."""
    s = settings.learning
    return LearningConfig(
        prior_trades=s.prior_trades,
        half_life_days=s.half_life_days,
        demote_confidence=s.demote_confidence,
        min_live_for_demotion=s.min_live_for_demotion,
        holdout_fraction=s.holdout_fraction,
        min_calibration_trades=s.min_calibration_trades,
        method=CalibrationMethod(s.method),
    )


@dataclass(frozen=True)
class LearnedModel:
    """An active model version, decoded: posteriors by key, the calibration (or why none), the demotions."""

    version: int
    created_at: datetime
    posteriors: Mapping[tuple[str, str | None], Posterior]
    calibration: CalibrationModel | None
    calibration_note: str
    demotions: tuple[tuple[str, str, Verdict, str], ...]
    summary: Mapping[str, Any]
    score_weights: Mapping[str, WeightsComparison] = field(default_factory=dict)  # by strategy, where fitted
    score_notes: Mapping[str, str] = field(default_factory=dict)  # by strategy: why no weights were fitted

    @classmethod
    def decode(cls, stored: ModelVersion) -> LearnedModel:
        m = stored.model
        if m.get("schema") != MODEL_SCHEMA:
            raise ValueError(f"learned model v{stored.version}: schema must be {MODEL_SCHEMA}, was {m.get('schema')!r}")
        posts = {
            (p["strategy"], _key_symbol(p)): Posterior(**{k: v for k, v in p.items() if k != "key"})
            for p in m["posteriors"]
        }
        calibration = None if m["calibration"] is None else CalibrationModel.from_json(m["calibration"])
        demoted = tuple((d[0], d[1], Verdict(d[2]), d[3]) for d in m["demotions"])
        fitted = [w for w in m.get("score_weights", []) if "weights" in w]
        return cls(
            stored.version,
            stored.created_at,
            posts,
            calibration,
            m["calibration_note"],
            demoted,
            stored.summary,
            {w["strategy"]: WeightsComparison.from_json(w) for w in fitted},
            {w["strategy"]: w["note"] for w in m.get("score_weights", []) if "note" in w},
        )


def _key_symbol(p: Mapping[str, Any]) -> str | None:
    """The posterior's key symbol: its hour-bucket key, its symbol, or None for the strategy overall."""
    key = p.get("key")
    return key if isinstance(key, str) else p["symbol"]


class Learner:
    """Fits and applies the learned model; the desk's `Advisor`."""

    def __init__(
        self,
        store: BotStore,
        provider: BarProvider | None,
        clock: Clock,
        settings: Settings,
        items: Sequence[WatchItem],
        systems: SystemBook | None = None,
        worker: WorkerProcess | None = None,
    ) -> None:
        self.store = store
        self.worker = worker
        self.systems = systems if systems is not None else system_book(settings)
        self.provider = provider
        self.clock = clock
        self.settings = settings
        self.items = list(items)
        self.instruments: dict[str, Instrument] = {w.instrument.symbol: w.instrument for w in items}
        self.config = learning_config(settings)
        self.model: LearnedModel | None = None

    # --- the desk's Advisor ---------------------------------------------------------------------------------

    def rank_key(self, scored: ScoredSetup) -> tuple[float, ...]:
        return rank_key(self._posterior(scored), self.score(scored))

    def score(self, scored: ScoredSetup) -> float:
        """The score that ranks and selects setups: the learned weights' where they were adopted, else the hand's."""
        learned = self._learned_score(scored)
        return scored.score.total if learned is None else learned

    def _learned_score(self, scored: ScoredSetup) -> float | None:
        weights = None if self.model is None else self.model.score_weights.get(scored.setup.strategy)
        return None if weights is None else weights.score(scored.score.as_dict())

    def estimate(self, scored: ScoredSetup) -> SignalEstimate | None:
        model = self.model
        if model is None:
            return None
        post = self._posterior(scored)
        expected = None if post is None else round(post.expected_r, 4)
        signal_id = scored.setup.signal_id
        learned = self._learned_score(scored)
        cal = model.calibration
        if cal is None:
            return SignalEstimate(signal_id, model.version, None, 0, expected, model.calibration_note, learned)
        p = cal.estimate(scored.score.total, scored.score.as_dict())
        if p is None:
            note = "the score's calibration does not beat the base rate out of sample"
            return SignalEstimate(signal_id, model.version, None, cal.fit_n, expected, note, learned)
        p_win = round(min(max(p, 0.0), 1.0), 4)
        return SignalEstimate(signal_id, model.version, p_win, cal.fit_n, expected, learned_score=learned)

    def _posterior(self, scored: ScoredSetup) -> Posterior | None:
        if self.model is None:
            return None
        setup = scored.setup
        instrument = self.instruments.get(setup.symbol)
        hour = None
        if instrument is not None:
            hour = (setup.bar_time + setup.timeframe.delta).astimezone(ZoneInfo(instrument.timezone)).hour
        return posterior_for(self.model.posteriors, setup.strategy, setup.symbol, hour)

    # --- versions ----------------------------------------------------------------------------------------------

    async def refresh(self) -> LearnedModel | None:
        """Load the active version when it changed (another process may have run `tradebot learn`)."""
        stored = await self.store.active_model()
        if stored is None:
            self.model = None
        elif self.model is None or self.model.version != stored.version:
            try:
                self.model = LearnedModel.decode(stored)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("learned model v%s cannot be used (%s); signals go unranked by learning", stored.version, exc)
                self.model = None
        return self.model

    async def due(self, now: datetime) -> bool:
        """Once a bot-clock day, at or after `[learning] hour_utc` (the last run's day is stored)."""
        if self.settings.learning.frozen or now.hour < self.settings.learning.hour_utc:
            return False
        return await self.store.get_state(LAST_RUN_KEY) != now.date().isoformat()

    async def learn(self, *, backtests: bool = True, trigger: str = "command") -> LearnedModel | str:
        """Fit a new version from everything recorded, store it, make it active and apply its demotions."""
        if self.settings.learning.frozen:
            return "learning is frozen ([learning] frozen = true): nothing was fitted or changed"
        now = self.clock.now()
        await self.store.set_state(LAST_RUN_KEY, now.date().isoformat())
        baselines = list((await self.systems.refresh(self.store)).matching().values())  # of the traded systems
        recorded, sources = await self._recorded_outcomes()
        priors = {(b.strategy, b.symbol): b.r_multiples for b in baselines}
        versions = {(b.strategy, b.symbol): b.version for b in baselines}
        try:
            learned = await self._learned(now, recorded, priors, versions, backtests=backtests)
        finally:
            if self.worker is not None:
                await self.worker.recycle()  # scikit-learn, scipy and what the backtests left go with that process
        if isinstance(learned, str):
            return learned
        (posts, fitted, weights), backtested = learned
        calibration = fitted if isinstance(fitted, CalibrationModel) else None
        note = calibration.verdict() if calibration is not None else str(fitted)
        demotions = self._demotions(posts)
        model = {
            "schema": MODEL_SCHEMA,
            "posteriors": [_encode_posterior(key, p) for key, p in sorted(posts.items(), key=_post_order)],
            "calibration": None if calibration is None else calibration.to_json(),
            "calibration_note": note,
            "demotions": [list(d) for d in demotions],
            "score_weights": weights,
        }
        summary = {
            "trigger": trigger,
            "baselines": len(baselines),
            "outcomes": dict(sorted(Counter([*sources, *(["backtest"] * backtested)]).items())),
            "pairs": sum(1 for key in posts if key[1] is not None and "@" not in key[1]),
            "calibration": note,
            "demoted": len(demotions),
            "config": dataclasses.asdict(self.config) | {"method": self.config.method.value},
        }
        version = await self.store.save_model(now, summary, model)
        log.info("learned model v%d: %s", version, summary)
        stored = await self.store.active_model()
        assert stored is not None
        self.model = LearnedModel.decode(stored)
        await self._apply(self.model, now)
        return self.model

    async def rollback(self) -> LearnedModel | None:
        """Make the previous version active and apply its demotions; None when there is no earlier version."""
        stored = await self.store.rollback_model()
        if stored is None:
            return None
        self.model = LearnedModel.decode(stored)
        await self._apply(self.model, self.clock.now())
        return self.model

    async def _learned(
        self,
        now: datetime,
        recorded: Sequence[tuple[Outcome, str]],
        priors: Mapping[tuple[str, str], Sequence[float]],
        versions: Mapping[tuple[str, str], int],
        *,
        backtests: bool,
    ) -> tuple[Fitted, int] | str:
        """The fit and how many backtest outcomes it used, or why there is nothing to learn from: in the worker process
        (the backtests' outcomes stay there, and scikit-learn and scipy out of the bot's) or, where there is none or it
        fails, here."""
        outcomes = [o for o, _ in recorded]
        seen = frozenset(signal_id for _, signal_id in recorded)
        items = [item for item in self.items if item.strategies] if backtests and self.provider is not None else []
        if self.worker is not None and (self.worker.ready or await self.worker.warm(__name__)):
            try:
                return await self._learned_there(self.worker, now, items, outcomes, seen, priors, versions)
            except Exception as exc:  # it died, was late, lost the run or could not take a task: all of it here
                log.warning("learning: the worker failed (%s: %s); learned in the bot", type(exc).__name__, exc)
        backtested: list[Outcome] = []
        missing: list[str] = []
        for item in items:
            try:
                frame = await asyncio.to_thread(self._fetch, item, now)
                found = await asyncio.to_thread(backtest_outcomes, item, frame, now, *self._backtest_configs())
            except Exception as exc:
                missing.append(_missing(item, exc))
                continue
            backtested += [outcome for signal_id, outcome in found if signal_id not in seen]
        if not outcomes and not backtested and not priors:
            return _nothing(missing)
        fitted = await asyncio.to_thread(fit_model, priors, [*outcomes, *backtested], now, self.config, versions)
        return fitted, len(backtested)

    async def _learned_there(
        self,
        worker: WorkerProcess,
        now: datetime,
        items: Sequence[WatchItem],
        outcomes: list[Outcome],
        seen: frozenset[str],
        priors: Mapping[tuple[str, str], Sequence[float]],
        versions: Mapping[tuple[str, str], int],
    ) -> tuple[Fitted, int] | str:
        run, done, backtested = uuid.uuid4().hex, 0, 0
        missing: list[str] = []
        for item in items:
            try:
                frame = await asyncio.to_thread(self._fetch, item, now)
                args = (run, item, frame, now, *self._backtest_configs(), seen)
                backtested += await worker.call(BACKTEST_DEADLINE_SECONDS, keep_backtest_outcomes, *args)
            except (ProviderError, ValueError) as exc:  # the data itself: here it would be the same
                missing.append(_missing(item, exc))
                continue
            done += 1
        if not outcomes and not backtested and not priors:
            return _nothing(missing)
        args2 = (run, done, outcomes, priors, now, self.config, versions)
        return await worker.call(FIT_DEADLINE_SECONDS, fit_kept, *args2), backtested

    def _fetch(self, item: WatchItem, now: datetime) -> pd.DataFrame:
        assert self.provider is not None
        return self.provider.fetch(item.instrument, now, self.settings.learning.backtest_bars)

    def _backtest_configs(self) -> tuple[EngineConfig, BacktestConfig]:
        return self.settings.engine_config(), backtest_config(self.settings)

    def _demotions(self, posts: Mapping[tuple[str, str | None], Posterior]) -> list[tuple[str, str, str, str]]:
        action = self.settings.learning.demote_action
        if action is DemoteAction.NONE:
            return []
        verdict = Verdict.PAUSE if action is DemoteAction.PAUSE else Verdict.ASK_ONLY
        out = []
        for (strategy, symbol), post in sorted(posts.items(), key=_post_order):
            if symbol is None or "@" in symbol:  # pairs only; hour buckets and the strategy overall inform
                continue
            decided, reason = demotion(post, self.config, verdict)
            if decided is not Verdict.KEEP:
                out.append((strategy, symbol, decided.value, reason))
        return out

    async def _apply(self, model: LearnedModel, now: datetime) -> None:
        """Bring pair controls in line with the model's demotions, never touching drift's or the trader's."""
        controls = await self.store.pair_controls()
        demoted = {(s, sym): (v, why) for s, sym, v, why in model.demotions}
        for key, (verdict, why) in demoted.items():
            current = controls.get(key)
            state = _STATE_OF[verdict]
            if current is not None and (current.state is state or current.source is ControlSource.DRIFT):
                continue
            if current is not None and current.source is ControlSource.OPERATOR and current.at > model.created_at:
                continue  # the trader re-enabled it after this model was fitted: the next fit decides again
            reason = f"learning v{model.version}: {why}"
            await self.store.set_pair_control(PairControl(*key, state, ControlSource.LEARNING, reason, now))
            log.warning("demoted %s on %s to %s: %s", key[0], key[1], state.value, reason)
        for key, current in controls.items():
            lifted = current.source is ControlSource.LEARNING and current.state is not PairState.ENABLED
            if lifted and key not in demoted:
                reason = f"learning v{model.version}: the posterior no longer calls for a demotion"
                await self.store.set_pair_control(
                    PairControl(*key, PairState.ENABLED, ControlSource.LEARNING, reason, now)
                )

    async def _recorded_outcomes(self) -> tuple[list[tuple[Outcome, str]], list[str]]:
        """Closed recorded trades with the score of their signal and each one's source; one per signal.

        A signal may have several trades (rejected, so tracked in shadow, then reported as traded outside): the
        executed one counts, the hypothetical one does not.
        """
        out: list[tuple[Outcome, str]] = []
        sources: list[str] = []
        kept: dict[str, Trade] = {}
        for trade in await self.store.trades(RECORDED_KINDS):  # one outcome per signal: the most real one
            other = kept.get(trade.signal_id)
            if other is None or _REALITY[trade.kind] < _REALITY[other.kind]:
                kept[trade.signal_id] = trade
        for trade in sorted(kept.values(), key=lambda t: (t.exit_time, t.trade_id)):
            record = await self.store.signal(trade.signal_id)
            quality = components = None
            if record is not None:
                quality, components = record.scored.score.total, record.scored.score.as_dict()
            outcome = Outcome.from_trade(
                trade, entry_hour=self._local_hour(trade), quality=quality, components=components
            )
            out.append((outcome, trade.signal_id))
            sources.append(outcome.source.value)
        return out, sources

    def _local_hour(self, trade: Trade) -> int:
        instrument = self.instruments.get(trade.symbol)
        zone = ZoneInfo(instrument.timezone) if instrument is not None else ZoneInfo("UTC")
        return trade.entry_time.astimezone(zone).hour

    async def trader_edge(self, since: datetime) -> TraderEdge:
        """What the trader's approvals and rejections were worth for signals closed since `since`."""
        rejected: list[float] = []
        expired: list[float] = []
        for trade in await self.store.trades([TradeKind.SHADOW], closed_since=since):
            record = await self.store.signal(trade.signal_id)
            if record is None or trade.pnl_r is None:
                continue
            if record.status is SignalStatus.REJECTED:
                rejected.append(float(trade.pnl_r))
            elif record.status is SignalStatus.EXPIRED:
                expired.append(float(trade.pnl_r))
        approved = [
            float(t.pnl_r)
            for t in await self.store.trades([TradeKind.PAPER, TradeKind.LIVE], closed_since=since)
            if t.pnl_r is not None and t.approver_id is not None
        ]
        return trader_edge(rejected, approved, expired)


Fitted = tuple[dict[tuple[str, str | None], Posterior], CalibrationModel | str, list[dict[str, Any]]]


def fit_model(
    priors: Mapping[tuple[str, str], Sequence[float]],
    outcomes: Sequence[Outcome],
    now: datetime,
    config: LearningConfig,
    versions: Mapping[tuple[str, str], int],
) -> Fitted:
    """The posteriors, the calibration (or why none) and, per strategy, the learned score weights against the hand
    weights on held-out outcomes (or why none), from the priors and outcomes (pure: it runs in the worker process)."""
    posts = posteriors(priors, outcomes, now, config, baseline_versions=versions)
    weights: list[dict[str, Any]] = []
    for strategy in sorted({o.strategy for o in outcomes}):
        compared = compare_weights(
            outcomes, strategy, holdout_fraction=config.holdout_fraction, min_outcomes=config.min_calibration_trades
        )
        weights.append({"strategy": strategy, "note": compared} if isinstance(compared, str) else compared.to_json())
    return posts, fit_calibration(outcomes, config), weights


_KEPT: dict[str, tuple[int, list[Outcome]]] = {}  # in the worker process: a learning run's backtest outcomes


def keep_backtest_outcomes(
    run: str,
    item: WatchItem,
    frame: pd.DataFrame,
    now: datetime,
    engine: EngineConfig,
    config: BacktestConfig,
    recorded: frozenset[str],
) -> int:
    """`backtest_outcomes` of one instrument for the learning run `run`, kept in this (the worker) process for its
    `fit_kept`, without the signals that were also recorded; how many."""
    found = backtest_outcomes(item, frame, now, engine, config)
    fresh = [outcome for signal_id, outcome in found if signal_id not in recorded]
    done, kept = _KEPT.pop(run, (0, []))
    kept += fresh
    _KEPT[run] = (done + 1, kept)
    return len(fresh)


def fit_kept(
    run: str,
    instruments: int,
    recorded: Sequence[Outcome],
    priors: Mapping[tuple[str, str], Sequence[float]],
    now: datetime,
    config: LearningConfig,
    versions: Mapping[tuple[str, str], int],
) -> Fitted:
    """`fit_model` on the recorded outcomes and the learning run's kept backtest outcomes (LookupError when this
    process does not hold all `instruments` of them: it is not the worker that backtested them)."""
    done, kept = _KEPT.pop(run, (0, []))
    if done != instruments:
        raise LookupError(f"this worker holds the backtests of {done} of the run's {instruments} instruments")
    return fit_model(priors, [*recorded, *kept], now, config, versions)


def _missing(item: WatchItem, exc: Exception) -> str:
    log.warning("learning: no backtest outcomes for %s: %s", item.instrument.symbol, exc)
    return f"{item.instrument.symbol}: {exc}"


def _nothing(missing: Sequence[str]) -> str:
    why = f"; no backtest data: {'; '.join(missing[:3])}" if missing else ""
    return f"nothing to learn from: no recorded outcomes and no baseline of a traded system{why}"


def backtest_outcomes(
    item: WatchItem, frame: pd.DataFrame, now: datetime, engine: EngineConfig, config: BacktestConfig
) -> list[tuple[str, Outcome]]:
    """The scored backtest trades of `item`'s strategies on `frame`, as learning outcomes by signal id (pure: it
    runs in the worker process too); ValueError when the bars are unusable."""
    check = validate_bars(frame, item.instrument, item.calendar, now, min_bars=1, stale_bars=_NEVER_STALE)
    if check.bars is None:
        raise ValueError(check.rejection or "bar data rejected")
    ctx = MarketContext(item.instrument, check.bars, item.calendar)
    found: list[tuple[str, Outcome]] = []
    for strategy in item.strategies:
        result = backtest(ctx, strategy, engine, config)
        found += [(t.setup.signal_id, Outcome.from_backtest(t)) for t in result.trades if t.score is not None]
    return found


def month_ago(now: datetime) -> datetime:
    """The start of the trailing 30 days /report's trader figures cover."""
    return now - timedelta(days=30)


def _encode_posterior(key: tuple[str, str | None], p: Posterior) -> dict[str, Any]:
    return dataclasses.asdict(p) | {"key": key[1]}


def _post_order(item: tuple[tuple[str, str | None], Any]) -> tuple[str, str]:
    return item[0][0], item[0][1] or ""
