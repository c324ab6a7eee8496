"""Chat HTML cut into messages Telegram takes: at line ends, tags whole, nothing lost."""

from __future__ import annotations

from bot.telegram.messages import MAX_MESSAGE_CHARS, plain_text, split_html


def test_a_long_text_is_cut_at_line_ends_into_messages_that_fit_with_every_line_once() -> None:
    lines = [f"<b>line {k}</b> · win 42% · PF 1.10 &amp; more" for k in range(400)]
    parts = split_html("\n".join(lines))
    assert len(parts) > 1 and all(len(p) <= MAX_MESSAGE_CHARS for p in parts)
    assert "\n".join(parts).split("\n") == lines
    assert all(p.count("<b>") == p.count("</b>") for p in parts)


def test_one_line_longer_than_a_message_goes_as_escaped_plain_pieces() -> None:
    parts = split_html("<b>" + "y" * 5000 + " &lt; z</b>")
    assert all(len(p) <= MAX_MESSAGE_CHARS and "<b>" not in p for p in parts)
    assert plain_text("".join(parts)) == "y" * 5000 + " < z"


def test_a_short_text_stays_whole() -> None:
    assert split_html("<b>ok</b>\nfine") == ["<b>ok</b>\nfine"]
