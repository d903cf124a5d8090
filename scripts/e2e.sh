#!/usr/bin/env bash
# Runs the Python end-to-end suite (tests/e2e) against the fleetrun binary.
#
#   scripts/e2e.sh [pytest args...]
#
# FLEETRUN_VENV  virtualenv to create/reuse  (default: $HOME/.cache/fleetrun-venv)
# FLEETRUN_BIN   fleetrun binary to test     (default: ${CARGO_TARGET_DIR:-target}/debug/fleetrun;
#                                             built with `cargo build -p fleetrun` if missing)
# FLEETRUN_AGENT_BIN  fleetrun-agent binary for test_install.py (default: beside fleetrun, built
#                     with it if missing)
# Exit code is pytest's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${FLEETRUN_VENV:-$HOME/.cache/fleetrun-venv}"
REQS="tests/e2e/requirements.txt"

if [ ! -x "$VENV/bin/python" ]; then
    echo "e2e: creating virtualenv $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        # Some distributions ship python3 without ensurepip; fall back to virtualenv from PyPI.
        rm -rf "$VENV"
        python3 -m pip install -q --user virtualenv
        python3 -m virtualenv -q "$VENV"
    fi
fi

# Reinstall only when the pinned requirements changed.
STAMP="$VENV/.fleetrun-e2e-requirements"
if ! cmp -s "$REQS" "$STAMP" 2>/dev/null; then
    echo "e2e: installing $REQS" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
    cp "$REQS" "$STAMP"
fi

if [ -z "${FLEETRUN_BIN:-}" ]; then
    TARGET="${CARGO_TARGET_DIR:-target}"
    case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
    FLEETRUN_BIN="$TARGET/debug/fleetrun"
    if [ ! -x "$FLEETRUN_BIN" ]; then
        echo "e2e: $FLEETRUN_BIN missing, building it (cargo build -p fleetrun)" >&2
        CARGO_TARGET_DIR="$TARGET" cargo build -p fleetrun
    fi
fi
case "$FLEETRUN_BIN" in /*) ;; *) FLEETRUN_BIN="$ROOT/$FLEETRUN_BIN" ;; esac
if [ ! -x "$FLEETRUN_BIN" ]; then
    echo "e2e: fleetrun binary not found at $FLEETRUN_BIN" >&2
    exit 2
fi
export FLEETRUN_BIN

# The node-only agent that tests/e2e/test_install.py installs. Built together with fleetrun: the
# same dependency features, so no second build of the dependencies.
if [ -z "${FLEETRUN_AGENT_BIN:-}" ]; then
    FLEETRUN_AGENT_BIN="$(dirname "$FLEETRUN_BIN")/fleetrun-agent"
    if [ ! -x "$FLEETRUN_AGENT_BIN" ]; then
        TARGET="${CARGO_TARGET_DIR:-target}"
        case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
        FLEETRUN_AGENT_BIN="$TARGET/debug/fleetrun-agent"
        echo "e2e: $FLEETRUN_AGENT_BIN missing, building it" >&2
        CARGO_TARGET_DIR="$TARGET" cargo build -p fleetrun -p fleetrun-agent --bin fleetrun-agent
    fi
fi
export FLEETRUN_AGENT_BIN

# cargo-deb for the .deb test (test_install.py), installed once into ~/.cargo/bin (about 3 minutes
# of building on 2 cores); pinned: the test packs a dev build, which cargo-deb means to refuse later.
CARGO_DEB_VERSION="3.8.0"
if [ -z "${FLEETRUN_CARGO_DEB:-}" ]; then
    FLEETRUN_CARGO_DEB="$(command -v cargo-deb || echo "$HOME/.cargo/bin/cargo-deb")"
    if [ ! -x "$FLEETRUN_CARGO_DEB" ]; then
        echo "e2e: installing cargo-deb $CARGO_DEB_VERSION (cargo install)" >&2
        CARGO_TARGET_DIR="$HOME/.cache/cargo-deb-target" \
            cargo install --quiet --locked "cargo-deb@$CARGO_DEB_VERSION"
        FLEETRUN_CARGO_DEB="$HOME/.cargo/bin/cargo-deb"
    fi
fi
export FLEETRUN_CARGO_DEB

# systemd-analyze and systemctl for the unit's tests (test_install.py): Debian's systemd package,
# whose installation starts nothing where systemd is not PID 1.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "e2e: installing systemd (systemd-analyze, systemctl)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 || {
            apt-get update -qq >/dev/null
            apt-get install -y -qq --no-install-recommends systemd >/dev/null
        }
    else
        echo "e2e: systemd-analyze is missing (apt-get install systemd): test_install.py will fail" >&2
    fi
fi

# A real S3-protocol server for the S3 output tests: s3s-fs from crates.io (0.14.1 is the last
# release building with this toolchain), installed once into ~/.cargo/bin.
S3S_VERSION="0.14.1"
if [ -z "${FLEETRUN_S3S_FS:-}" ]; then
    FLEETRUN_S3S_FS="$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")"
    if [ ! -x "$FLEETRUN_S3S_FS" ]; then
        echo "e2e: installing s3s-fs $S3S_VERSION (cargo install)" >&2
        CARGO_TARGET_DIR="$HOME/.cache/s3s-target" \
            cargo install --quiet --locked "s3s-fs@$S3S_VERSION" --features binary
        FLEETRUN_S3S_FS="$HOME/.cargo/bin/s3s-fs"
    fi
fi
export FLEETRUN_S3S_FS

# A real browser for the console tests (test_console.py): Debian's chromium and its chromedriver,
# installed once; the package lists are refreshed only when the packages are not found.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "e2e: installing chromium and chromium-driver (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
fi

# The venv's `aws` (awscli v1) must win over any system-wide AWS CLI.
export PATH="$VENV/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
# Run the whole suite unless a test path was given (e.g. tests/e2e/test_cli.py::test_x).
PATHS=(tests/e2e)
for arg in "$@"; do
    case "$arg" in tests/*) PATHS=() ;; esac
done
exec "$VENV/bin/python" -m pytest -q ${PATHS[@]+"${PATHS[@]}"} "$@"
