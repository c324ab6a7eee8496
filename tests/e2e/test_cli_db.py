"""`tradebot db backup` and `tradebot db restore` as an operator runs them.

The subprocess tests go through the real entry point (`python -m bot.cli db ...`); the in-process tests drive
`run_db` through the parser `add_db_parser` builds.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bot.cli.db import run_db
from bot.cli.parser import add_db_parser
from bot.config import BackupSettings, Settings
from bot.ops.database import backup_target, default_backup_dir
from data.backup import DatabaseLock, LocalTarget, S3Target
from data.sqlite.store import SqliteStore

TIMEOUT_S = 60
NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
BUCKET = "tradebot-backups"
BACKUP_LINE = re.compile(
    r"backup (tradebot-\d{8}T\d{6}Z\.db\.gz): [\d,]+ pages, [\d.]+ [kM]B → [\d.]+ [kM]B,"
    r" to (.+); kept (\d+), deleted (\d+)"
)


async def make_db(home: Path, marker: str) -> Path:
    path = home / "var" / "tradebot.db"
    async with await SqliteStore.open(path) as store:
        await store.start_run(NOW, NOW, "csv:x", ["EURUSD"])
        await store.set_state("marker", marker)
    return path


def marker(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("SELECT value FROM bot_state WHERE key = 'marker'").fetchone()[0])


# --- in process: run_db through the parser add_db_parser builds -------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tradebot")
    add_db_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def settings(home: Path, to: str = "", keep: int = 14) -> Settings:
    return Settings(db_path=home / "var" / "tradebot.db", backup=BackupSettings(to=to, keep=keep))


def one_line_failure(capsys: pytest.CaptureFixture[str], code: int) -> str:
    out, err = capsys.readouterr()
    assert (code, out) == (1, ""), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


async def test_the_config_decides_target_and_retention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await make_db(tmp_path, "x")
    configured = settings(tmp_path, to=str(tmp_path / "nightly"), keep=1)
    assert default_backup_dir(configured) == tmp_path / "var" / "backups"
    target = backup_target(configured)
    assert isinstance(target, LocalTarget) and target.directory == tmp_path / "nightly"
    assert backup_target(settings(tmp_path)).describe() == str(tmp_path / "var" / "backups")

    assert run_db(configured, parse("db", "backup"), NOW) == 0
    assert run_db(configured, parse("db", "backup"), NOW.replace(hour=4)) == 0
    assert run_db(configured, parse("db", "backup", "--to", str(tmp_path / "other"), "--keep", "5"), NOW) == 0

    lines = [BACKUP_LINE.fullmatch(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [m.groups() if m else None for m in lines] == [
        ("tradebot-20261121T030000Z.db.gz", str(tmp_path / "nightly"), "1", "0"),
        ("tradebot-20261121T040000Z.db.gz", str(tmp_path / "nightly"), "1", "1"),
        ("tradebot-20261121T030000Z.db.gz", str(tmp_path / "other"), "1", "0"),
    ]
    assert target.names() == ["tradebot-20261121T040000Z.db.gz"]


async def test_s3_backup_and_restore_of_the_newest_under_a_prefix(tmp_path: Path, s3: Any) -> None:
    db = await make_db(tmp_path, "in s3")
    configured = settings(tmp_path, to=f"s3://{BUCKET}/prod/tradebot", keep=3)
    target = backup_target(configured)
    assert isinstance(target, S3Target)
    assert run_db(configured, parse("db", "backup"), NOW) == 0
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE bot_state SET value = 'changed' WHERE key = 'marker'")

    assert run_db(configured, parse("db", "restore", f"s3://{BUCKET}/prod/tradebot"), NOW.replace(hour=4)) == 0

    assert target.names() == ["tradebot-20261121T030000Z.db.gz"]
    assert marker(db) == "in s3" and marker(db.with_name("tradebot.db.pre-restore-20261121T040000Z")) == "changed"


async def test_failures_are_one_line_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3: Any
) -> None:
    empty = settings(tmp_path / "empty")
    one_line = one_line_failure(capsys, run_db(empty, parse("db", "backup"), NOW))
    assert one_line == f"tradebot db backup: no database at {empty.db_path} yet: nothing to back up"

    db = await make_db(tmp_path, "current")
    before = db.read_bytes()
    bad = tmp_path / "tradebot-20261121T030000Z.db.gz"
    bad.write_bytes(gzip.compress(b"not a database\n" * 100))
    one_line = one_line_failure(capsys, run_db(settings(tmp_path), parse("db", "restore", str(bad)), NOW))
    assert one_line.startswith(f"tradebot db restore: {bad} is not a usable SQLite database")

    bad.write_bytes(gzip.compress(before))
    with DatabaseLock(db):  # this process plays the running bot
        one_line = one_line_failure(capsys, run_db(settings(tmp_path), parse("db", "restore", str(bad)), NOW))
    assert f"{db} is in use by a running tradebot (pid {os.getpid()})" in one_line

    nowhere = settings(tmp_path, to="s3://no-such-bucket/p")
    one_line = one_line_failure(capsys, run_db(nowhere, parse("db", "backup"), NOW))
    assert one_line.startswith("tradebot db backup: S3 upload to s3://no-such-bucket/p/tradebot-20261121T030000Z")
    assert "NoSuchBucket" in one_line
    assert db.read_bytes() == before


def test_usage_errors_exit_2() -> None:
    for args in (["db", "backup", "--keep", "0"], ["db", "backup", "--to", "s3://"], ["db", "restore"], ["db"]):
        with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as exited:
            parse(*args)
        assert exited.value.code == 2, args
    assert run_db(settings(Path("/nonexistent")), argparse.Namespace(), NOW) == 2


# --- through the real entry point ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wired() -> None:
    """The `db` command is on the real entry point's parser."""
    from bot.cli.parser import build_parser  # noqa: PLC0415

    assert build_parser().parse_args(["db", "backup"]).command == "db"


def start(home: Path, args: Sequence[str]) -> subprocess.Popen[str]:
    """Start `tradebot ARGS` with its database at HOME/var/tradebot.db and nothing of ours in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "AWS_", "TELEGRAM_"))}
    env |= {
        "TRADEBOT_DB_PATH": str(home / "var" / "tradebot.db"),
        "HOME": str(home),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=TIMEOUT_S)
    return process.returncode, out, err


@pytest.mark.usefixtures("wired")
async def test_tradebot_db_backup_then_restore_from_the_default_directory(tmp_path: Path) -> None:
    home, busy = tmp_path / "home", tmp_path / "busy"
    db = await make_db(home, "at backup time")
    held = await make_db(busy, "running")
    with DatabaseLock(held):  # this test process plays a running bot beside the other home
        refused = start(busy, ["db", "restore", str(home / "var" / "backups")])
        code, out, err = finish(start(home, ["db", "backup", "--keep", "2"]))
        refused_code, refused_out, refused_err = finish(refused)

    assert code == 0, err
    line = BACKUP_LINE.fullmatch(out.strip())
    assert line is not None, out
    assert line.group(2) == str(home / "var" / "backups") and line.groups()[2:] == ("1", "0")
    assert (refused_code, refused_out) == (1, "") and "Traceback" not in refused_err
    assert refused_err.strip() == (
        f"tradebot db restore: {held} is in use by a running tradebot (pid {os.getpid()}); "
        "stop it first (e.g. systemctl stop trading-bot)"
    )

    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE bot_state SET value = 'changed later' WHERE key = 'marker'")
    code, out, err = finish(start(home, ["db", "restore", str(home / "var" / "backups")]))

    assert code == 0, err
    assert out.startswith(f"restored {home / 'var' / 'backups' / line.group(1)} into {db}")
    aside = re.search(r"previous database moved to (\S+)$", out.strip())
    assert aside is not None, out
    assert marker(db) == "at backup time" and marker(Path(aside.group(1))) == "changed later"
    assert marker(held) == "running"
