"""News embargo: currency mapping, inclusive windows, impact filter, and ForexFactory times across a DST change."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from data.market.news_feed import NewsFeedError, parse_forexfactory_json, parse_news_csv, parse_news_json
from engine.catalog import default_instrument
from engine.domain import AssetClass, Instrument
from engine.news import (
    ALL_CURRENCIES,
    EmbargoConfig,
    FeedFallback,
    Impact,
    NewsBlock,
    NewsCalendar,
    NewsEvent,
    currencies_of,
    embargo,
)

EURUSD = default_instrument("EURUSD")
XAUUSD = default_instrument("XAUUSD")
BTCUSDT = default_instrument("BTCUSDT")
SPY = default_instrument("SPY")
AAPL = default_instrument("AAPL")
RELIANCE = default_instrument("RELIANCE")
NIFTY = default_instrument("NIFTY50")
USDJPY = replace(EURUSD, symbol="USDJPY", ticker="USDJPY=X", tick_size=Decimal("0.001"), pip_size=Decimal("0.01"))
NFP_AT = datetime(2026, 3, 6, 13, 30, tzinfo=UTC)
NFP = NewsEvent(NFP_AT, "USD", Impact.HIGH, "Non-Farm Employment Change")
CONFIG = EmbargoConfig()


def utc(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def ff_item(date: str, *, title: str = "Non-Farm Employment Change", country: str = "USD", impact: str = "High"):
    return {"title": title, "country": country, "date": date, "impact": impact, "forecast": "", "previous": ""}


# ------------------------------------------------------------------------------------------------ currencies


@pytest.mark.parametrize(
    ("instrument", "expected"),
    [
        (EURUSD, {"EUR", "USD"}),
        (default_instrument("GBPUSD"), {"GBP", "USD"}),
        (USDJPY, {"USD", "JPY"}),
        (XAUUSD, {"USD"}),
        (BTCUSDT, {"USD"}),
        (default_instrument("ETHUSDT"), {"USD"}),
        (SPY, {"USD"}),
        (AAPL, {"USD"}),
        (RELIANCE, {"INR"}),
        (NIFTY, {"INR"}),
    ],
    ids=lambda v: v.symbol if isinstance(v, Instrument) else None,
)
def test_currencies_of_maps_each_default_instrument(instrument: Instrument, expected: set[str]) -> None:
    assert currencies_of(instrument) == frozenset(expected)


def test_currencies_of_gold_is_usd_not_xau() -> None:
    assert "XAU" not in currencies_of(XAUUSD)


def test_currencies_of_crypto_quotes() -> None:
    assert currencies_of(replace(BTCUSDT, symbol="BTC-USD")) == {"USD"}
    assert currencies_of(replace(BTCUSDT, symbol="BTCEUR")) == {"EUR"}
    assert currencies_of(replace(BTCUSDT, symbol="ETHBTC")) == frozenset()


def test_currencies_of_refuses_what_it_cannot_map() -> None:
    with pytest.raises(ValueError, match="FX symbol must be two 3-letter currencies"):
        currencies_of(replace(EURUSD, symbol="EURO"))
    with pytest.raises(ValueError, match="no news currency known for calendar 'XLON'"):
        currencies_of(replace(SPY, calendar="XLON", asset_class=AssetClass.EQUITY))


# ------------------------------------------------------------------------------------------------ embargo


@pytest.mark.parametrize(
    "at",
    [utc(6, 13, 0), utc(6, 13, 15), NFP_AT, utc(6, 13, 59, 59), utc(6, 14, 0)],
    ids=["start edge -30min", "inside before", "at the event", "inside after", "end edge +30min"],
)
def test_embargo_blocks_inclusive_window(at: datetime) -> None:
    block = embargo([NFP], EURUSD, at, CONFIG)
    assert block is not None
    assert block.event == NFP
    assert block.until == utc(6, 14, 0)


@pytest.mark.parametrize("at", [utc(6, 12, 59), utc(6, 14, 1)], ids=["one minute early", "one minute late"])
def test_embargo_one_minute_outside_is_not_blocked(at: datetime) -> None:
    assert embargo([NFP], EURUSD, at, CONFIG) is None


def test_embargo_reason_names_currency_title_time_impact_and_window() -> None:
    block = embargo([NFP], XAUUSD, utc(6, 13, 10), CONFIG)
    assert block is not None
    assert block.reason == (
        "news embargo: USD Non-Farm Employment Change at 13:30 UTC (high impact), entries blocked 13:00-14:00 UTC"
    )


def test_embargo_only_for_matching_currencies() -> None:
    assert embargo([NFP], RELIANCE, NFP_AT, CONFIG) is None
    assert embargo([NFP], BTCUSDT, NFP_AT, CONFIG) is not None
    eur = NewsEvent(NFP_AT, "EUR", Impact.HIGH, "ECB Press Conference")
    assert embargo([eur], EURUSD, NFP_AT, CONFIG) is not None
    assert embargo([eur], XAUUSD, NFP_AT, CONFIG) is None
    assert embargo([eur], USDJPY, NFP_AT, CONFIG) is None
    jpy = NewsEvent(NFP_AT, "JPY", Impact.HIGH, "BOJ Policy Rate")
    assert embargo([jpy], USDJPY, NFP_AT, CONFIG) is not None


def test_embargo_all_currency_event_matches_every_instrument() -> None:
    g7 = NewsEvent(NFP_AT, ALL_CURRENCIES, Impact.HIGH, "G7 Meetings")
    for instrument in (EURUSD, RELIANCE, SPY, replace(BTCUSDT, symbol="ETHBTC")):
        assert embargo([g7], instrument, NFP_AT, CONFIG) is not None


def test_embargo_impact_filter() -> None:
    medium = NewsEvent(NFP_AT, "USD", Impact.MEDIUM, "ISM Services PMI")
    low = NewsEvent(NFP_AT, "USD", Impact.LOW, "Crude Oil Inventories")
    assert embargo([medium, low], EURUSD, NFP_AT, CONFIG) is None
    wider = EmbargoConfig(impacts=frozenset({Impact.HIGH, Impact.MEDIUM}))
    block = embargo([medium, low], EURUSD, NFP_AT, wider)
    assert block is not None
    assert block.event == medium


def test_embargo_custom_margins() -> None:
    config = EmbargoConfig(before=timedelta(minutes=5), after=timedelta(minutes=60))
    assert embargo([NFP], EURUSD, utc(6, 13, 24), config) is None
    assert embargo([NFP], EURUSD, utc(6, 13, 25), config) is not None
    block = embargo([NFP], EURUSD, utc(6, 14, 30), config)
    assert block is not None
    assert block.until == utc(6, 14, 30)
    assert "entries blocked 13:25-14:30 UTC" in block.reason


def test_holiday_blocks_the_whole_day_only_when_configured() -> None:
    holiday = NewsEvent(utc(3, 5), "USD", Impact.HOLIDAY, "Bank Holiday")
    assert embargo([holiday], EURUSD, utc(3, 17), CONFIG) is None
    config = EmbargoConfig(impacts=frozenset({Impact.HIGH, Impact.HOLIDAY}))
    assert embargo([holiday], EURUSD, utc(3, 17), config) is not None
    assert embargo([holiday], EURUSD, utc(4, 5, 30), config) is not None
    assert embargo([holiday], EURUSD, utc(4, 5, 31), config) is None


def test_back_to_back_events_extend_until_and_nearest_is_named() -> None:
    ism = NewsEvent(utc(6, 14, 0), "USD", Impact.HIGH, "ISM Services PMI")
    later = NewsEvent(utc(6, 15, 0), "USD", Impact.HIGH, "Fed Chair Speaks")  # window starts at 14:30: touches
    block = embargo([later, ism, NFP], EURUSD, utc(6, 13, 40), CONFIG)
    assert block is not None
    assert block.event == NFP
    assert block.until == utc(6, 15, 30)
    assert block.reason.endswith("and by later news until 15:30 UTC")
    block = embargo([later, ism, NFP], EURUSD, utc(6, 13, 50), CONFIG)
    assert block is not None
    assert block.event == ism


def test_embargo_window_across_midnight_shows_dates() -> None:
    event = NewsEvent(utc(6, 0, 10), "USD", Impact.HIGH, "Late Release")
    block = embargo([event], EURUSD, utc(5, 23, 50), CONFIG)
    assert block is not None
    assert "at 2026-03-06 00:10 UTC" in block.reason
    assert "entries blocked 23:40-2026-03-06 00:40 UTC" in block.reason


# ------------------------------------------------------------------------------------------------ calendar


def test_calendar_sorts_dedups_and_windows() -> None:
    a = NewsEvent(utc(6, 12), "USD", Impact.LOW, "A")
    b = NewsEvent(utc(6, 13), "EUR", Impact.HIGH, "B")
    c = NewsEvent(utc(6, 14), "USD", Impact.HIGH, "C")
    calendar = NewsCalendar.from_events([c, a, b, a])
    assert calendar.events == (a, b, c)
    assert len(calendar) == 3
    assert calendar.window(utc(6, 12), utc(6, 14)) == (a, b)
    assert calendar.window(utc(6, 12, 1), utc(6, 14, 0, 1)) == (b, c)
    assert calendar.window(utc(7, 0), utc(8, 0)) == ()


def test_calendar_refuses_unsorted_events() -> None:
    with pytest.raises(ValueError, match="sorted by time and unique"):
        NewsCalendar((NFP, replace(NFP, at=utc(6, 12))))


def test_calendar_lookup_with_many_events_matches_linear_scan() -> None:
    start = utc(1, 0)
    currencies = ("USD", "EUR", "JPY", "GBP", "INR")
    impacts = (Impact.LOW, Impact.MEDIUM, Impact.HIGH)
    events = [
        NewsEvent(start + timedelta(minutes=17 * i), currencies[i % 5], impacts[i % 3], f"E{i}") for i in range(3000)
    ]
    calendar = NewsCalendar.from_events(events)
    for k in range(0, 3000 * 17, 7):
        at = start + timedelta(minutes=k)
        block = calendar.embargo(EURUSD, at, CONFIG)
        nearby = events[max(0, (k - 60) // 17) : (k + 60) // 17 + 1]  # events are 17 min apart: an O(1) oracle
        expected = any(
            e.impact is Impact.HIGH
            and e.currency in {"EUR", "USD"}
            and e.at - timedelta(minutes=30) <= at <= e.at + timedelta(minutes=30)
            for e in nearby
        )
        assert (block is not None) == expected, at


# ------------------------------------------------------------------------------------------------ invariants


def test_invariants_name_the_rule() -> None:
    with pytest.raises(ValueError, match="timezone-aware UTC"):
        NewsEvent(datetime(2026, 3, 6, 13, 30), "USD", Impact.HIGH, "x")
    with pytest.raises(ValueError, match="3-letter upper-case code"):
        NewsEvent(NFP_AT, "usd", Impact.HIGH, "x")
    with pytest.raises(ValueError, match="title must not be empty"):
        NewsEvent(NFP_AT, "USD", Impact.HIGH, " ")
    with pytest.raises(ValueError, match="'before' must not be negative"):
        EmbargoConfig(before=timedelta(minutes=-1))
    with pytest.raises(ValueError, match="'after' must not be negative"):
        EmbargoConfig(after=timedelta(minutes=-1))
    with pytest.raises(ValueError, match="at least one impact"):
        EmbargoConfig(impacts=frozenset())
    with pytest.raises(ValueError, match="must end at or after its event"):
        NewsBlock(NFP, NFP_AT - timedelta(minutes=1), "x")
    assert EmbargoConfig().fallback is FeedFallback.ALLOW


# ------------------------------------------------------------------------------------------------ parsing + DST


def test_forexfactory_dst_boundary_after_us_spring_forward() -> None:
    """8:30 New York on 9 Mar 2026 is EDT (-04:00): 12:30 UTC, so 12:00-13:00 UTC is blocked, 13:00-14:00 is not."""
    text = json.dumps([ff_item("2026-03-09T08:30:00-04:00", title="Empire State Manufacturing Index")])
    calendar = NewsCalendar.from_events(parse_forexfactory_json(text))
    assert calendar.events[0].at == utc(9, 12, 30)
    for at in (utc(9, 12, 0), utc(9, 12, 30), utc(9, 13, 0)):
        assert calendar.embargo(EURUSD, at, CONFIG) is not None, at
    for at in (utc(9, 11, 59), utc(9, 13, 1), utc(9, 13, 30), utc(9, 14, 0)):
        assert calendar.embargo(EURUSD, at, CONFIG) is None, at
    block = calendar.embargo(EURUSD, utc(9, 12, 45), CONFIG)
    assert block is not None
    assert "entries blocked 12:00-13:00 UTC" in block.reason


def test_forexfactory_before_us_dst_is_est() -> None:
    """8:30 New York on 6 Mar 2026 is EST (-05:00): 13:30 UTC, blocking 13:00-14:00 UTC."""
    text = json.dumps([ff_item("2026-03-06T08:30:00-05:00")])
    calendar = NewsCalendar.from_events(parse_forexfactory_json(text))
    assert calendar.events[0].at == NFP_AT
    for at in (utc(6, 13, 0), utc(6, 13, 30), utc(6, 14, 0)):
        assert calendar.embargo(EURUSD, at, CONFIG) is not None, at
    for at in (utc(6, 12, 30), utc(6, 12, 59), utc(6, 14, 1)):
        assert calendar.embargo(EURUSD, at, CONFIG) is None, at


def test_forexfactory_impacts_holidays_and_all() -> None:
    text = json.dumps(
        [
            ff_item("2026-03-06T08:30:00-05:00", impact="High"),
            ff_item("2026-03-06T10:00:00-05:00", impact="Medium", title="ISM"),
            ff_item("2026-03-06T10:30:00-05:00", impact="Low", title="Crude"),
            ff_item("2026-03-05T00:00:00-05:00", impact="Holiday", title="Bank Holiday", country="JPY"),
            ff_item("2026-03-06T11:00:00-05:00", impact="Non-Economic", title="Speech"),
            ff_item("2026-03-06T12:00:00-05:00", impact="Whatever", title="Odd"),
            ff_item("2026-03-06T13:00:00-05:00", title="G7 Meetings", country="All"),
        ]
    )
    events = {e.title: e for e in parse_forexfactory_json(text)}
    assert events["Non-Farm Employment Change"].impact is Impact.HIGH
    assert events["ISM"].impact is Impact.MEDIUM
    assert events["Crude"].impact is Impact.LOW
    assert events["Bank Holiday"].impact is Impact.HOLIDAY
    assert events["Bank Holiday"].at == utc(5, 5)
    assert events["Speech"].impact is Impact.LOW
    assert events["Odd"].impact is Impact.LOW
    assert events["G7 Meetings"].currency == ALL_CURRENCIES


def test_forexfactory_malformed_rows_skipped_with_one_counted_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = json.dumps(
        [
            ff_item("2026-03-06T08:30:00-05:00"),
            ff_item("2026-03-06T08:30:00"),  # no offset: refused, not guessed
            ff_item("not a date"),
            {"title": "no date", "country": "USD", "impact": "High"},
            ff_item("2026-03-06T08:30:00-05:00", country="EURO"),
            "not an object",
        ]
    )
    with caplog.at_level(logging.WARNING, logger="data.market.news_feed"):
        events = parse_forexfactory_json(text, "ff-test")
    assert len(events) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ff-test: skipped 5 malformed news row(s)" in warnings[0]
    assert "row 2" in warnings[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"title": "x"}', "expected a JSON list of events, got a dict"),
        ('[{"title": "x"}, 3]', "no usable news rows (2 malformed"),
    ],
)
def test_forexfactory_unparseable_is_an_error_naming_the_origin(text: str, problem: str) -> None:
    with pytest.raises(NewsFeedError, match=r"^https://feed\.example/x\.json: ") as info:
        parse_forexfactory_json(text, "https://feed.example/x.json")
    assert problem in str(info.value)


def test_forexfactory_empty_week_is_an_empty_calendar() -> None:
    assert parse_forexfactory_json("[]") == ()


def test_local_csv_and_json() -> None:
    csv_text = (
        "datetime_utc,currency,impact,title\n"
        "2026-03-06T13:30:00Z,USD,High,Non-Farm Employment Change\n"
        "2026-03-06 15:00:00,eur,medium,ECB Speech\n"
        "2026-03-06T19:00:00+05:30,INR,LOW,RBI Minutes\n"
        "2026-03-06T13:30:00Z,USD,hihg,Typo\n"
        "bad,USD,high,Broken\n"
    )
    events = parse_news_csv(csv_text)
    assert [(e.at, e.currency, e.impact, e.title) for e in events] == [
        (NFP_AT, "USD", Impact.HIGH, "Non-Farm Employment Change"),
        (utc(6, 15), "EUR", Impact.MEDIUM, "ECB Speech"),
        (utc(6, 13, 30), "INR", Impact.LOW, "RBI Minutes"),
    ]
    json_text = json.dumps(
        [{"datetime_utc": "2026-03-06T13:30:00Z", "currency": "USD", "impact": "high", "title": "NFP"}]
    )
    assert parse_news_json(json_text) == (NewsEvent(NFP_AT, "USD", Impact.HIGH, "NFP"),)


def test_local_csv_without_the_header_is_an_error() -> None:
    with pytest.raises(NewsFeedError, match=r"news\.csv: CSV header must have datetime_utc,currency,impact,title"):
        parse_news_csv("when,ccy,impact,title\n2026-03-06T13:30:00Z,USD,high,x\n", "news.csv")
