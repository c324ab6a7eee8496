"""sd_notify against a real datagram socket standing in for systemd's NOTIFY_SOCKET.

Watchdog timing is read from kernel receive timestamps (SO_TIMESTAMPNS: stamped when the datagram is queued,
i.e. when the bot sent it), so a slow test machine cannot blur when a ping was sent; only lower bounds are
asserted on time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from bot.ops.systemd import SystemdNotifier, watchdog_interval

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sd_notify is Linux-only")

SO_TIMESTAMPNS = 35  # Linux asm-generic value (x86_64, aarch64); Python's socket module does not export it
TIMESPEC = struct.Struct("@ll")  # struct timespec: tv_sec, tv_nsec
NANOS = 1e9
MAX_DATAGRAM = 4096
PING_USEC = 200_000  # WATCHDOG_USEC: the notifier pings every 0.1 s
PING_SECONDS = PING_USEC / 1_000_000 / 2
BLOCK_SECONDS = 0.6
CLOCK_SLACK = 0.005  # kernel timestamps use the wall clock, time.sleep the monotonic one


@dataclass(frozen=True)
class Datagram:
    at: float  # kernel timestamp, seconds
    data: bytes


class FakeSystemd:
    """A bound SOCK_DGRAM socket that records what a notifier sends, with kernel timestamps."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)

    def drain(self) -> list[Datagram]:
        """Everything queued so far, oldest first."""
        received: list[Datagram] = []
        while True:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(TIMESPEC.size))
            except BlockingIOError:
                return received
            stamp = next(raw for level, kind, raw in ancillary if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS)
            sec, nsec = TIMESPEC.unpack(stamp[: TIMESPEC.size])
            received.append(Datagram(sec + nsec / NANOS, data))

    def messages(self) -> list[bytes]:
        return [d.data for d in self.drain()]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "notify.sock"


@pytest.fixture
def systemd(socket_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(str(socket_path))
    yield fake
    fake.close()


@pytest.fixture
def notifier(socket_path: Path, systemd: FakeSystemd) -> Iterator[SystemdNotifier]:
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": str(PING_USEC)})
    yield notifier
    notifier.close()


def test_ready_watchdog_stopping_and_status_arrive_exactly(notifier: SystemdNotifier, systemd: FakeSystemd) -> None:
    assert notifier.enabled
    notifier.ready("tradebot running")
    notifier.watchdog()
    notifier.status("scanning\n3 symbols")
    notifier.extend_timeout(2.5)
    notifier.stopping("shutting down")
    notifier.ready()
    notifier.stopping()
    pid = os.getpid()
    assert systemd.messages() == [
        f"READY=1\nSTATUS=tradebot running\nMAINPID={pid}".encode(),
        b"WATCHDOG=1",
        b"STATUS=scanning 3 symbols",  # a newline would start a new assignment
        b"EXTEND_TIMEOUT_USEC=2500000",
        b"STOPPING=1\nSTATUS=shutting down",
        f"READY=1\nMAINPID={pid}".encode(),
        b"STOPPING=1",
    ]


def test_abstract_namespace_socket() -> None:
    name = f"tradebot-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": "@" + name})
    try:
        notifier.ready("up")
        notifier.watchdog()
        assert fake.messages() == [f"READY=1\nSTATUS=up\nMAINPID={os.getpid()}".encode(), b"WATCHDOG=1"]
    finally:
        notifier.close()
        fake.close()


async def test_disabled_without_notify_socket(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier.from_environ({"WATCHDOG_USEC": str(PING_USEC)})
    assert not notifier.enabled
    assert notifier.ping_period is None
    notifier.ready("up")
    notifier.watchdog()
    notifier.status("x")
    notifier.extend_timeout(1)
    notifier.stopping()
    assert notifier.start_watchdog() is None
    assert caplog.records == []


def test_unsupported_notify_socket_disables_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": "relative/path.sock"})
    assert not notifier.enabled
    notifier.ready()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_vanished_socket_logs_once_and_never_raises(
    socket_path: Path, systemd: FakeSystemd, notifier: SystemdNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    systemd.close()
    socket_path.unlink()
    caplog.set_level(logging.INFO, logger="bot.ops.systemd")
    notifier.ready("up")
    for _ in range(5):
        notifier.watchdog()
    notifier.stopping()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(socket_path) in warnings[0].getMessage()

    back = FakeSystemd(str(socket_path))  # systemd is back (daemon-reexec): messages flow, one line says so
    try:
        notifier.watchdog()
        notifier.watchdog()
        assert back.messages() == [b"WATCHDOG=1", b"WATCHDOG=1"]
        assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    finally:
        back.close()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == timedelta(seconds=30)
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == timedelta(seconds=30)
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "not-a-pid"}) is None


async def test_watchdog_for_another_process_is_not_started(socket_path: Path, systemd: FakeSystemd) -> None:
    environ = {"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": str(PING_USEC), "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval(environ) is None
    notifier = SystemdNotifier.from_environ(environ)
    assert notifier.enabled
    assert notifier.start_watchdog() is None
    await asyncio.sleep(3 * PING_SECONDS)
    assert systemd.messages() == []
    notifier.close()


async def test_watchdog_task_pings_every_half_interval(notifier: SystemdNotifier, systemd: FakeSystemd) -> None:
    assert notifier.ping_period == timedelta(seconds=PING_SECONDS)
    task = notifier.start_watchdog()
    assert task is not None
    await asyncio.sleep(5.5 * PING_SECONDS)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = systemd.drain()
    assert {p.data for p in pings} == {b"WATCHDOG=1"}
    assert len(pings) >= 3  # the first at once, then one per period (fewer on a slow machine)
    gaps = [b.at - a.at for a, b in pairwise(pings)]
    assert min(gaps) >= PING_SECONDS - CLOCK_SLACK  # never faster than the period

    await asyncio.sleep(2 * PING_SECONDS)
    assert systemd.drain() == []  # a cancelled task stops pinging


async def test_blocked_event_loop_stops_the_pings(notifier: SystemdNotifier, systemd: FakeSystemd) -> None:
    task = notifier.start_watchdog()
    assert task is not None
    await asyncio.sleep(2.5 * PING_SECONDS)
    time.sleep(BLOCK_SECONDS)  # a blocking call on the event loop: what the watchdog exists to catch
    await asyncio.sleep(2.5 * PING_SECONDS)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = systemd.drain()
    gaps = [b.at - a.at for a, b in pairwise(pings)]
    assert gaps, "expected pings before and after the block"
    assert max(gaps) >= BLOCK_SECONDS - CLOCK_SLACK  # no ping while blocked; they resume afterwards
