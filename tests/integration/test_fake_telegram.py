"""The fake Bot API server against the real python-telegram-bot, over real HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, Conflict, EndPointNotFound, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.ext import AIORateLimiter, ApplicationBuilder, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.fakes.telegram_server import (
    NOT_MODIFIED,
    QUERY_INVALID,
    EntityParseError,
    FakeTelegram,
    fast_request,
    parse_html,
)

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
USER = 42
KEYBOARD = InlineKeyboardMarkup(
    [
        [
            InlineKeyboardButton("Approve", callback_data="approve:7"),
            InlineKeyboardButton("Reject", callback_data="reject:7"),
        ]
    ]
)
# 1x1 transparent PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8ffff3f0005fe02fea7"
    "56a6fb0000000049454e44ae426082"
)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


def make_bot(tg: FakeTelegram, token: str = TOKEN, **request: Any) -> Bot:
    """Build a PTB Bot aimed at the fake (fast_request only skips re-loading the CA bundle)."""
    return Bot(token, base_url=tg.base_url, request=fast_request(**request), get_updates_request=fast_request())


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with make_bot(tg) as client:
        yield client


def _ptb_message(text: str) -> str:
    """Return a Bot API description the way PTB's BadRequest shows it ("Bad Request: " cut, capitalised)."""
    return text.removeprefix("Bad Request: ").capitalize()


# ------------------------------------------------------------------------------------------------ plain Bot calls


async def test_get_me_identifies_the_fake_bot(tg: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()

    assert (me.id, me.is_bot, me.username) == (123456789, True, "tradebot_test_bot")
    assert [c.method for c in tg.calls] == ["getMe", "getMe"]  # Bot.__aenter__ calls getMe too
    assert all(c.status == 200 for c in tg.calls)


async def test_send_message_round_trips_html_and_keyboard(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(
        USER, "  <b>BUY</b> AAPL &lt; 200 🚀 <i>now</i>\n", parse_mode="HTML", reply_markup=KEYBOARD
    )

    assert sent.text == "BUY AAPL < 200 🚀 now"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 0, 3), ("italic", 18, 3)]
    assert sent.chat.type == "private" and sent.chat.id == USER
    assert sent.from_user is not None and sent.from_user.is_bot
    assert sent.reply_markup == KEYBOARD
    [stored] = tg.sent
    assert (stored.chat_id, stored.message_id, stored.text) == (USER, sent.message_id, "BUY AAPL < 200 🚀 now")
    assert stored.source == "  <b>BUY</b> AAPL &lt; 200 🚀 <i>now</i>\n"
    assert stored.buttons == [("Approve", "approve:7"), ("Reject", "reject:7")]
    assert tg.calls[-1].params["reply_markup"] == KEYBOARD.to_dict()
    assert tg.calls[-1].params["chat_id"] == USER


async def test_message_ids_increase_per_chat_and_include_user_messages(tg: FakeTelegram, bot: Bot) -> None:
    first = await bot.send_message(1, "a")
    tg.user_message(1, "hello")
    second = await bot.send_message(1, "b")
    other = await bot.send_message(2, "c")

    assert (first.message_id, second.message_id, other.message_id) == (1, 3, 1)
    assert [m.text for m in tg.messages_in(1)] == ["a", "b"]


async def test_invalid_html_and_bad_buttons_are_rejected_without_sending(tg: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match='Can\'t parse entities: unsupported start tag "" at byte offset 6'):
        await bot.send_message(USER, "price < 200", parse_mode="HTML")
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(USER, "hi", reply_markup=too_long)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(USER, "x" * 4097)

    assert tg.sent == []


async def test_edit_message_text_updates_state_and_mirrors_telegram_errors(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER, "Signal", reply_markup=KEYBOARD)

    edited = await bot.edit_message_text("Signal: <b>approved</b>", USER, sent.message_id, parse_mode="HTML")

    assert isinstance(edited, Message)
    assert edited.text == "Signal: approved" and edited.edit_date is not None
    assert edited.reply_markup is None  # no reply_markup on the edit removes the keyboard, as on Telegram
    current = tg.message(USER, sent.message_id)
    assert (current.text, current.edits, current.buttons) == ("Signal: approved", 1, [])
    assert tg.sent[0].text == "Signal"  # `sent` keeps the message as it was sent
    with pytest.raises(BadRequest) as not_modified:
        await bot.edit_message_text("Signal: <b>approved</b>", USER, sent.message_id, parse_mode="HTML")
    assert not_modified.value.message == _ptb_message(NOT_MODIFIED)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", USER, 999)
    assert tg.message(USER, sent.message_id).edits == 1


async def test_edit_message_reply_markup(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER, "Signal", reply_markup=KEYBOARD)
    only_approve = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="approve:7")]])

    await bot.edit_message_reply_markup(USER, sent.message_id, reply_markup=only_approve)
    edited = await tg.wait_for_edit(USER, sent.message_id)

    assert edited.buttons == [("Approve", "approve:7")] and edited.text == "Signal"
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(USER, sent.message_id, reply_markup=only_approve)
    await bot.edit_message_reply_markup(USER, sent.message_id)
    assert tg.message(USER, sent.message_id).reply_markup is None


async def test_answer_callback_query_once(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER, "Signal", reply_markup=KEYBOARD)
    query_id = tg.click(USER, tg.sent[0], button="Reject")

    [update] = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.id == query_id and query.data == "reject:7"
    assert query.message is not None and query.message.message_id == sent.message_id and query.chat_instance
    assert await bot.answer_callback_query(query_id, "Rejected", show_alert=True)
    answer = await tg.wait_for_answer(query_id)
    assert (answer.text, answer.show_alert) == ("Rejected", True)
    with pytest.raises(BadRequest) as twice:
        await bot.answer_callback_query(query_id)
    assert twice.value.message == _ptb_message(QUERY_INVALID)
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("12345")


async def test_set_and_get_my_commands(tg: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("status", "Show status")])

    assert tg.commands == [("start", "Start"), ("status", "Show status")]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "status"]
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Name", "x")])


async def test_send_photo_uploads_bytes_multipart(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_photo(USER, PNG, caption="<b>Chart</b> AAPL", parse_mode="HTML", reply_markup=KEYBOARD)

    assert sent.caption == "Chart AAPL" and sent.photo[-1].width == 1 and sent.reply_markup == KEYBOARD
    [stored] = tg.sent
    assert (stored.caption, stored.photo_size, stored.text) == ("Chart AAPL", len(PNG), None)
    assert tg.calls[-1].files == {"photo": len(PNG)}
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(USER, b"not an image")
    with pytest.raises(BadRequest, match="There is no text in the message to edit"):
        await bot.edit_message_text("x", USER, sent.message_id)


async def test_a_server_that_keeps_no_photos_keeps_their_sizes_only() -> None:
    async with FakeTelegram(token=TOKEN, keep_photos=False) as server, make_bot(server) as client:
        sent = await client.send_photo(USER, PNG, caption="Chart")
        [stored] = server.sent
        assert stored.photo_size == len(PNG) and sent.photo[-1].file_size == len(PNG)
        assert server.image(USER, sent.message_id) is None and server.uploaded_bytes == 0
    async with FakeTelegram(token=TOKEN) as server, make_bot(server) as client:
        sent = await client.send_photo(USER, PNG)
        assert server.image(USER, sent.message_id) == PNG and server.uploaded_bytes == len(PNG)


async def test_wrong_token_and_unknown_method(tg: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(InvalidToken, match="was rejected by the server"):
        async with make_bot(tg, "987654321:wrong"):
            pass
    assert tg.calls[-1].status == 401
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendFakeThing", api_kwargs={"chat_id": USER})
    assert tg.calls[-1].status == 404


# ------------------------------------------------------------------------------------------------ faults


async def test_429_raises_retry_after_and_sends_nothing(
    tg: FakeTelegram, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # RetryAfter.retry_after as a timedelta, without a deprecation warning
    tg.fail_next("sendMessage", status=429, retry_after=3)

    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "signal")

    assert caught.value.retry_after == timedelta(seconds=3)
    assert tg.sent == [] and tg.calls_to("sendMessage", status=429)
    await bot.send_message(USER, "signal")
    assert [m.text for m in tg.sent] == ["signal"]


@pytest.mark.parametrize(
    ("status", "description"), [(500, "Internal Server Error"), (502, "Bad Gateway"), (503, "Service Unavailable")]
)
async def test_5xx_raises_network_error(tg: FakeTelegram, bot: Bot, status: int, description: str) -> None:
    tg.fail_next("sendMessage", status=status)

    with pytest.raises(NetworkError) as caught:
        await bot.send_message(USER, "signal")

    assert caught.value.message == description
    assert tg.sent == []


async def test_outage_and_recovery(tg: FakeTelegram, bot: Bot) -> None:
    with tg.outage(drop=True):
        with pytest.raises(NetworkError, match="RemoteProtocolError"):
            await bot.send_message(USER, "lost")
        tg.fail_all(502)
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.get_me()
    await bot.send_message(USER, "back")

    assert [m.text for m in tg.sent] == ["back"]


async def test_lost_response_still_delivers(tg: FakeTelegram, bot: Bot) -> None:
    tg.fail_next("sendMessage", drop=True, applied=True)

    with pytest.raises(NetworkError):
        await bot.send_message(USER, "delivered twice?")

    assert [m.text for m in tg.sent] == ["delivered twice?"]


async def test_slow_response_times_out_without_side_effect(tg: FakeTelegram) -> None:
    tg.slow("sendMessage", 0.3)
    async with make_bot(tg, read_timeout=0.1) as impatient:
        with pytest.raises(TimedOut):
            await impatient.send_message(USER, "late")
        await tg.wait_until(lambda: all(c.finished_at for c in tg.calls))

    assert tg.sent == [] and tg.calls_to("sendMessage")[0].status is None


async def test_flood_counts_down_retry_after(tg: FakeTelegram, bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    tg.flood(2.0)

    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "x")

    assert caught.value.retry_after == timedelta(seconds=2)
    assert await bot.get_me()  # only send/edit methods are flooded


async def test_aio_rate_limiter_retries_after_429(tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # PTB warns on every RetryAfter it builds otherwise
    tg.fail_next("sendMessage", status=429, retry_after=1)
    builder = ApplicationBuilder().token(TOKEN).base_url(tg.base_url).request(fast_request())
    app = builder.get_updates_request(fast_request()).rate_limiter(AIORateLimiter(max_retries=2)).build()
    async with app:
        await app.bot.send_message(USER, "eventually")

    first, second = tg.calls_to("sendMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0
    assert [m.text for m in tg.sent] == ["eventually"]


# ------------------------------------------------------------------------------------------------ long polling


async def test_get_updates_long_polls_confirms_and_limits(tg: FakeTelegram, bot: Bot) -> None:
    asyncio.get_running_loop().call_later(0.2, tg.user_message, USER, "/start@tradebot_test_bot now")
    started = time.monotonic()
    [update] = await bot.get_updates(timeout=5)

    assert 0.15 < time.monotonic() - started < 1.5
    assert update.message is not None and update.message.text == "/start@tradebot_test_bot now"
    assert [(e.type, e.offset, e.length) for e in update.message.entities] == [("bot_command", 0, 24)]
    assert [u.update_id for u in await bot.get_updates()] == [update.update_id]  # unconfirmed: delivered again
    assert await bot.get_updates(offset=update.update_id + 1) == ()
    for text in ("a", "b", "c"):
        tg.user_message(USER, text)
    assert [u.message.text for u in await bot.get_updates(limit=2) if u.message] == ["a", "b"]
    assert await bot.get_updates(allowed_updates=["callback_query"]) == ()  # messages are dropped
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert time.monotonic() - started >= 0.95


async def test_concurrent_polls_conflict(tg: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_for_polling()
    async with make_bot(tg) as second_instance:
        assert await second_instance.get_updates() == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await first


async def test_stop_releases_held_polls_and_frees_the_port() -> None:
    tg = await FakeTelegram(token=TOKEN).start()
    port = tg.port
    async with make_bot(tg) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await tg.wait_for_polling()
        started = time.monotonic()
        await tg.stop()
        assert await poll == ()
        assert time.monotonic() - started < 1.0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_application_polls_handles_command_and_callback(tg: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("<b>BUY</b> AAPL", parse_mode="HTML", reply_markup=KEYBOARD)

    async def decide(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None
        await query.answer(f"Noted: {query.data}")
        await query.edit_message_text(f"BUY AAPL: {query.data.split(':')[0]}d")

    app = ApplicationBuilder().token(TOKEN).base_url(tg.base_url).build()  # PTB's default requests, untouched
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(decide))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=5)
        await tg.wait_for_polling()

        tg.user_message(USER, "/start")
        signal = await tg.wait_for_message(lambda m: m.text == "BUY AAPL", chat_id=USER)
        query_id = tg.click(USER, signal, button="Approve")
        answer = await tg.wait_for_answer(query_id)
        edited = await tg.wait_for_edit(USER, signal.message_id)

        started = time.monotonic()
        await app.updater.stop()
        await app.stop()
        assert time.monotonic() - started < 1.0

    assert answer.text == "Noted: approve:7"
    assert edited.text == "BUY AAPL: approved" and edited.buttons == []
    assert tg.pending_updates == [] and not tg.polling
    assert {c.method for c in tg.calls} >= {"getMe", "deleteWebhook", "getUpdates", "sendMessage"}


# ------------------------------------------------------------------------------------------------ other hosts


def test_thread_mode_serves_synchronous_tests() -> None:
    with FakeTelegram(token=TOKEN) as tg:

        async def converse() -> tuple[Update, ...]:
            async with make_bot(tg) as bot:
                asyncio.get_running_loop().call_later(0.1, tg.user_message, USER, "hi")  # from a foreign thread
                updates = await bot.get_updates(timeout=5)
                await bot.send_message(USER, "hello back")
                await tg.wait_for_message(chat_id=USER)  # a waiter on a loop other than the server's
                return updates

        updates = asyncio.run(converse())
        message = tg.wait_until_sync(lambda: tg.sent[0] if tg.sent else None)

    assert updates[0].message is not None and updates[0].message.text == "hi"
    assert message.text == "hello back"


async def test_bot_in_a_subprocess(tg: FakeTelegram) -> None:
    script = (
        "import asyncio, os\n"
        "from telegram import Bot\n"
        "async def main():\n"
        "    async with Bot(os.environ['TELEGRAM_BOT_TOKEN'], base_url=os.environ['TELEGRAM_API_BASE_URL']) as bot:\n"
        "        [update] = await bot.get_updates(timeout=10)\n"
        "        await bot.send_message(update.message.chat.id, 'echo: ' + update.message.text)\n"
        "        await bot.get_updates(offset=update.update_id + 1)\n"
        "asyncio.run(main())\n"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, env={**os.environ, **tg.env()})
    try:
        await tg.wait_for_polling(timeout=8)
        tg.user_message(USER, "ping")
        reply = await tg.wait_for_message(chat_id=USER, timeout=5)
        assert await asyncio.wait_for(process.wait(), 5) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert reply.text == "echo: ping" and tg.pending_updates == []


# ------------------------------------------------------------------------------------------------ HTML parser


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("🏟 🏟<i>🏟 &lt🏟</i>", "🏟 🏟🏟 <🏟", [("italic", 5, 6)]),
        ("🏟 🏟&lt;<i    aba  =  190azAz-.   >a</i>", "🏟 🏟<a", [("italic", 6, 1)]),
        ("&ge;&lt;&gt;&amp;&quot;&laquo;&#12345678;", '&ge;<>&"&laquo;&#12345678;', []),
        ("<a href=telegram.org> </a>", " ", [("text_link", 0, 1)]),
        ('🏟 🏟&lt;<pre><code class="language-fift">🏟 🏟&lt;</></>', "🏟 🏟<🏟 🏟<", [("pre", 6, 6)]),
        ("<i><b> </b> <code> </code></i>", "   ", [("italic", 0, 3), ("bold", 0, 1), ("code", 2, 1)]),
        ("<blockquote   expandable>a&lt;<pre  >b;</></>", "a<b;", [("expandable_blockquote", 0, 4), ("pre", 2, 2)]),
    ],
)
def test_parse_html_matches_tdlib(html: str, text: str, entities: list[tuple[str, int, int]]) -> None:
    parsed_text, parsed = parse_html(html)

    assert parsed_text == text
    assert [(e["type"], e["offset"], e["length"]) for e in parsed] == entities


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("🏟 🏟&lt;<abacaba", "Unclosed start tag at byte offset 13"),
        ("🏟 🏟&lt;<abac aba>", 'Unsupported start tag "abac" at byte offset 13'),
        ("🏟 🏟&lt;<i   =aba>", 'Empty attribute name in the tag "i" at byte offset 13'),
        ("🏟 🏟&lt;<i    aba>", 'Can\'t find end tag corresponding to start tag "i"'),
        ("🏟 🏟&lt;<i    aba  =  ", 'Unclosed start tag "i" at byte offset 13'),
        ("🏟 🏟&lt;<i    aba  =  190azAz-.,", "Unexpected end of name token at byte offset 27"),
        ('🏟 🏟&lt;<i    aba  =  "&lt;&gt;&quot;>', "Unclosed start tag at byte offset 13"),
        ("🏟 🏟&lt;</", "Unexpected end tag at byte offset 13"),
        ("🏟 🏟&lt;<i>a</i   ", "Unclosed end tag at byte offset 17"),
        ("🏟 🏟&lt;<i>a</em   >", 'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_parse_html_errors_match_tdlib(html: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(html)

    assert str(caught.value) == error
