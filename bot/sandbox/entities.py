"""Telegram's message text rules as the embedded Bot API applies them: HTML entities (tdlib's rules and error
texts), bot-command entities, and the size of an uploaded image."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------------------- HTML


class EntityParseError(ValueError):
    """Raised for HTML Telegram would reject; the message is the text after "can't parse entities: "."""


# fmt: off
_HTML_TAGS: Final = frozenset({
    "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji", "span", "pre", "code",
    "blockquote",
})
# fmt: on
_SIMPLE_ENTITY: Final = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
# tdlib orders entities sharing a range by this priority (lowest first).
_PRIORITY: Final = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}
_SPACE: Final = frozenset(b" \t\r\n\0\x0b\x0c")
_TRIM: Final = " \t\r\n\x0b\x0c"


def _is_alnum(c: int) -> bool:
    return 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122


def _decode_html_entity(data: bytes, pos: int) -> tuple[int, int] | None:
    """Decode the character reference at `pos` (tdlib rules: 4 names, numeric forms, ';' optional)."""
    end = pos + 1
    code = 0
    if data[end] == 0x23:  # '#'
        end += 1
        if data[end] == 0x78:  # 'x'
            end += 1
            while chr(data[end]) in "0123456789abcdefABCDEF" and data[end] != 0:
                code = code * 16 + int(chr(data[end]), 16)
                end += 1
        else:
            while 48 <= data[end] <= 57:
                code = code * 10 + data[end] - 48
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None
    else:
        while 65 <= data[end] <= 90 or 97 <= data[end] <= 122:
            end += 1
        code = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}.get(bytes(data[pos + 1 : end]), 0)
        if code == 0:
            return None
    if data[end] == 0x3B:  # ';'
        end += 1
    return code, end


@dataclass
class _OpenTag:
    tag: str
    argument: str
    offset: int
    out_pos: int


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram-flavoured HTML into (plain text, entities) the way tdlib does; raise EntityParseError."""
    data = source.encode("utf-8") + b"\0"
    size = len(data) - 1
    out = bytearray()
    entities: list[dict[str, Any]] = []
    nested: list[_OpenTag] = []
    utf16 = 0
    i = 0
    while i < size:
        c = data[i]
        if c == 0x26:
            decoded = _decode_html_entity(data, i)
            if decoded is not None:
                code, i = decoded
                if 0xD800 <= code <= 0xDFFF:
                    raise EntityParseError(
                        "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched "
                        "surrogate code units"
                    )
                utf16 += 2 if code > 0xFFFF else 1
                out += chr(code).encode("utf-8", "surrogatepass")
                continue
        if c != 0x3C:
            if c & 0xC0 != 0x80:
                utf16 += 2 if c >= 0xF0 else 1
            out.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if data[i] != 0x2F:  # opening tag
            while data[i] not in _SPACE and data[i] != 0x3E:
                i += 1
            if data[i] == 0:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            tag = data[begin + 1 : i].decode("utf-8", "replace").lower()
            if tag not in _HTML_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while data[i] != 0x3E:
                while data[i] != 0 and data[i] in _SPACE:
                    i += 1
                if data[i] == 0x3E:
                    break
                attr_begin = i
                while data[i] not in _SPACE and data[i] not in (0x3D, 0x3E):
                    i += 1
                attr = data[attr_begin:i].decode("utf-8", "replace")
                if not attr:
                    raise EntityParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while data[i] != 0 and data[i] in _SPACE:
                    i += 1
                if data[i] == 0:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if data[i] != 0x3D:  # a valueless attribute is ignored, except blockquote's "expandable"
                    if tag == "blockquote" and attr == "expandable":
                        argument = "expandable"
                    continue
                i += 1
                while data[i] != 0 and data[i] in _SPACE:
                    i += 1
                if data[i] == 0:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if data[i] not in (0x22, 0x27):
                    token_begin = i
                    while _is_alnum(data[i]) or data[i] in (0x2E, 0x2D):
                        i += 1
                    value = data[token_begin:i].decode("ascii").lower()
                    if data[i] not in _SPACE and data[i] != 0x3E:
                        raise EntityParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = data[i]
                    i += 1
                    buf = bytearray()
                    while data[i] != quote and data[i] != 0:
                        if data[i] == 0x26 and (decoded := _decode_html_entity(data, i)) is not None:
                            buf += chr(decoded[0]).encode("utf-8", "surrogatepass")
                            i = decoded[1]
                            continue
                        buf.append(data[i])
                        i += 1
                    if data[i] == quote:
                        i += 1
                    value = buf.decode("utf-8", "replace")
                if data[i] == 0:
                    raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and attr == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and attr == "emoji-id":
                    argument = value
                elif tag == "blockquote" and attr == "expandable":
                    argument = "expandable"
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            nested.append(_OpenTag(tag, argument, utf16, len(out)))
        else:  # closing tag
            if not nested:
                raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
            while data[i] not in _SPACE and data[i] != 0x3E:
                i += 1
            end_tag = data[begin + 2 : i].decode("utf-8", "replace").lower()
            while data[i] != 0 and data[i] in _SPACE:
                i += 1
            if data[i] != 0x3E:
                raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
            top = nested[-1]
            if end_tag and end_tag != top.tag:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{top.tag}>", found "</{end_tag}>"'
                )
            if utf16 > top.offset:
                _close_entity(top, utf16, out, entities)
            nested.pop()
        i += 1
    if nested:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{nested[-1].tag}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"], _PRIORITY.get(e["type"], 50)))
    return out.decode("utf-8", "surrogatepass"), entities


def _close_entity(top: _OpenTag, utf16: int, out: bytearray, entities: list[dict[str, Any]]) -> None:
    offset, length = top.offset, utf16 - top.offset
    span = {"offset": offset, "length": length}
    last = entities[-1] if entities else None
    same_range = last is not None and last["offset"] == offset and last["length"] == length
    if top.tag in _SIMPLE_ENTITY:
        entities.append({"type": _SIMPLE_ENTITY[top.tag], **span})
    elif top.tag == "tg-emoji":
        if not top.argument.isdigit() or int(top.argument) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append({"type": "custom_emoji", **span, "custom_emoji_id": top.argument})
    elif top.tag == "a":
        url = _checked_link(top.argument or out[top.out_pos :].decode("utf-8", "replace"))
        if url is not None:
            entities.append({"type": "text_link", **span, "url": url})
    elif top.tag == "pre":
        if same_range and last is not None and last["type"] == "code" and last.get("language"):
            entities[-1] = {"type": "pre", **span, "language": last["language"]}
        else:
            entities.append({"type": "pre", **span})
    elif top.tag == "code":
        if same_range and last is not None and last["type"] == "pre" and top.argument:
            last["language"] = top.argument
        else:
            entity = {"type": "code", **span}
            if top.argument:
                entity["language"] = top.argument  # only kept if a <pre> closes on the same range
            entities.append(entity)
    elif top.tag == "blockquote":
        kind = "expandable_blockquote" if top.argument == "expandable" else "blockquote"
        entities.append({"type": kind, **span})


def _checked_link(url: str) -> str | None:
    """Normalise a link like tdlib ("telegram.org" -> "http://telegram.org/"); None if it isn't one."""
    if not url or any(ch.isspace() for ch in url):
        return None
    if url.startswith(("tg:", "mailto:")):
        return url
    if "://" not in url:
        url = "http://" + url
    scheme, rest = url.split("://", 1)
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if scheme.lower() not in ("http", "https", "ftp", "tonsite") or "." not in host.strip("."):
        return None
    if len(host) == len(rest) or rest[len(host)] != "/":
        rest = host + "/" + rest[len(host) :]
    return f"{scheme.lower()}://{rest}"


def _finish_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    return entities


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Strip surrounding whitespace as Telegram does, clipping the entities to what is left."""
    stripped = text.strip(_TRIM)
    if stripped == text:
        return text, entities
    lead = _utf16_len(text[: len(text) - len(text.lstrip(_TRIM))])
    end = lead + _utf16_len(stripped)
    kept = []
    for entity in entities:
        start, stop = max(entity["offset"], lead), min(entity["offset"] + entity["length"], end)
        if stop > start:
            kept.append({**entity, "offset": start - lead, "length": stop - start})
    return stripped, kept


_COMMAND: Final = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])")


def _command_entities(text: str) -> list[dict[str, Any]]:
    return [
        {"type": "bot_command", "offset": _utf16_len(text[: m.start()]), "length": _utf16_len(m.group())}
        for m in _COMMAND.finditer(text)
    ]


# --------------------------------------------------------------------------------------------------- images


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Return (width, height) of a PNG/JPEG/GIF/BMP/WebP image, or None if Telegram couldn't process it."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data.startswith(b"BM") and len(data) >= 26:
        return int.from_bytes(data[18:22], "little", signed=True), abs(
            int.from_bytes(data[22:26], "little", signed=True)
        )
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return 512, 512
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 9 < len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(data[pos + 7 : pos + 9], "big"), int.from_bytes(data[pos + 5 : pos + 7], "big")
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _scaled(width: int, height: int, bound: int) -> tuple[int, int]:
    factor = min(1.0, bound / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


# --------------------------------------------------------------------------------------------------- server
