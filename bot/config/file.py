"""Writing the trader's adoption of optimised parameters into the TOML config file, keeping everything else.

`tradebot optimise --adopt` proposes parameters chosen on the first training window; adopting them writes
`[strategies.NAME.pairs.SYMBOL]` with the parameters that differ from the strategy's and `tuned_until`, the end
of the data they were chosen on (the gate then measures only later trades). Comments, order and every other
key of the file stay as they were (tomlkit), and the file is replaced atomically with its mode kept, so a crash
never leaves half a config. A file that does not exist yet is created.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table


def _toml_value(value: Any) -> Any:
    """A parameter as TOML holds it: tuples as arrays, everything else as it is."""
    if isinstance(value, tuple | list):
        return [_toml_value(v) for v in value]
    return value


def adopt_pair_params(path: Path, strategy: str, symbol: str, params: Mapping[str, Any], tuned_until: datetime) -> str:
    """Write the pair's parameters and tuning end into `path`; return the file's previous text ("" if none)."""
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    doc = tomlkit.parse(before)
    strategies = doc.get("strategies")
    if strategies is None:
        strategies = tomlkit.table(is_super_table=True)
        doc["strategies"] = strategies
    section = strategies.get(strategy)
    if section is None:
        section = tomlkit.table(is_super_table=True)
        strategies[strategy] = section
    pairs = section.get("pairs")
    if pairs is None:
        pairs = tomlkit.table(is_super_table=True)
        section["pairs"] = pairs
    pair = tomlkit.table()
    inline = tomlkit.inline_table()
    for name in sorted(params):
        inline[name] = _toml_value(params[name])
    pair["params"] = inline
    pair["tuned_until"] = tuned_until.astimezone(UTC)
    pair["tuned_until"].comment("chosen by tradebot optimise on data up to here: the gate measures later trades")
    if not isinstance(pairs, Table):
        raise ValueError(f"{path}: strategies.{strategy}.pairs is not a table")
    pairs[symbol] = pair
    write_atomically(path, tomlkit.dumps(doc))
    return before


def restore(path: Path, before: str) -> None:
    """Put back the text `adopt_pair_params` replaced (remove the file if there was none)."""
    if before:
        write_atomically(path, before)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename, keeping its permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
