"""The systemd notify protocol (sd_notify), without a third-party library.

Under `Type=notify` systemd passes NOTIFY_SOCKET, a unix datagram socket (a filesystem path, or `@name` in the
abstract namespace). The service sends newline-separated `KEY=VALUE` lines to it: `READY=1` once started,
`WATCHDOG=1` at least every WATCHDOG_USEC when `WatchdogSec=` is set, `STOPPING=1` when shutting down and
`STATUS=...` for `systemctl status`. Without NOTIFY_SOCKET (a terminal, the tests) every call is a no-op.

The watchdog pings come from a task on the bot's event loop, so an event loop blocked for longer than
WatchdogSec stops them and systemd kills and restarts the service. A failed send is logged once and never
raised: losing systemd must not stop the bot (systemd's watchdog is the one that acts on silence).

Use::

    notifier = SystemdNotifier.from_environ(os.environ)
    notifier.ready("tradebot running")
    task = notifier.start_watchdog()
    ...
    notifier.stopping()
    if task is not None:
        task.cancel()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"

READY: Final = "READY=1"
WATCHDOG: Final = "WATCHDOG=1"
STOPPING: Final = "STOPPING=1"
STATUS_KEY: Final = "STATUS"
MAINPID_KEY: Final = "MAINPID"
EXTEND_TIMEOUT_KEY: Final = "EXTEND_TIMEOUT_USEC"

ABSTRACT_PREFIX: Final = "@"  # `@name` names a socket in the abstract namespace: a leading NUL byte
ABSTRACT_NUL: Final = "\0"
PATH_PREFIX: Final = "/"
LINE_SEPARATOR: Final = "\n"
ENCODING: Final = "utf-8"
USEC_PER_SECOND: Final = 1_000_000
PING_FRACTION: Final = 0.5  # ping twice per WatchdogSec, as sd_watchdog_enabled(3) recommends
WATCHDOG_TASK_NAME: Final = "systemd-watchdog"


def socket_address(value: str) -> str | None:
    """Return the AF_UNIX address for a NOTIFY_SOCKET value, or None when it is empty or unsupported."""
    if value.startswith(ABSTRACT_PREFIX) and len(value) > len(ABSTRACT_PREFIX):
        return ABSTRACT_NUL + value[len(ABSTRACT_PREFIX) :]
    if value.startswith(PATH_PREFIX):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str]) -> timedelta | None:
    """Return the ping period (half of WATCHDOG_USEC), or None when the watchdog is off or for another process."""
    raw = environ.get(WATCHDOG_USEC_ENV, "").strip()
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a whole number of microseconds", WATCHDOG_USEC_ENV, raw)
        return None
    if usec <= 0:
        return None
    pid = environ.get(WATCHDOG_PID_ENV, "").strip()
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            log.warning("ignoring the watchdog: %s=%r is not a process id", WATCHDOG_PID_ENV, pid)
            return None
    return timedelta(microseconds=usec * PING_FRACTION)


def _assignment(key: str, value: object) -> str:
    """Format one `KEY=VALUE` line; a newline in the value would start a new assignment, so it becomes a space."""
    text = str(value).replace("\r", " ").replace(LINE_SEPARATOR, " ")
    return f"{key}={text}"


class SystemdNotifier:
    """Send sd_notify messages to systemd; every method is a no-op when the service was not started by systemd."""

    def __init__(self, address: str | None, ping_period: timedelta | None = None) -> None:
        self._address = address
        self._ping_period = ping_period if address is not None else None
        self._socket: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SystemdNotifier:
        """Build a notifier from NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (disabled without NOTIFY_SOCKET)."""
        raw = environ.get(NOTIFY_SOCKET_ENV, "")
        address = socket_address(raw)
        if raw and address is None:
            log.warning("ignoring %s=%r: only a path or an @abstract name is supported", NOTIFY_SOCKET_ENV, raw)
        return cls(address, watchdog_interval(environ))

    @property
    def enabled(self) -> bool:
        """Say whether messages go anywhere (NOTIFY_SOCKET was set)."""
        return self._address is not None

    @property
    def ping_period(self) -> timedelta | None:
        """Return how often the watchdog task pings, or None when systemd asked for no watchdog."""
        return self._ping_period

    def ready(self, status: str = "") -> None:
        """Tell systemd that startup finished (READY=1), with an optional status line and the main pid."""
        lines = [READY]
        if status:
            lines.append(_assignment(STATUS_KEY, status))
        lines.append(_assignment(MAINPID_KEY, os.getpid()))
        self._send(lines)

    def watchdog(self) -> None:
        """Ping the watchdog (WATCHDOG=1)."""
        self._send([WATCHDOG])

    def stopping(self, status: str = "") -> None:
        """Tell systemd that the service is shutting down (STOPPING=1), with an optional status line."""
        lines = [STOPPING]
        if status:
            lines.append(_assignment(STATUS_KEY, status))
        self._send(lines)

    def status(self, text: str) -> None:
        """Set the one-line status `systemctl status` shows."""
        self._send([_assignment(STATUS_KEY, text)])

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more before the current start or stop times out (EXTEND_TIMEOUT_USEC)."""
        self._send([_assignment(EXTEND_TIMEOUT_KEY, max(0, round(seconds * USEC_PER_SECOND)))])

    def start_watchdog(self) -> asyncio.Task[None] | None:
        """Start pinging on the running event loop every ping period; None when no watchdog was requested."""
        period = self._ping_period
        if period is None:
            return None
        return asyncio.get_running_loop().create_task(self._ping_forever(period), name=WATCHDOG_TASK_NAME)

    def close(self) -> None:
        """Close the socket (a later message opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def _ping_forever(self, period: timedelta) -> None:
        """Ping now and then after every period; a blocked event loop delays the next ping."""
        seconds = period.total_seconds()
        while True:
            self.watchdog()
            await asyncio.sleep(seconds)

    def _send(self, lines: list[str]) -> None:
        """Send one datagram without blocking; log the first failure of a run of failures, never raise."""
        if self._address is None:
            return
        payload = LINE_SEPARATOR.join(lines).encode(ENCODING)
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(payload, self._address)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "cannot notify systemd at %s: %s; further failures are not logged until it works again",
                    self._display_address(),
                    exc,
                )
            return
        if self._failing:
            self._failing = False
            log.info("notifying systemd at %s works again", self._display_address())

    def _display_address(self) -> str:
        """Return the address as NOTIFY_SOCKET spells it (`@name` for the abstract namespace)."""
        address = self._address or ""
        return ABSTRACT_PREFIX + address[len(ABSTRACT_NUL) :] if address.startswith(ABSTRACT_NUL) else address

    def __del__(self) -> None:
        """Close the socket when the notifier is collected."""
        with contextlib.suppress(Exception):
            self.close()
