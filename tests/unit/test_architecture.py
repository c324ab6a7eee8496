"""The layering stays true: who may import what (read from the source, the way docs/architecture.md states it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 650  # "about 600": a file past this is split


def modules(package: str) -> dict[str, set[str]]:
    """Every module under `package` with the modules it imports (absolute names, top level and nested)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
        found[name] = imported
    return found


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def breaches(package: str, forbidden: tuple[str, ...], allowed_in: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        f"{module} imports {imported}"
        for module, imports in modules(package).items()
        if not within(module, *allowed_in)
        for imported in imports
        if within(imported, *forbidden)
    )


def test_the_engine_is_pure() -> None:
    io = ("bot", "data", "telegram", "httpx", "aiohttp", "aiosqlite", "sqlite3", "boto3", "yfinance", "requests", "os")
    assert breaches("engine", io) == []


def test_data_never_reaches_up_into_the_bot() -> None:
    assert breaches("data", ("bot", "telegram")) == []


def test_only_the_telegram_adapter_imports_telegram() -> None:
    assert breaches("bot", ("telegram",), allowed_in=("bot.telegram",)) == []
    assert breaches("data", ("telegram",)) == []


def test_services_know_no_adapter_and_no_bootstrap() -> None:
    adapters = ("telegram", "bot.telegram", "bot.brokers", "bot.bootstrap", "bot.cli")
    assert [b for b in breaches("bot", adapters) if b.startswith("bot.services")] == []


def test_brokers_and_operations_do_not_reach_the_chat_or_the_commands() -> None:
    chat = ("telegram", "bot.telegram", "bot.cli", "bot.bootstrap")
    assert [b for b in breaches("bot", chat) if b.startswith(("bot.brokers", "bot.ops"))] == []


@pytest.mark.parametrize("package", ["bot", "data"])
def test_no_file_is_too_long_to_read(package: str) -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_chat_adapter_does_not_reach_the_command_line() -> None:
    assert [b for b in breaches("bot", ("bot.cli",)) if b.startswith("bot.telegram")] == []
