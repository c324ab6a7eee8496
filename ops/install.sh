#!/usr/bin/env bash
# Install or update tradebot as the systemd service trading-bot on Ubuntu 24.04 (arm64: AWS Graviton t4g).
#
# Idempotent: every step checks first and prints "ok: ..." when it is already in place or "do: ..." when it
# changes something, so running it again after a `git pull` only does what the pull made necessary.
#
#   apt packages     python3-venv only. Every compiled dependency has a manylinux aarch64 wheel for
#                    CPython 3.12 (Ubuntu 24.04's python3), including ta-lib>=0.6, whose wheels bundle the
#                    TA-Lib C library: no compiler, python3-dev or TA-Lib C build is needed.
#   system user      tradebot (group tradebot), home /var/lib/tradebot (systemd's StateDirectory), no login.
#   venv             PREFIX/.venv (default /opt/tradebot/.venv), owned by root: the service cannot change its code.
#   package          `pip install --upgrade SOURCE` into the venv, only when the source changed since the last
#                    install (a sha256 of pyproject.toml and the packages' .py files, kept in
#                    PREFIX/.source-sha256). --upgrade reinstalls regardless and also upgrades the
#                    dependencies to the newest versions pyproject.toml allows.
#   /etc/tradebot    0750 root:tradebot. tradebot.env from ops/tradebot.env.example (0600 root:root, read by
#                    systemd) and tradebot.toml from ops/tradebot.toml.example (0640 root:tradebot), each only
#                    when absent: an existing file is never overwritten.
#   unit             /etc/systemd/system/trading-bot.service, copied only when it differs (cmp); then
#                    daemon-reload (only then), enable, and start, or restart when the unit or the package
#                    changed. The service is not started while tradebot.env has neither TELEGRAM_BOT_TOKEN nor
#                    TRADEBOT_SECRETS_ID: fill it in and run this again (or `systemctl start trading-bot`).
#
# Testing: TRADEBOT_INSTALL_ROOT (default /) is prepended to every file path the script reads or writes, so a
# test can run it against a scratch directory with stand-ins for useradd, systemctl & co. on PATH.
set -euo pipefail

readonly SERVICE=trading-bot.service
readonly SERVICE_USER=tradebot
readonly SERVICE_GROUP=tradebot
readonly ROOT_USER=root
readonly ROOT_GROUP=root
readonly STATE_DIR=/var/lib/tradebot
readonly CONFIG_DIR=/etc/tradebot
readonly ENV_FILE=$CONFIG_DIR/tradebot.env
readonly CONFIG_FILE=$CONFIG_DIR/tradebot.toml
readonly UNIT_DIR=/etc/systemd/system
readonly DEFAULT_PREFIX=/opt/tradebot
readonly NOLOGIN_SHELL=/usr/sbin/nologin
readonly APT_PACKAGES=(python3-venv)
readonly PACKAGE_DIRS=(bot engine data) # [tool.setuptools.packages.find] in pyproject.toml
readonly SOURCE_STAMP=.source-sha256
readonly EXPECTED_ARCH=aarch64
readonly EXPECTED_OS="ubuntu 24.04"
readonly CREDENTIAL_KEYS="TELEGRAM_BOT_TOKEN|TRADEBOT_SECRETS_ID"
readonly INSTALL_ROOT=${TRADEBOT_INSTALL_ROOT:-/}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(dirname "$script_dir")
prefix=$DEFAULT_PREFIX
dry_run=0
start=1
upgrade=0
changed=0
pending=0
unit_changed=0
package_changed=0

usage() {
    cat <<EOF
Usage: $(basename "$0") [--dry-run] [--source DIR] [--prefix DIR] [--no-start] [--upgrade]

Install or update tradebot as the systemd service ${SERVICE%.service} (Ubuntu 24.04, arm64). Run as root.

  --dry-run      print every step (ok: in place, do: would change) and change nothing; root not needed
  --source DIR   the tradebot checkout to install (default: the one holding this script: $source_dir)
  --prefix DIR   where the venv goes (default: $DEFAULT_PREFIX; the unit's ExecStart follows it)
  --no-start     install and enable, but neither start nor restart the service
  --upgrade      reinstall the package even if the source is unchanged, upgrading its dependencies
  -h, --help     this text
EOF
}

ok() { printf 'ok: %s\n' "$*"; }
act() {
    printf 'do: %s\n' "$*"
    changed=1
}
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Run a changing command, or only print it under --dry-run.
run() {
    if ((dry_run)); then
        printf '    would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# The path on the target file system (under TRADEBOT_INSTALL_ROOT).
target() {
    if [[ $INSTALL_ROOT == / ]]; then
        printf '%s' "$1"
    else
        printf '%s%s' "${INSTALL_ROOT%/}" "$1"
    fi
}

# Print uid:gid for a user and a group, or nothing when either does not exist (yet).
numeric_owner() {
    local uid gid
    uid=$(getent passwd "$1" | cut -d: -f3) || true
    gid=$(getent group "$2" | cut -d: -f3) || true
    if [[ -n $uid && -n $gid ]]; then
        printf '%s:%s' "$uid" "$gid"
    fi
}

# Succeed when PATH exists with MODE (octal, as stat %a prints it) and is owned by USER:GROUP.
has_attributes() {
    local path=$1 mode=$2 ids
    ids=$(numeric_owner "$3" "$4")
    [[ -e $path && -n $ids && $(stat -c '%a %u:%g' "$path") == "$mode $ids" ]]
}

# Give PATH to USER:GROUP (as numeric ids, looked up through getent like everything else here).
set_owner() {
    local ids
    ids=$(numeric_owner "$2" "$3")
    run chown "${ids:-$2:$3}" "$1"
}

parse_arguments() {
    while (($#)); do
        case $1 in
            --dry-run) dry_run=1 ;;
            --no-start) start=0 ;;
            --upgrade) upgrade=1 ;;
            --source | --prefix)
                (($# >= 2)) || die "$1 needs a directory"
                if [[ $1 == --source ]]; then source_dir=$2; else prefix=$2; fi
                shift
                ;;
            --source=*) source_dir=${1#*=} ;;
            --prefix=*) prefix=${1#*=} ;;
            -h | --help)
                usage
                exit 0
                ;;
            *)
                usage >&2
                die "unknown option: $1"
                ;;
        esac
        shift
    done
    [[ -d $source_dir ]] || die "--source: no such directory: $source_dir"
    source_dir=$(cd "$source_dir" && pwd)
    local needed
    for needed in pyproject.toml "$SERVICE" ops/tradebot.env.example; do
        [[ -f $source_dir/$needed ]] || die "$source_dir is not a tradebot checkout: $needed is missing"
    done
    [[ $prefix == /* ]] || die "--prefix must be an absolute path, got $prefix"
    prefix=${prefix%/}
}

check_platform() {
    local arch os=""
    arch=$(uname -m)
    if [[ $arch == "$EXPECTED_ARCH" ]]; then
        ok "architecture $arch"
    else
        warn "this is $arch, not $EXPECTED_ARCH (arm64): continuing"
    fi
    local os_release
    os_release=$(target /etc/os-release)
    if [[ -r $os_release ]]; then
        # shellcheck disable=SC1090 # os-release is a list of shell assignments
        os=$(. "$os_release" && printf '%s %s' "${ID:-}" "${VERSION_ID:-}")
    fi
    if [[ $os == "$EXPECTED_OS" ]]; then
        ok "os $os"
    else
        warn "this is '${os:-an unknown os}', not $EXPECTED_OS: continuing"
    fi
}

check_root() {
    if ((!dry_run)) && [[ $(id -u) != 0 ]]; then
        die "run as root (sudo $0), or see what it would do with --dry-run"
    fi
}

ensure_apt_packages() {
    local package missing=()
    for package in "${APT_PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true) != "install ok installed" ]]; then
            missing+=("$package")
        fi
    done
    if ((${#missing[@]} == 0)); then
        ok "apt packages installed: ${APT_PACKAGES[*]}"
        return
    fi
    act "install apt packages: ${missing[*]}"
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends "${missing[@]}"
}

ensure_user() {
    if getent passwd "$SERVICE_USER" >/dev/null; then
        ok "system user $SERVICE_USER exists"
        return
    fi
    act "create system user $SERVICE_USER (home $STATE_DIR, no login)"
    run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell "$NOLOGIN_SHELL" \
        "$SERVICE_USER"
}

ensure_venv() {
    local dir
    dir=$(target "$prefix/.venv")
    if [[ -x $dir/bin/python ]]; then
        ok "venv $prefix/.venv exists"
        return
    fi
    act "create venv $prefix/.venv"
    run mkdir -p "$(target "$prefix")"
    run python3 -m venv "$dir"
}

# A sha256 over pyproject.toml and the packages' .py files: changes with any code change, commit or not.
source_id() {
    local dir dirs=()
    for dir in "${PACKAGE_DIRS[@]}"; do
        if [[ -d $source_dir/$dir ]]; then
            dirs+=("$dir")
        fi
    done
    (
        cd "$source_dir"
        {
            printf '%s\n' pyproject.toml
            if ((${#dirs[@]})); then
                find "${dirs[@]}" -type f -name '*.py' ! -path '*/__pycache__/*'
            fi
        } | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -d' ' -f1
    )
}

write_stamp() { printf '%s\n' "$2" >"$1"; }

ensure_package() {
    local id stamp version installed="" options=(--upgrade)
    id=$(source_id)
    stamp=$(target "$prefix/$SOURCE_STAMP")
    version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$source_dir/pyproject.toml" | head -n 1)
    if [[ -f $stamp ]]; then
        installed=$(<"$stamp")
    fi
    if ((upgrade)); then
        act "reinstall tradebot $version from $source_dir and upgrade its dependencies (--upgrade)"
        options+=(--upgrade-strategy eager)
    elif [[ $installed == "$id" ]]; then
        ok "tradebot $version installed from the current source"
        return
    else
        act "install tradebot $version from $source_dir${installed:+ (the source changed)}"
    fi
    run "$(target "$prefix/.venv")/bin/pip" install --disable-pip-version-check "${options[@]}" "$source_dir"
    run write_stamp "$stamp" "$id"
    package_changed=1
}

ensure_config_dir() {
    local dir
    dir=$(target "$CONFIG_DIR")
    if has_attributes "$dir" 750 "$ROOT_USER" "$SERVICE_GROUP"; then
        ok "$CONFIG_DIR exists (0750 $ROOT_USER:$SERVICE_GROUP)"
        return
    fi
    if [[ -d $dir ]]; then
        act "set $CONFIG_DIR to 0750 $ROOT_USER:$SERVICE_GROUP"
        run chmod 750 "$dir"
    else
        act "create $CONFIG_DIR (0750 $ROOT_USER:$SERVICE_GROUP)"
        run mkdir -p -m 750 "$dir"
    fi
    set_owner "$dir" "$ROOT_USER" "$SERVICE_GROUP"
}

# Copy a template to PATH only when PATH is absent, created with MODE from the start.
ensure_from_template() {
    local source=$1 path=$2 mode=$3 group=$4 file
    file=$(target "$path")
    if [[ -e $file ]]; then
        ok "$path exists (left as it is)"
        return
    fi
    if [[ ! -f $source ]]; then
        warn "no $source to create $path from: skipped"
        return
    fi
    act "create $path from ${source#"$source_dir"/} (0$mode $ROOT_USER:$group)"
    run install -m "$mode" "$source" "$file"
    set_owner "$file" "$ROOT_USER" "$group"
}

render_unit() {
    sed "s#$DEFAULT_PREFIX/#$prefix/#g" "$source_dir/$SERVICE"
}

write_unit() {
    render_unit >"$1.new"
    chmod 644 "$1.new"
    mv -f "$1.new" "$1"
}

ensure_unit() {
    local file
    file=$(target "$UNIT_DIR/$SERVICE")
    if [[ -f $file ]] && cmp -s <(render_unit) "$file"; then
        ok "$UNIT_DIR/$SERVICE is current"
        return
    fi
    act "install $UNIT_DIR/$SERVICE"
    run mkdir -p "$(target "$UNIT_DIR")"
    run write_unit "$file"
    unit_changed=1
}

ensure_daemon_reload() {
    local stale
    stale=$(systemctl show --property=NeedDaemonReload --value "$SERVICE" 2>/dev/null || true)
    if ((unit_changed)) || [[ $stale == yes ]]; then
        act "systemctl daemon-reload"
        run systemctl daemon-reload
    else
        ok "systemd has loaded the current unit"
    fi
}

ensure_enabled() {
    if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then
        ok "$SERVICE enabled"
        return
    fi
    act "enable $SERVICE (start at boot)"
    run systemctl enable "$SERVICE"
}

has_credentials() {
    local file
    file=$(target "$ENV_FILE")
    [[ -r $file ]] && grep -Eq "^[[:space:]]*($CREDENTIAL_KEYS)=[^[:space:]]" "$file"
}

ensure_started() {
    local active=0
    if systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
        active=1
    fi
    if ((!start)); then
        if ((active && (unit_changed || package_changed))); then
            warn "the running service still runs the old version: systemctl restart $SERVICE"
        fi
        ok "not starting or restarting $SERVICE (--no-start)"
    elif ((active)); then
        if ((unit_changed || package_changed)); then
            act "restart $SERVICE (the unit or the package changed)"
            run systemctl restart "$SERVICE" || die "$SERVICE did not restart: journalctl -u $SERVICE -n 50"
        else
            ok "$SERVICE running"
        fi
    elif ! has_credentials; then
        printf 'todo: put TELEGRAM_BOT_TOKEN and TELEGRAM_ALLOWED_USERS (or TRADEBOT_SECRETS_ID) in %s,\n' "$ENV_FILE"
        printf '      then run this again or: systemctl start %s\n' "$SERVICE"
        pending=1
    else
        act "start $SERVICE"
        run systemctl start "$SERVICE" || die "$SERVICE did not start: journalctl -u $SERVICE -n 50"
    fi
}

main() {
    parse_arguments "$@"
    check_platform
    check_root
    ensure_apt_packages
    ensure_user
    ensure_venv
    ensure_package
    ensure_config_dir
    ensure_from_template "$source_dir/ops/tradebot.env.example" "$ENV_FILE" 600 "$ROOT_GROUP"
    ensure_from_template "$source_dir/ops/tradebot.toml.example" "$CONFIG_FILE" 640 "$SERVICE_GROUP"
    ensure_unit
    ensure_daemon_reload
    ensure_enabled
    ensure_started
    if ((!changed && !pending)); then
        echo "everything is already in place"
    elif ((!changed)); then
        echo "nothing changed; the service waits for its credentials (todo above)"
    elif ((dry_run)); then
        echo "dry run: nothing was changed"
    fi
}

main "$@"
