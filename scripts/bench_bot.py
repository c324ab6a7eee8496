"""Benchmark the running bot end to end against the fake Telegram Bot API server, with in-run references.

The real bot (`bot.telegram.app.serve`: python-telegram-bot long polling over HTTP, handlers, signal desk,
paper broker, outbox sender, SQLite) runs in this process against `tests.fakes.telegram_server.FakeTelegram`
on the same event loop, with the CSV data source on a temporary folder of `--symbols` renamed links to the
shared 1h/5m files and a bot clock whose monotonic source this script moves (the default schedules are
replaced by one that never fires: the benchmark makes the runs). Three figures:

1. Latency from the fake user's `/signal` to the first signal message (with Approve buttons) arriving at the
   fake server: once cold (the CSV files are parsed on that run) and once warm. Reference: the scan of that
   same run alone (`ScanService.scan`, timed inside the bot).
2. Approve click to order recorded (the bot's `record_fill` transaction committed and returned; a separate
   sqlite3 reader then checks the filled `orders` row) over `--approvals` pending signals, one click at a
   time, each going through the fake server, PTB, the handler, the desk's checks and compare-and-set, the
   paper broker and the store; then `--during-scan` more, each clicked 50 ms into a full analysis run. The
   real runs find only a handful of setups, so the pending signals are derived from them: the same setup
   with its bar_time moved back k seconds (new signal ids; price, stop, target and expiry stay the real
   ones), stored with start_run/finish_run and offered through the desk. References, on a second runtime
   without Telegram: `SignalDesk.approve` called directly, and the bare `SqliteStore` transition +
   submit_order + record_fill.
3. RSS over `--runs` analysis runs of all symbols (`BotRuntime.analyse`, the bot clock 5 minutes later each
   time, weekdays only), sampled every tenth of the runs from /proc/self/status. The fake server lives in
   the same process and keeps every call and message, and of the charts uploaded only their sizes (the chat
   page's copies, ~20 MB over 1,000 runs, were most of this process's growth); the bytes its records hold
   are measured at each sample and the growth is also given net of them. `--trace-growth` names the lines
   whose allocations grew.

Before the clicks, `--closed-trades` (2,000) closed paper trades are stored, a day and more before them: the
history a bot has after a year, which the protections look at on every click. Each position is closed at its
target after its click is timed (and after each reference approval), so the open book stays a handful, as a
real account's, and every click comes after a close.

`--answer-rtt-ms` holds the fake server's reply to each press's answerCallbackQuery that long: Telegram's round
trip from the server (tens of milliseconds from a cloud region), the one Bot API call a click makes before its
order. The clicks are otherwise timed against a server on the same machine.

Usage: python scripts/bench_bot.py [--symbols 50] [--approvals 200] [--during-scan 20] [--runs 1000]
                                   [--closed-trades 2000] [--answer-rtt-ms 0]
                                   [--market-dir DIR] [--trace-growth]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.bootstrap import open_runtime  # noqa: E402
from bot.config import Settings, load_settings  # noqa: E402
from bot.ops.clock import BotClock  # noqa: E402
from bot.services.desk import OutcomeKind  # noqa: E402
from bot.services.runtime import BotRuntime  # noqa: E402
from bot.services.scan import ScanReport  # noqa: E402
from bot.telegram import app as telegram_app  # noqa: E402
from bot.telegram.callbacks import Action, Callback  # noqa: E402
from data.sqlite.codecs import _TRADE_COLUMNS, _encode_trade  # noqa: E402
from engine.catalog import DEFAULT_WATCHLIST  # noqa: E402
from engine.domain import Instrument, ScoredSetup, Side, SignalStatus  # noqa: E402
from engine.sizing import quote_currency  # noqa: E402
from engine.trading import ExitReason, Fill, OrderRequest, Trade, TradeKind  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram, SentMessage  # noqa: E402

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
TRADER = 42
COLD_AT = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)  # GBPUSD and XAUUSD trend_pullback longs
WARM_AT = datetime(2025, 6, 12, 18, 0, tzinfo=UTC)  # BTCUSDT and ETHUSDT trend_pullback
RSS_FROM = datetime(2025, 6, 16, 0, 0, tzinfo=UTC)  # a Monday: 1,000 runs 5 minutes apart stay on weekdays
RUN_STEP = timedelta(minutes=5)
OFFER_BATCH = 50  # the most signals one offer may ask about (max_signals_per_run, digest_threshold)
P99_TARGET_MS = 10.0  # the click goal, also while an analysis runs
RSS_TARGET_MB = 300.0
TRACE_FRAMES = 25  # stack depth kept by --trace-growth
FLAT_TOLERANCE_MB = 5.0  # growth from the first sample after warm-up to the last that still counts as flat


class ManualMonotonic:
    """The monotonic source of the bot clock, moved by the benchmark."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def move_to(self, clock: BotClock, when: datetime) -> None:
        """Move the bot clock forward to `when`."""
        self.t += (when - clock.now()).total_seconds() / clock.speed


@dataclass
class Probe:
    """What the instrumented bot exposes: its runtime, its latest scan, and when each order was recorded."""

    runtime: BotRuntime | None = None
    scans: int = 0  # how many scans the bot has run
    last_scan: tuple[float, float, ScanReport] | None = None  # real start, end and report of the latest
    submitted: dict[str, float] = field(default_factory=dict)  # signal id -> when submit_order committed
    filled: dict[str, float] = field(default_factory=dict)  # signal id -> when record_fill committed
    recorded: asyncio.Event = field(default_factory=asyncio.Event)


class Tally(logging.Handler):
    """Count warnings and errors by logger and message template instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname} {record.name}: {str(record.msg)[:90]}"] += 1


def instrument_bot(probe: Probe, gil_switch: float | None = None) -> Any:
    """A `serve` runtime hook that hands the runtime to `probe` and times its scans and orders (no code path is
    skipped: the wrappers call the real methods)."""

    async def hook(runtime: BotRuntime) -> None:
        scan = runtime.scan.scan

        async def timed_scan(*args: Any, **kwargs: Any) -> ScanReport:
            started = time.monotonic()
            report = await scan(*args, **kwargs)
            probe.scans += 1
            probe.last_scan = (started, time.monotonic(), report)  # only the latest: no growth from here
            return report

        runtime.scan.scan = timed_scan  # type: ignore[method-assign]
        store = runtime.store
        approve_order, record_fill = store.approve_order, store.record_fill

        async def timed_approve(signal_id: str, *args: Any, **kwargs: Any) -> bool:
            done = await approve_order(signal_id, *args, **kwargs)  # the approval and its order intent, together
            probe.submitted[signal_id] = time.monotonic()
            return done

        async def timed_fill(fill: Fill, trade: Trade) -> bool:
            done = await record_fill(fill, trade)
            probe.filled[fill.client_order_id] = time.monotonic()
            probe.recorded.set()
            return done

        store.approve_order = timed_approve  # type: ignore[method-assign]
        store.record_fill = timed_fill  # type: ignore[method-assign]
        # The renamed copies are the same series: the correlation guard would refuse every second copy. It is off
        # here (a TOML file cannot say None); every other check of a click runs.
        policy = runtime.desk.policy
        runtime.desk.policy = replace(policy, protections=replace(policy.protections, correlation_threshold=None))
        if gil_switch is not None:  # an A/B of the bot's GIL switch interval
            sys.setswitchinterval(gil_switch)
        probe.runtime = runtime

    return hook


def build_market(source: Path, target: Path, count: int) -> list[Instrument]:
    """Link `count` renamed copies of the shared 1h/5m files into `target`; return their instruments."""
    target.mkdir(parents=True)
    instruments = []
    for k in range(count):
        base = DEFAULT_WATCHLIST[k % len(DEFAULT_WATCHLIST)]
        copy = k // len(DEFAULT_WATCHLIST) + 1
        symbol = base.symbol if copy == 1 else f"{base.symbol}-{copy}"
        interval = base.interval.value
        (target / f"{symbol}_{interval}.csv").symlink_to(source / f"{base.symbol}_{interval}.csv")
        instruments.append(replace(base, symbol=symbol, ticker=symbol))
    return instruments


def quote_of(instrument: Instrument) -> str:
    """The quote currency of a (renamed) copy: its original's."""
    return quote_currency(replace(instrument, symbol=instrument.symbol.split("-")[0]))


def config_text(instruments: Sequence[Instrument]) -> str:
    """Render the TOML config: no pacing, no cooldown, every signal in its own message, no schedules."""
    lines = [
        "[bot]",
        "send_interval_seconds = 0",
        "symbol_cooldown_minutes = 0",
        f"digest_threshold = {OFFER_BATCH}",
        f"max_signals_per_run = {OFFER_BATCH}",
        "",
        'account_equity = "10000000"',
        'risk_per_trade = "0.0005"  # small against the equity: a hundred positions stay within the exposure caps',
        "trade_failed_strategies = true  # offered whatever their validation: the benchmark times the path, not edges",
        "",
        "[bot.protections]  # the benchmark approves up to 100 derived signals: the limits would refuse them",
        "max_open_positions = 100",
        "one_position_per_symbol = false",
        "max_trades_per_day = 1000",
        "max_consecutive_losses = 100",
        'daily_loss_fraction = "0.99"',
        "symbol_cooldown_minutes = 0",
        "",
        "[backtest]",
        "validate_in_background = false  # no validation competing with the measured clicks for the 2 cores",
        "",
        "[[bot.schedules]]  # the benchmark makes the runs; the default schedules would fire on the real clock",
        'name = "bench-off"',
        'cron = "0 0 1 1 *"',
    ]
    for i in instruments:
        lines += [
            "",
            "[[watchlist]]",
            f'symbol = "{i.symbol}"',
            f'ticker = "{i.ticker}"',
            f'asset_class = "{i.asset_class.value}"',
            f'interval = "{i.interval.value}"',
            f'tick_size = "{i.tick_size}"',
            f'pip_size = "{i.pip_size}"',
            f'lot_size = "{i.lot_size}"',
            f'contract_size = "{i.contract_size}"',
            f'calendar = "{i.calendar}"',
            f'timezone = "{i.timezone}"',
            f'spread = "{i.spread}"',
            f'quote_currency = "{quote_of(i)}"',
            f"has_volume = {'true' if i.has_volume else 'false'}",
        ]
    return "\n".join(lines) + "\n"


def prepare_environment(work: Path, market: Path, instruments: Sequence[Instrument], tg: FakeTelegram) -> None:
    """Point the bot's settings at the temp folder, the linked market data and the fake server."""
    for name in list(os.environ):
        if name.startswith(("TRADEBOT_", "TELEGRAM_")):
            del os.environ[name]
    config = work / "tradebot.toml"
    config.write_text(config_text(instruments))
    os.environ.update(
        {
            "TRADEBOT_CONFIG": str(config),
            "TRADEBOT_DATA_SOURCE": f"csv:{market}",
            "TRADEBOT_DB_PATH": str(work / "bot.db"),
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_ALLOWED_USERS": str(TRADER),
            "TELEGRAM_API_BASE_URL": tg.base_url,
        }
    )
    os.chdir(work)  # no stray .env or tradebot.toml from the caller's folder


def rss_mb() -> tuple[float, float]:
    """Return this process's resident set size and its peak, in MB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def percentile(values: Sequence[float], p: float) -> float:
    """Return the nearest-rank percentile `p` (0..100) of `values`."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def has_approve(message: SentMessage) -> bool:
    """Return whether the message carries an Approve button (a signal)."""
    return any("Approve" in label for label, _ in message.buttons)


def derive(scored: ScoredSetup, k: int) -> ScoredSetup:
    """Return the setup with its bar_time moved back `k` seconds: a new signal id, same prices and expiry."""
    return ScoredSetup(replace(scored.setup, bar_time=scored.setup.bar_time - timedelta(seconds=k)), scored.score)


def seed_closed_trades(db: Path, instruments: Sequence[Instrument], count: int) -> None:
    """Store `count` closed paper trades, one an hour up to a day before the first click: a year of history the
    protections fold on every click (wins and losses alternate, so no loss streak or daily limit pauses)."""
    end = COLD_AT - timedelta(days=1)
    dollars = [i for i in instruments if quote_of(i) == "USD"]  # no conversion needed: no warnings
    rows = []
    for k in range(count):
        instrument = dollars[k % len(dollars)]
        entry_at = end - timedelta(hours=count - k)
        price = Decimal("100.00")
        exit_price = Decimal("100.50") if k % 2 == 0 else Decimal("99.60")
        trade = Trade(
            trade_id=f"seed{k}",
            signal_id=f"seed{k}",
            kind=TradeKind.PAPER,
            strategy="trend_pullback",
            symbol=instrument.symbol,
            side=Side.LONG,
            quantity=Decimal("0.01"),
            contract_size=Decimal(1),
            entry_time=entry_at,
            entry_price=price,
            stop=Decimal("99.00"),
            target=Decimal("102.00"),
            exit_time=entry_at + timedelta(minutes=30),
            exit_price=exit_price,
            exit_reason=ExitReason.TARGET if k % 2 == 0 else ExitReason.STOP,
        )
        rows.append(_encode_trade(trade))
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
        marks = ", ".join("?" * len(rows[0])) if rows else ""
        con.executemany(f"INSERT INTO trades ({_TRADE_COLUMNS}) VALUES ({marks})", rows)


async def seed_pending(runtime: BotRuntime, base: Sequence[ScoredSetup], count: int, first_k: int) -> list[str]:
    """Store `count` signals derived from real setups as runs do, offer them through the desk; return the ids."""
    derived = [derive(base[i % len(base)], first_k + i) for i in range(count)]
    now = runtime.clock.now()
    pending: list[str] = []
    for start in range(0, count, OFFER_BATCH):
        chunk = derived[start : start + OFFER_BATCH]
        symbols = sorted({s.setup.symbol for s in chunk})
        run_id = await runtime.store.start_run(now, now, runtime.provider.name, symbols)
        await runtime.store.finish_run(run_id, now, chunk, [], [])
        decisions = await runtime.desk.offer(chunk)
        pending += [d.signal_id for d in decisions if d.status is SignalStatus.PENDING]
    return pending


@dataclass
class SignalLatency:
    first_signal_s: float
    last_signal_s: float
    summary_s: float
    scan_s: float
    scan_started_s: float
    signals: int
    setups: int
    evaluated: int


async def signal_latency(tg: FakeTelegram, probe: Probe) -> SignalLatency:
    """Send /signal as the trader; time the first and last signal message and the run summary."""
    since, scans = len(tg.sent), probe.scans
    started = time.monotonic()
    tg.user_message(TRADER, "/signal")
    first = await tg.wait_for_message(lambda m: m.chat_id == TRADER and has_approve(m), since=since, timeout=120)
    summary = await tg.wait_for_message(
        lambda m: m.chat_id == TRADER and m.body.startswith("Run "), since=since, timeout=120
    )
    if probe.scans != scans + 1 or probe.last_scan is None:
        raise RuntimeError(f"expected one scan for /signal, saw {probe.scans - scans}")
    scan_start, scan_end, report = probe.last_scan
    offered = await probe.runtime.store.setups_for_run(report.run_id) if probe.runtime and report.run_id else []
    expected = sum(status is SignalStatus.PENDING for _, status in offered)
    signals = await tg.wait_until(
        lambda: [m for m in tg.sent[since:] if m.chat_id == TRADER and has_approve(m)][expected - 1 :] or None,
        timeout=120,
        what=f"{expected} signal messages",
    )
    return SignalLatency(
        first_signal_s=first.at - started,
        last_signal_s=signals[0].at - started,
        summary_s=summary.at - started,
        scan_s=scan_end - scan_start,
        scan_started_s=scan_start - started,
        signals=expected,
        setups=len(report.setups),
        evaluated=report.evaluated,
    )


@dataclass
class ClickTimes:
    filled_ms: list[float] = field(default_factory=list)
    submitted_ms: list[float] = field(default_factory=list)
    answered_ms: list[float] = field(default_factory=list)
    fill_message_ms: list[float] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    overlapped: int = 0  # orders recorded before the concurrent scan had finished
    unseen: int = 0  # orders whose fill a separate sqlite3 reader did not see once the bot had recorded it


async def close_position(runtime: BotRuntime, signal_id: str) -> None:
    """Close the position of a filled signal at its target, as its exit would (after the click is timed), so the
    open book stays a handful of positions, as a real account's, and the closed book grows."""
    trade = await runtime.store.open_trade(signal_id)
    if trade is not None:
        await runtime.store.close_trade(
            trade.trade_id, runtime.clock.now(), trade.target, ExitReason.TARGET, Decimal(0)
        )


async def approve_by_click(
    tg: FakeTelegram, probe: Probe, db: Path, messages: dict[str, SentMessage], runtime: BotRuntime
) -> ClickTimes:
    """Click Approve on each signal message in turn; time the order, the answer and the fill message; then close
    the position (`close_position`).

    The order is timed when the bot's `record_fill` (and `submit_order`) transaction has committed and
    returned; a separate sqlite3 connection then checks that the filled order is really in the file.
    """
    times = ClickTimes()
    conn = sqlite3.connect(db)
    try:
        for signal_id, message in messages.items():
            since = len(tg.sent)
            probe.recorded.clear()
            started = time.monotonic()
            query = tg.click(TRADER, message, button="✅ Approve")
            deadline = started + 15
            while signal_id not in probe.filled and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(probe.recorded.wait(), timeout=max(deadline - time.monotonic(), 0))
                probe.recorded.clear()
            answer = await tg.wait_for_answer(query, timeout=15)
            times.answered_ms.append((answer.at - started) * 1000)
            if signal_id not in probe.filled:
                times.missing.append(signal_id)
                continue
            times.filled_ms.append((probe.filled[signal_id] - started) * 1000)
            times.submitted_ms.append((probe.submitted[signal_id] - started) * 1000)
            row = conn.execute("SELECT filled_at FROM orders WHERE client_order_id = ?", (signal_id,)).fetchone()
            times.unseen += row is None or row[0] is None
            fill = await tg.wait_for_message(
                lambda m, s=signal_id: s in m.body and "filled" in m.body, since=since, timeout=15
            )
            times.fill_message_ms.append((fill.at - started) * 1000)
            await tg.wait_for_edit(message.chat_id, message.message_id, lambda m: not m.buttons, timeout=15)
            await close_position(runtime, signal_id)
    finally:
        conn.close()
    return times


async def approve_during_scans(
    tg: FakeTelegram, probe: Probe, runtime: BotRuntime, db: Path, messages: dict[str, SentMessage]
) -> ClickTimes:
    """Click Approve on each message 50 ms into an analysis of the whole watchlist (a scheduled run's work)."""
    times = ClickTimes()
    for signal_id, message in messages.items():
        run = asyncio.create_task(runtime.analyse())
        await asyncio.sleep(0.05)
        one = await approve_by_click(tg, probe, db, {signal_id: message}, runtime)
        await run
        assert probe.last_scan is not None
        times.filled_ms += one.filled_ms
        times.missing += one.missing
        times.overlapped += probe.filled.get(signal_id, math.inf) < probe.last_scan[1]
    return times


@dataclass
class Reference:
    desk_ms: list[float]
    store_ms: list[float]
    refused: int


async def reference_without_telegram(
    settings: Settings, count: int, instruments: Sequence[Instrument], closed_trades: int
) -> Reference:
    """Time `SignalDesk.approve` and the bare store sequence on a second runtime with no Telegram at all (and the
    same closed trades in its book)."""
    mono = ManualMonotonic()
    async with open_runtime(settings, BotClock(WARM_AT, 1.0, monotonic=mono)) as ref:
        seed_closed_trades(settings.db_path, instruments, closed_trades)
        report = await ref.scan.scan()  # parses the CSV files, as the bot had by click time
        ids = await seed_pending(ref, report.setups, 2 * count, first_k=1)
        desk_ms, store_ms, refused = [], [], 0
        for signal_id in ids[:count]:
            started = time.perf_counter()
            outcome = await ref.desk.approve(signal_id, TRADER)
            desk_ms.append((time.perf_counter() - started) * 1000)
            refused += outcome.kind is not OutcomeKind.DONE
            await close_position(ref, signal_id)
        now = ref.clock.now()
        for signal_id in ids[count:]:
            record = await ref.store.signal(signal_id)
            assert record is not None and record.quantity is not None
            setup = record.scored.setup
            request = OrderRequest(signal_id, setup.symbol, setup.side, record.quantity)
            fill = Fill(signal_id, setup.symbol, setup.side, record.quantity, setup.entry, Decimal("1"), now)
            trade = Trade(
                trade_id=signal_id,
                signal_id=signal_id,
                kind=TradeKind.PAPER,
                strategy=setup.strategy,
                symbol=setup.symbol,
                side=setup.side,
                quantity=record.quantity,
                contract_size=ref.instruments[setup.symbol].contract_size,
                entry_time=now,
                entry_price=setup.entry,
                stop=setup.stop,
                target=setup.target,
                entry_fees=Decimal("1"),
                approver_id=TRADER,
            )
            started = time.perf_counter()
            await ref.store.transition(signal_id, SignalStatus.PENDING, SignalStatus.APPROVED, now, by=TRADER)
            await ref.store.submit_order(signal_id, request, now)
            await ref.store.record_fill(fill, trade)
            store_ms.append((time.perf_counter() - started) * 1000)
    return Reference(desk_ms, store_ms, refused)


@dataclass
class MemoryRun:
    samples: list[tuple[int, float, float]]  # (run, RSS MB, MB held by the fake server's records)
    peak_mb: float
    run_s: list[float]
    signals: int
    growth_sites: list[str] = field(default_factory=list)


def deep_size(obj: object, seen: set[int]) -> int:
    """Return the bytes held by `obj` and everything it references that `seen` does not hold yet."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(x, seen) for x in obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        size += deep_size(vars(obj), seen)
    return size


def fake_records_mb(tg: FakeTelegram) -> float:
    """Return the MB the fake server holds in its records of calls, messages, edits and answers (and the photos it
    keeps as uploaded: none here)."""
    seen: set[int] = set()
    records = [*tg.calls, *tg.sent, *tg.edits, *tg.callback_answers.values()]
    return (sum(deep_size(r, seen) for r in records) + tg.uploaded_bytes) / 2**20


def where(traceback: tracemalloc.Traceback) -> str:
    """Return the allocating line and the innermost project line that led to it."""
    frames = list(reversed(traceback))  # most recent call first
    own = next((f for f in frames if str(ROOT) in f.filename and "site-packages" not in f.filename), None)
    inner = f"{Path(frames[0].filename).name}:{frames[0].lineno}"
    return inner if own is None else f"{inner} <- {Path(own.filename).relative_to(ROOT)}:{own.lineno}"


async def memory_over_runs(
    runtime: BotRuntime, tg: FakeTelegram, mono: ManualMonotonic, args: argparse.Namespace
) -> MemoryRun:
    """Run `args.runs` analyses of the whole watchlist, 5 bot minutes apart; sample RSS every tenth of them.

    With `args.trace_growth`, tracemalloc starts at the first sample and the largest growths from the second sample
    to the last are kept (both hold one run's own data, so what is left is what accumulates).
    """
    mono.move_to(runtime.clock, RSS_FROM)
    every = max(args.runs // 10, 1)
    samples = [(0, rss_mb()[0], fake_records_mb(tg))]
    run_s: list[float] = []
    signals = 0
    first: tracemalloc.Snapshot | None = None
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        _, decisions = await runtime.analyse()
        run_s.append(time.perf_counter() - started)
        signals += sum(d.status is SignalStatus.PENDING for d in decisions)
        if run % every == 0 or run == args.runs:
            samples.append((run, rss_mb()[0], fake_records_mb(tg)))
            when = f"{runtime.clock.now():%a %Y-%m-%d %H:%MZ}"
            print(
                f"  run {run:5d}: RSS {samples[-1][1]:7.1f} MB, fake server records {samples[-1][2]:5.1f} MB  ({when})"
            )
            if args.trace_growth and first is None:
                if tracemalloc.is_tracing():  # the second sample: a run's own data is in this snapshot and the last
                    first = tracemalloc.take_snapshot()
                else:
                    tracemalloc.start(TRACE_FRAMES)
        mono.t += RUN_STEP.total_seconds()
    sites = []
    if first is not None:
        stats = tracemalloc.take_snapshot().compare_to(first, "traceback")
        tracemalloc.stop()
        sites = [f"{s.size_diff / 1024:+9.0f} KiB {s.count_diff:+7d} blocks  {where(s.traceback)}" for s in stats[:8]]
    return MemoryRun(samples, rss_mb()[1], run_s, signals, sites)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run one read on a separate sqlite3 connection."""
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def take_interrupts(stop: asyncio.Event) -> None:
    """On SIGINT/SIGTERM stop the bot and cancel the benchmark (the bot's own handler only stops the bot)."""
    loop, current = asyncio.get_running_loop(), asyncio.current_task()
    assert current is not None

    def interrupt() -> None:
        stop.set()
        current.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)


async def bench(args: argparse.Namespace) -> int:
    """Run the three measurements and print the figures and the summary."""
    tally = Tally()
    logging.basicConfig(level=logging.WARNING, handlers=[tally], force=True)
    probe = Probe()
    hook = instrument_bot(probe, args.gil_switch)
    with tempfile.TemporaryDirectory(prefix="bench_bot_") as tmp:
        work = Path(tmp)
        market = work / "market"
        instruments = build_market(args.market_dir.resolve(), market, args.symbols)
        async with FakeTelegram(token=TOKEN, keep_photos=False) as tg:
            prepare_environment(work, market, instruments, tg)
            settings = load_settings()
            kinds = Counter(f"{i.asset_class.value} {i.interval.value}" for i in instruments)
            print(f"watchlist: {len(instruments)} symbols ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")
            print(f"RSS before the bot starts: {rss_mb()[0]:.1f} MB")
            mono = ManualMonotonic()
            clock = BotClock(COLD_AT, 1.0, monotonic=mono)
            stop = asyncio.Event()
            task = asyncio.create_task(telegram_app.serve(settings, stop, clock, on_runtime=hook))
            try:
                await tg.wait_for_polling(timeout=30)
                take_interrupts(stop)
                runtime = probe.runtime
                assert runtime is not None

                print(f"\n[1] /signal -> first signal message ({len(instruments)} symbols)")
                cold = await signal_latency(tg, probe)
                print_latency("cold", COLD_AT, cold)
                mono.move_to(clock, WARM_AT)
                await asyncio.sleep(2.5)  # let the tick expire the first run's signals and the edits go out
                warm = await signal_latency(tg, probe)
                print_latency("warm", WARM_AT, warm)

                print(f"\n[2] Approve click -> order recorded ({args.approvals} approvals)")
                if args.answer_rtt_ms > 0:
                    tg.slow("answerCallbackQuery", args.answer_rtt_ms / 1000)
                    print(
                        f"  Telegram's round trip for each press's answer: {args.answer_rtt_ms:g} ms (--answer-rtt-ms)"
                    )
                # in a thread: the bot's store writes from this loop, so a blocking insert here could wait on it
                await asyncio.to_thread(seed_closed_trades, work / "bot.db", instruments, args.closed_trades)
                print(f"  {args.closed_trades:,} closed paper trades in the book (the protections fold them per click)")
                reference = await reference_without_telegram(
                    load_settings(db_path=work / "reference.db"), args.approvals, instruments, args.closed_trades
                )
                assert probe.last_scan is not None
                base = probe.last_scan[2].setups
                ids = await seed_pending(runtime, base, args.approvals + args.during_scan, first_k=1)
                print(f"  {len(ids)} pending signals derived from {len(base)} real setups at {WARM_AT:%H:%MZ}")
                messages = await offered_messages(tg, ids)
                quiet = dict(list(messages.items())[: args.approvals])
                busy = dict(list(messages.items())[args.approvals :])
                clicks = await approve_by_click(tg, probe, work / "bot.db", quiet, runtime)
                during = await approve_during_scans(tg, probe, runtime, work / "bot.db", busy)
                print_clicks(clicks, during, reference)
                orders = query(work / "bot.db", "SELECT COUNT(*), COUNT(filled_at) FROM orders")[0]
                refusals = [m for m in tg.sent if m.body.startswith(("Refused", "No fresh", "The bot is paused"))]
                print(f"  orders in SQLite: {orders[0]} ({orders[1]} filled); refusals sent: {len(refusals)}")
                for reason, n in Counter(m.body[:110] for m in refusals).most_common(3):
                    print(f"    {n} x {reason}")

                print(f"\n[3] RSS over {args.runs} analysis runs of {len(instruments)} symbols, 5 bot minutes apart")
                memory = await memory_over_runs(runtime, tg, mono, args)
                run_s = memory.run_s
                print(
                    f"  one run: mean {sum(run_s) / len(run_s) * 1000:.0f} ms, "
                    f"p50 {percentile(run_s, 50) * 1000:.0f} ms, max {max(run_s) * 1000:.0f} ms; "
                    f"total {sum(run_s):.0f} s; {memory.signals} new signals offered"
                )
            finally:
                stop.set()
                code = await asyncio.wait_for(task, timeout=30)
            print(f"  fake server holds {len(tg.sent)} messages and {len(tg.calls)} recorded calls; bot exit {code}")
            counts = query(work / "bot.db", "SELECT status, COUNT(*) FROM signals GROUP BY status ORDER BY status")
            print("  signals by status: " + ", ".join(f"{s} {n}" for s, n in counts))

    summary(cold, warm, clicks, during, reference, memory)
    if tally.counts:
        print("\nwarnings/errors logged by the bot (count, first 90 chars of the template):")
        for text, n in tally.counts.most_common(8):
            print(f"  {n:5d}  {text}")
    return 0


async def offered_messages(tg: FakeTelegram, ids: Sequence[str]) -> dict[str, SentMessage]:
    """Wait until every signal's message with its Approve button is at the fake server; return them by id."""
    wanted = {Callback(Action.APPROVE, i).encode(): i for i in ids}

    def all_offered() -> dict[str, SentMessage] | None:
        found = {wanted[d]: m for m in tg.sent for _, d in m.buttons if d in wanted}
        return {i: found[i] for i in ids} if len(found) == len(ids) else None

    return await tg.wait_until(all_offered, timeout=120, what=f"{len(ids)} signal messages")


def print_latency(name: str, at: datetime, lat: SignalLatency) -> None:
    """Print one /signal measurement."""
    print(
        f"  {name} {at:%Y-%m-%d %H:%MZ}: first signal {lat.first_signal_s * 1000:.0f} ms, "
        f"last of {lat.signals} {lat.last_signal_s * 1000:.0f} ms, summary {lat.summary_s * 1000:.0f} ms; "
        f"scan {lat.scan_s * 1000:.0f} ms (began {lat.scan_started_s * 1000:.1f} ms after /signal; "
        f"{lat.evaluated} evaluated, {lat.setups} setups)"
    )


def print_clicks(clicks: ClickTimes, during: ClickTimes, r: Reference) -> None:
    """Print the approval timings and their references."""

    def p(values: Sequence[float], q: float) -> str:
        return f"{percentile(values, q):.1f}"

    f = clicks.filled_ms
    print(
        f"  click -> order filled: p50 {p(f, 50)}  p95 {p(f, 95)}  p99 {p(f, 99)}  max {max(f):.1f} ms  "
        f"(n={len(f)}, missing {len(clicks.missing)}, not visible to a second reader {clicks.unseen})"
    )
    print(f"  click -> order submitted: p50 {p(clicks.submitted_ms, 50)}  p99 {p(clicks.submitted_ms, 99)} ms")
    print(
        f"  click -> 'Approving…' answered: p50 {p(clicks.answered_ms, 50)}  p99 {p(clicks.answered_ms, 99)} ms; "
        f"click -> fill message at Telegram: p50 {p(clicks.fill_message_ms, 50)}  "
        f"p99 {p(clicks.fill_message_ms, 99)} ms"
    )
    if during.filled_ms:
        d = during.filled_ms
        print(
            f"  click -> order filled 50 ms into an analysis run: p50 {p(d, 50)}  p99 {p(d, 99)}  max {max(d):.1f} ms "
            f"(n={len(d)}, {during.overlapped} recorded before that scan ended, missing {len(during.missing)})"
        )
    print(
        f"  reference desk.approve (no Telegram): p50 {percentile(r.desk_ms, 50):.2f}  "
        f"p99 {percentile(r.desk_ms, 99):.2f} ms (refused {r.refused}); "
        f"store transition+submit_order+record_fill: p50 {percentile(r.store_ms, 50):.2f}  "
        f"p99 {percentile(r.store_ms, 99):.2f} ms"
    )


def summary(
    cold: SignalLatency, warm: SignalLatency, clicks: ClickTimes, during: ClickTimes, ref: Reference, memory: MemoryRun
) -> None:
    """Print the figures against their in-run references and the targets."""
    f = clicks.filled_ms
    p99 = percentile(f, 99)
    samples = memory.samples
    warmed = samples[1] if len(samples) > 2 else samples[0]
    last = samples[-1]
    growth = last[1] - warmed[1]
    net = growth - (last[2] - warmed[2])
    rss_max = max(v for _, v, _ in samples)
    rows = [
        ("first signal, cold /signal", f"{cold.first_signal_s * 1000:.0f} ms", f"scan {cold.scan_s * 1000:.0f} ms",
         f"{cold.first_signal_s / cold.scan_s:.2f}x", "-", "-"),
        ("first signal, warm /signal", f"{warm.first_signal_s * 1000:.0f} ms", f"scan {warm.scan_s * 1000:.0f} ms",
         f"{warm.first_signal_s / warm.scan_s:.2f}x", "-", "-"),
        ("click -> order p50", f"{percentile(f, 50):.1f} ms", f"store {percentile(ref.store_ms, 50):.2f} ms",
         f"{percentile(f, 50) / percentile(ref.store_ms, 50):.1f}x", "-", "-"),
        ("click -> order p99", f"{p99:.1f} ms", f"store {percentile(ref.store_ms, 99):.2f} ms",
         f"{p99 / percentile(ref.store_ms, 99):.1f}x", f"<= {P99_TARGET_MS:g} ms",
         "yes" if p99 <= P99_TARGET_MS and not clicks.missing else "NO"),
        ("click -> order p99 vs desk", f"{p99:.1f} ms", f"desk {percentile(ref.desk_ms, 99):.2f} ms",
         f"{p99 / percentile(ref.desk_ms, 99):.1f}x", "-", "-"),
    ]  # fmt: skip
    if during.filled_ms:
        d99 = percentile(during.filled_ms, 99)
        rows.append(("click -> order p99, mid-run", f"{d99:.1f} ms", f"quiet p99 {p99:.1f} ms", f"{d99 / p99:.1f}x",
                     f"<= {P99_TARGET_MS:g} ms", "yes" if d99 <= P99_TARGET_MS else "NO"))  # fmt: skip
    rows += [
        (f"RSS after {last[0]} runs", f"{last[1]:.1f} MB", f"max sampled {rss_max:.1f} MB", "-",
         f"<= {RSS_TARGET_MB:g} MB", "yes" if rss_max <= RSS_TARGET_MB else "NO"),
        (f"RSS growth run {warmed[0]} -> {last[0]}", f"{growth:+.1f} MB", f"fake server {last[2] - warmed[2]:+.1f} MB",
         "-", "-", "-"),
        ("  net of the fake server", f"{net:+.1f} MB", f"run 0: {samples[0][1]:.1f} MB", "-",
         f"flat (<= {FLAT_TOLERANCE_MB:g} MB)", "yes" if net <= FLAT_TOLERANCE_MB else "NO"),
    ]  # fmt: skip
    print("\nRSS samples (run: MB): " + ", ".join(f"{n}: {v:.1f}" for n, v, _ in samples))
    print(f"peak RSS of the process over the whole benchmark (VmHWM): {memory.peak_mb:.1f} MB")
    if memory.growth_sites:
        since = samples[min(2, len(samples) - 1)][0]
        print(f"largest growths from run {since} to run {last[0]}, by allocation site (tracemalloc):")
        print("\n".join(f"  {site}" for site in memory.growth_sites))
    print()
    header = ("figure", "value", "reference (same run)", "ratio", "target", "met")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def main() -> int:
    """Parse the flags and run the benchmark; exit 0 when it ran (targets missed included)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--approvals", type=int, default=80, help="at most 100 with --during-scan (open-position cap)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--closed-trades", type=int, default=2000, help="closed trades seeded into the book first")
    parser.add_argument("--during-scan", type=int, default=20, help="extra approvals clicked during a scan")
    parser.add_argument("--gil-switch", type=float, help="override the bot's GIL switch interval (seconds), for an A/B")
    parser.add_argument(
        "--answer-rtt-ms",
        type=float,
        default=0.0,
        help="Telegram's round trip for a press's answer: the fake server holds answerCallbackQuery replies this long",
    )
    parser.add_argument("--trace-growth", action="store_true", help="show where memory grew from the second sample on")
    parser.add_argument("--market-dir", type=Path, default=ROOT.parent / "shared" / "data" / "market")
    args = parser.parse_args()
    if not args.market_dir.is_dir():
        print(f"market data not found at {args.market_dir}", file=sys.stderr)
        return 2
    if args.symbols < 1 or args.approvals < 1 or args.runs < 1:
        print("--symbols, --approvals and --runs must be at least 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(bench(args))
    except asyncio.CancelledError:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
