# Shared helpers for scripts/demo and scripts/test (sourced, not run).
#
# Made for a fresh Debian 12 machine, run as root (or with sudo), no systemd:
# Debian packages come from apt, Python packages from PyPI into one virtual
# environment per Firebird version under .venvs/ (firebird-embedded 3.0, 4.0
# and 5.0 cannot be installed side by side). Every step checks first and
# skips what is already done, so a second run only costs a few checks.
#
# Environment:
#   FBAUDIT_PYTHON   Python (>= 3.11) that creates the venvs [default: python3]

set -euo pipefail

FBA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FBA_VENVS="$FBA_ROOT/.venvs"
FBA_PYTHON="${FBAUDIT_PYTHON:-python3}"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off

# One venv per embedded Firebird version.
declare -A FBA_EMBEDDED=([fb3]=3.0.14.4 [fb4]=4.0.7.4 [fb5]=5.0.4.4)

fba_say() { printf '%s\n' "$*" >&2; }
fba_die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Monotonic-enough wall clock in microseconds (bash 5 $EPOCHREALTIME).
fba_now() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$((10#$t))"; }
# Seconds since a fba_now value, one decimal: "12.3".
fba_since() {
    local d=$(( $(fba_now) - $1 ))
    printf '%d.%d' "$((d / 1000000))" "$((d % 1000000 / 100000))"
}

fba_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fba_die "this step needs root: $*"
    fi
}

# --------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------
fba_missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || printf '%s\n' "$p"
    done
}

FBA_APT_UPDATED=0
fba_apt_update() {
    fba_say "apt-get update"
    fba_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    FBA_APT_UPDATED=1
}

# Package lists missing, or none downloaded in the last 24 hours. (ctime, not
# mtime: apt gives the files the server's Last-Modified time.)
fba_apt_lists_stale() {
    [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -cmin -1440 -print -quit 2>/dev/null)" ]]
}

# fba_apt_install PKG... : install the packages that are not installed yet.
fba_apt_install() {
    local missing
    missing=$(fba_missing_packages "$@" | tr '\n' ' ')
    missing=${missing% }
    [[ -n $missing ]] || return 0
    command -v apt-get >/dev/null 2>&1 ||
        fba_die "missing system packages ($missing) and no apt-get: install them by hand"
    if [[ $FBA_APT_UPDATED -eq 0 ]] && fba_apt_lists_stale; then
        fba_apt_update
    fi
    fba_say "apt-get install -y $missing"
    # shellcheck disable=SC2086
    if ! fba_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2; then
        [[ $FBA_APT_UPDATED -eq 0 ]] || fba_die "apt-get install $missing failed"
        fba_apt_update   # lists older than the mirror: update once and retry
        # shellcheck disable=SC2086
        fba_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2 ||
            fba_die "apt-get install $missing failed"
    fi
}

# A Python >= 3.11 that can create venvs with pip (Debian: python3-venv).
fba_python_ok() {
    "$FBA_PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

fba_ensure_python() {
    fba_python_ok && return 0
    if [[ -z ${FBAUDIT_PYTHON:-} ]]; then
        fba_apt_install python3 python3-venv
        fba_python_ok && return 0
    fi
    fba_die "$FBA_PYTHON is not a Python >= 3.11 with the venv module (Debian: apt-get install python3 python3-venv; or set FBAUDIT_PYTHON)"
}

# --------------------------------------------------------------------------
# Virtual environments: .venvs/NAME with fbaudit (editable, [test]) and one
# firebird-embedded version. A stamp file records what was installed; the
# install is redone only when setup.cfg / pyproject.toml or the version change.
# --------------------------------------------------------------------------
fba_stamp() {  # fba_stamp EMBEDDED_VERSION
    { cat "$FBA_ROOT/setup.cfg" "$FBA_ROOT/pyproject.toml"; echo "firebird-embedded==$1"; } |
        sha256sum | cut -d' ' -f1
}

fba_venv_current() {  # fba_venv_current NAME
    local dir="$FBA_VENVS/$1"
    [[ -f $dir/.fbaudit-stamp && "$(<"$dir/.fbaudit-stamp")" == "$(fba_stamp "${FBA_EMBEDDED[$1]}")" ]] &&
        "$dir/bin/python" -c 'import fbaudit, firebird.embedded, pytest' >/dev/null 2>&1
}

# fba_venv NAME: create or update .venvs/NAME. Prints progress on stdout
# (callers send it to a log when they run several at once).
fba_venv() {
    local name=$1 ver=${FBA_EMBEDDED[$1]} dir="$FBA_VENVS/$1"
    if fba_venv_current "$name"; then
        echo "$name: up to date (firebird-embedded==$ver)"
        return 0
    fi
    mkdir -p "$FBA_VENVS"
    rm -f "$dir/.fbaudit-stamp"
    if ! "$dir/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$dir"
        echo "$name: $FBA_PYTHON -m venv $dir"
        "$FBA_PYTHON" -m venv "$dir"
    fi
    echo "$name: pip install firebird-embedded==$ver"
    "$dir/bin/python" -m pip install "firebird-embedded==$ver"
    # The editable build writes fbaudit.egg-info into the repository: one at a time.
    echo "$name: pip install -e '.[test]'"
    flock "$FBA_VENVS/.editable.lock" "$dir/bin/python" -m pip install -e "$FBA_ROOT[test]"
    "$dir/bin/python" -c 'import fbaudit, firebird.embedded, pytest'
    fba_stamp "$ver" >"$dir/.fbaudit-stamp"
    echo "$name: ready"
}

# fba_venvs NAME...: set up several venvs in parallel; on failure show the log.
fba_venvs() {
    local name rc=0 logdir="$FBA_VENVS/logs"
    local -A pids=()
    mkdir -p "$logdir"
    for name in "$@"; do
        if fba_venv_current "$name"; then
            fba_say "venv .venvs/$name: up to date"
            continue
        fi
        fba_say "venv .venvs/$name: installing fbaudit[test] + firebird-embedded==${FBA_EMBEDDED[$name]} (log: .venvs/logs/$name.log)"
        (fba_venv "$name") >"$logdir/$name.log" 2>&1 &
        pids[$name]=$!
    done
    for name in "${!pids[@]}"; do
        if ! wait "${pids[$name]}"; then
            fba_say "venv .venvs/$name FAILED; last lines of .venvs/logs/$name.log:"
            tail -n 30 "$logdir/$name.log" >&2
            rc=1
        fi
    done
    [[ $rc -eq 0 ]] || fba_die "could not set up the virtual environment(s)"
}

# --------------------------------------------------------------------------
# The Debian Firebird 3.0 server (no systemd: started by hand)
# --------------------------------------------------------------------------
fba_port_open() {  # fba_port_open PORT
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
}

fba_start_server() {
    if fba_port_open 3050; then
        fba_say "Firebird server: already listening on 127.0.0.1:3050"
        return 0
    fi
    [[ -x /usr/sbin/fbguard ]] || fba_die "/usr/sbin/fbguard not found (apt-get install firebird3.0-server)"
    fba_say "Firebird server: starting /usr/sbin/fbguard as user firebird"
    fba_as_root mkdir -p /run/firebird3.0
    fba_as_root chown firebird:firebird /run/firebird3.0
    fba_as_root su -s /bin/sh firebird -c "/usr/sbin/fbguard -daemon -forever"
    local i
    for ((i = 0; i < 40; i++)); do
        if fba_port_open 3050; then
            fba_say "Firebird server: listening on 127.0.0.1:3050"
            return 0
        fi
        sleep 0.5
    done
    fba_say "Firebird server did not open port 3050 within 20 s; end of /var/log/firebird/firebird3.0.log:"
    tail -n 20 /var/log/firebird/firebird3.0.log >&2 2>/dev/null || true
    fba_die "Firebird server not running"
}
