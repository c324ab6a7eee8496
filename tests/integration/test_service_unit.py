"""The systemd unit (verified by the real systemd-analyze) and ops/install.sh (run for real, twice and more).

install.sh runs against a scratch root (TRADEBOT_INSTALL_ROOT) with stand-ins on PATH for the commands that
would change the machine (useradd, apt-get, python3 -m venv, pip, systemctl) or describe it (id, getent,
dpkg-query). Each stand-in appends its argv to a log, so a test sees exactly what a run did.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.ops.systemd import watchdog_interval
from bot.telegram.app import SHUTDOWN_BUDGET_SECONDS

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "trading-bot.service"
INSTALL_SH = REPO / "ops" / "install.sh"
ENV_EXAMPLE = REPO / "ops" / "tradebot.env.example"
TOML_EXAMPLE = REPO / "ops" / "tradebot.toml.example"
SERVICE = "trading-bot.service"
STATE_DIR = "/var/lib/tradebot"
USEC_PER_SECOND = 1_000_000
TIME_UNITS = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}
CHANGING = re.compile(
    r"^(useradd|apt-get|python3 -m venv|pip install|systemctl (daemon-reload|enable|start|restart|stop))"
)


# --- the unit -------------------------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as (key, value) lists, in order, repeated keys kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"a setting outside any section: {line}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}: expected exactly one setting, found {found}"
    return found[0]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert match and match.group(2) in TIME_UNITS, f"not a time span this test understands: {value!r}"
    return float(match.group(1)) * TIME_UNITS[match.group(2)]


def megabytes(value: str) -> float:
    match = re.fullmatch(r"(\d+)([KMG])", value)
    assert match, f"not a size this test understands: {value!r}"
    return int(match.group(1)) * {"K": 1 / 1024, "M": 1, "G": 1024}[match.group(2)]


@pytest.fixture(scope="module")
def unit() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(UNIT.read_text())


def test_service_speaks_sd_notify_with_a_watchdog(unit: dict[str, list[tuple[str, str]]]) -> None:
    service = unit["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    watchdog = seconds(one(service, "WatchdogSec"))
    ping = watchdog_interval({"WATCHDOG_USEC": str(int(watchdog * USEC_PER_SECOND))})
    assert ping == timedelta(seconds=30)  # what the bot does with this unit's WATCHDOG_USEC
    assert watchdog > ping.total_seconds()
    assert seconds(one(service, "TimeoutStartSec")) >= 60


def test_restart_policy_and_stop_timeout(unit: dict[str, list[tuple[str, str]]]) -> None:
    service = unit["Service"]
    assert one(service, "Restart") == "on-failure"
    assert seconds(one(service, "RestartSec")) == 5
    assert one(unit["Unit"], "StartLimitIntervalSec") == "600"
    assert one(unit["Unit"], "StartLimitBurst") == "5"
    assert one(service, "KillSignal") == "SIGTERM"
    assert seconds(one(service, "TimeoutStopSec")) > 3 * SHUTDOWN_BUDGET_SECONDS


def test_runs_as_tradebot_with_its_state_directory(unit: dict[str, list[tuple[str, str]]]) -> None:
    service = unit["Service"]
    assert one(service, "ExecStart") == "/opt/tradebot/.venv/bin/tradebot run"
    assert one(service, "User") == one(service, "Group") == "tradebot"
    assert one(service, "StateDirectory") == "tradebot"
    assert one(service, "StateDirectoryMode") == "0750"
    assert one(service, "WorkingDirectory") == STATE_DIR
    assert one(service, "EnvironmentFile") == "/etc/tradebot/tradebot.env"
    environment = " ".join(values(service, "Environment")).split()
    assert {
        "HOME=/var/lib/tradebot",
        "MPLCONFIGDIR=/var/lib/tradebot/.matplotlib",
        "PYTHONUNBUFFERED=1",
        "MALLOC_ARENA_MAX=2",
    } <= set(environment)
    assert one(service, "SyslogIdentifier") == "tradebot"


def test_sandboxing(unit: dict[str, list[tuple[str, str]]]) -> None:
    service = unit["Service"]
    for key, expected in HARDENING.items():
        assert one(service, key) == expected, key
    assert values(service, "ReadWritePaths") == [STATE_DIR]  # the state directory and nothing else
    assert "/var/lib/" + one(service, "StateDirectory") == STATE_DIR
    families = one(service, "RestrictAddressFamilies").split()
    assert set(families) == {"AF_UNIX", "AF_INET", "AF_INET6"}  # AF_UNIX: sd_notify
    assert not values(service, "MemoryDenyWriteExecute")  # numpy, TA-Lib and matplotlib need W+X mappings
    assert megabytes(one(service, "MemoryHigh")) < megabytes(one(service, "MemoryMax")) <= 1536
    assert int(one(service, "TasksMax")) > 0


@dataclass(frozen=True)
class Verified:
    returncode: int
    about_unit: list[str]  # output lines that name the unit file
    output: str


def verify(text: str, directory: Path) -> Verified:
    """Run `systemd-analyze verify` on a copy of the unit whose ExecStart names a binary that exists here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    true = shutil.which("true")
    assert true is not None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SERVICE
    path.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={true}", text))
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}
    done = subprocess.run(
        [analyze, "verify", "--man=no", "--generators=no", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    return Verified(done.returncode, [line for line in output.splitlines() if SERVICE in line], output)


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    result = verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.output
    assert result.about_unit == [], result.output


def test_systemd_analyze_verify_catches_a_misspelt_directive_and_a_bad_value(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "\nProtectClock=yes\n" in text and "\nWatchdogSec=60\n" in text
    broken = text.replace("\nProtectClock=yes\n", "\nProtectClok=yes\n").replace(
        "\nWatchdogSec=60\n", "\nWatchdogSec=sixty\n"
    )
    result = verify(broken, tmp_path)
    assert any("ProtectClok" in line for line in result.about_unit), result.output
    assert any("sixty" in line for line in result.about_unit), result.output


# --- the env and config templates -----------------------------------------------------------------------------


def test_env_template_names_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    for name in (
        "TELEGRAM_BOT_TOKEN=",
        "TELEGRAM_ALLOWED_USERS=",
        "TELEGRAM_CHAT_ID=",
        "TRADEBOT_CONFIG=/etc/tradebot/tradebot.toml",
        "TRADEBOT_SECRETS_ID=",
        "AWS_REGION=",
        "TRADEBOT_LOGGING__FORMAT=json",
        "OANDA_TOKEN=",
    ):
        assert name in text, name
    assigned = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Z_]+=\S*", line) for line in assigned), assigned


def test_config_template_loads_and_keeps_the_database_in_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    settings = load_settings({"TRADEBOT_CONFIG": str(TOML_EXAMPLE)})
    assert settings.db_path == tmp_path / "state" / "tradebot.db"


# --- install.sh -----------------------------------------------------------------------------------------------

LOG_LINE = 'printf "%s\\n" "$(basename "$0") $*" >>"$SHIM_LOG"'
SHIMS = {
    "id": """[[ ${1:-} == -u ]] && echo "${SHIM_UID:-0}" """,
    "useradd": 'touch "$SHIM_STATE/user"',
    "getent": """
case ${2:-} in
    root) ;;
    tradebot) [[ -f $SHIM_STATE/user ]] || exit 2 ;;
    *) exit 2 ;;
esac
case $1 in
    passwd) echo "$2:x:@UID@:@GID@::/var/lib/tradebot:/usr/sbin/nologin" ;;
    group) echo "$2:x:@GID@:" ;;
    *) exit 2 ;;
esac""",
    "dpkg-query": """[[ -f $SHIM_STATE/pkg-${!#} ]] || exit 1; printf 'install ok installed'""",
    "apt-get": """
[[ $1 == install ]] || exit 0
for arg in "${@:2}"; do [[ $arg == -* ]] || touch "$SHIM_STATE/pkg-$arg"; done""",
    "python3": """
[[ $1 == -m && $2 == venv ]] || exit 64
mkdir -p "$3/bin"
printf '#!/usr/bin/env bash\\n%s\\n' 'printf "%s\\n" "pip $*" >>"$SHIM_LOG"' >"$3/bin/pip"
printf '#!/usr/bin/env bash\\nexit 0\\n' >"$3/bin/python"
chmod +x "$3/bin/pip" "$3/bin/python" """,
    "systemctl": """
case $1 in
    show) echo no ;;
    is-enabled) [[ -f $SHIM_STATE/enabled ]] ;;
    is-active) [[ -f $SHIM_STATE/active ]] ;;
    enable) touch "$SHIM_STATE/enabled" ;;
    start | restart) touch "$SHIM_STATE/active" ;;
    daemon-reload) ;;
    *) exit 64 ;;
esac""",
}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]  # every stand-in's argv during this run

    @property
    def changing(self) -> list[str]:
        return [c for c in self.calls if CHANGING.match(c)]

    @property
    def actions(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("do: ")]


class Machine:
    """A scratch root, a copy of the source tree and the stand-in commands."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.source = base / "src"
        self.shims = base / "shims"
        self.state = base / "state"
        self.log = base / "calls.log"
        for directory in (self.root, self.shims, self.state):
            directory.mkdir()
        self.log.touch()
        for relative in ("pyproject.toml", SERVICE, "ops/tradebot.env.example", "ops/tradebot.toml.example"):
            (self.source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / relative, self.source / relative)
        (self.source / "bot").mkdir()
        (self.source / "bot" / "__init__.py").write_text('"""tradebot."""\n')
        for name, template in SHIMS.items():
            script = self.shims / name
            body = template.replace("@UID@", str(os.getuid())).replace("@GID@", str(os.getgid()))
            script.write_text(f"#!/usr/bin/env bash\n{LOG_LINE}\n{body}\n")
            script.chmod(0o755)

    def install(self, *args: str, uid: int = 0) -> Run:
        before = len(self.log.read_text().splitlines())
        env = {
            **os.environ,
            "PATH": f"{self.shims}{os.pathsep}{os.environ['PATH']}",
            "TRADEBOT_INSTALL_ROOT": str(self.root),
            "SHIM_LOG": str(self.log),
            "SHIM_STATE": str(self.state),
            "SHIM_UID": str(uid),
        }
        done = subprocess.run(
            ["bash", str(INSTALL_SH), "--source", str(self.source), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        calls = self.log.read_text().splitlines()[before:]
        return Run(done.returncode, done.stdout, done.stderr, calls)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def tree(self) -> dict[str, tuple[int, int, int]]:
        """Every path under the root and the state, with mode, size and mtime."""
        found: dict[str, tuple[int, int, int]] = {}
        for top in (self.root, self.state):
            for path in [top, *top.rglob("*")]:
                info = path.lstat()
                found[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns)
        return found


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_sh_parses() -> None:
    done = subprocess.run(["bash", "-n", str(INSTALL_SH)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert INSTALL_SH.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in INSTALL_SH.read_text()


def test_install_sh_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    done = subprocess.run([shellcheck, str(INSTALL_SH)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_help_and_bad_options(machine: Machine) -> None:
    helped = machine.install("--help")
    assert helped.returncode == 0
    for option in ("--dry-run", "--source", "--prefix", "--no-start", "--upgrade"):
        assert option in helped.stdout
    bad = machine.install("--frobnicate")
    assert bad.returncode != 0
    assert "unknown option: --frobnicate" in bad.stderr
    assert machine.install("--source", str(machine.root)).returncode != 0  # not a tradebot checkout


def test_refuses_to_run_without_root(machine: Machine) -> None:
    run = machine.install(uid=1000)
    assert run.returncode != 0
    assert "run as root" in run.stderr
    assert run.changing == []
    assert not any(machine.root.iterdir())


def test_dry_run_prints_every_step_and_changes_nothing(machine: Machine) -> None:
    before = machine.tree()
    run = machine.install("--dry-run", uid=1000)  # root is not needed to look
    assert run.returncode == 0, run.stderr
    assert run.changing == []
    assert machine.tree() == before
    actions = "\n".join(run.actions)
    for step in (
        "install apt packages: python3-venv",
        "create system user tradebot",
        "create venv /opt/tradebot/.venv",
        "install tradebot",
        "create /etc/tradebot (0750 root:tradebot)",
        "create /etc/tradebot/tradebot.env from ops/tradebot.env.example (0600 root:root)",
        "create /etc/tradebot/tradebot.toml from ops/tradebot.toml.example (0640 root:tradebot)",
        "install /etc/systemd/system/trading-bot.service",
        "systemctl daemon-reload",
        "enable trading-bot.service",
    ):
        assert step in actions, step
    assert "would run: useradd --system" in run.stdout
    assert "would run: systemctl enable trading-bot.service" in run.stdout
    assert "todo: put TELEGRAM_BOT_TOKEN" in run.stdout  # a fresh env file has no token: not started
    assert run.stdout.rstrip().endswith("dry run: nothing was changed")


def test_install_then_nothing_to_do_and_only_what_changed(machine: Machine) -> None:
    first = machine.install()
    assert first.returncode == 0, first.stderr
    src = str(machine.source)
    assert first.changing == [
        "apt-get update",
        "apt-get install --yes --no-install-recommends python3-venv",
        "useradd --system --user-group --home-dir /var/lib/tradebot --no-create-home --shell /usr/sbin/nologin "
        "tradebot",
        f"python3 -m venv {machine.path('/opt/tradebot/.venv')}",
        f"pip install --disable-pip-version-check --upgrade {src}",
        "systemctl daemon-reload",
        "systemctl enable trading-bot.service",
    ]
    unit_file = machine.path("/etc/systemd/system/trading-bot.service")
    env_file = machine.path("/etc/tradebot/tradebot.env")
    assert unit_file.read_text() == UNIT.read_text()
    assert mode(unit_file) == 0o644
    assert mode(machine.path("/etc/tradebot")) == 0o750
    assert env_file.read_text() == ENV_EXAMPLE.read_text()
    assert mode(env_file) == 0o600
    assert mode(machine.path("/etc/tradebot/tradebot.toml")) == 0o640
    assert "todo: put TELEGRAM_BOT_TOKEN" in first.stdout  # not started with an empty token

    env_file.write_text(env_file.read_text().replace("\nTELEGRAM_BOT_TOKEN=\n", "\nTELEGRAM_BOT_TOKEN=123:abc\n"))
    second = machine.install()  # the operator filled in the token and runs it again
    assert second.returncode == 0, second.stderr
    assert second.changing == ["systemctl start trading-bot.service"]
    assert second.actions == ["do: start trading-bot.service"]

    unit_before = unit_file.stat()
    tree = machine.tree()
    third = machine.install()
    assert third.returncode == 0, third.stderr
    assert third.changing == []
    assert third.actions == []
    assert third.stdout.rstrip().endswith("everything is already in place")
    assert machine.tree() == tree
    assert (unit_file.stat().st_ino, unit_file.stat().st_mtime_ns) == (unit_before.st_ino, unit_before.st_mtime_ns)
    assert "TELEGRAM_BOT_TOKEN=123:abc" in env_file.read_text()  # never overwritten

    looked = machine.install("--dry-run")
    assert looked.changing == [] and looked.actions == []
    assert looked.stdout.rstrip().endswith("everything is already in place")

    (machine.source / "bot" / "__init__.py").write_text('"""tradebot, next version."""\n')
    code = machine.install()  # a code change: reinstall and restart, the unit stays
    assert code.returncode == 0, code.stderr
    assert code.changing == [
        f"pip install --disable-pip-version-check --upgrade {src}",
        "systemctl restart trading-bot.service",
    ]

    (machine.source / SERVICE).write_text(UNIT.read_text() + "# changed\n")
    changed_unit = machine.install("--no-start")  # a unit change: copy and reload; --no-start: no restart
    assert changed_unit.returncode == 0, changed_unit.stderr
    assert changed_unit.changing == ["systemctl daemon-reload"]
    assert unit_file.read_text().endswith("# changed\n")
    assert "still runs the old version" in changed_unit.stderr

    upgraded = machine.install("--upgrade")
    assert upgraded.changing == [
        f"pip install --disable-pip-version-check --upgrade --upgrade-strategy eager {src}",
        "systemctl restart trading-bot.service",
    ]


def test_prefix_moves_the_venv_and_exec_start(machine: Machine) -> None:
    run = machine.install("--prefix", "/srv/tradebot", "--no-start")
    assert run.returncode == 0, run.stderr
    assert (machine.path("/srv/tradebot/.venv") / "bin" / "pip").is_file()
    unit = parse_unit(machine.path("/etc/systemd/system/trading-bot.service").read_text())
    assert one(unit["Service"], "ExecStart") == "/srv/tradebot/.venv/bin/tradebot run"
    assert not machine.path("/opt/tradebot").exists()
