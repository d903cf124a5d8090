#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, store conformance, SDK integration tests with real
# agents) and the Python end-to-end suite (boto3 + AWS CLI against the real binary), on each store:
# embedded SQLite, then PostgreSQL (FLEETRUN_TEST_STORE=postgres: the store conformance suite, the
# server's SDK tests incl. several replicas on one database, and the end-to-end suite again).
#
# FLEETRUN_TEST_STORES   stores to run on (default "sqlite postgres")
# FLEETRUN_TEST_PG_URL   PostgreSQL admin URL each test creates (and drops) its own database
#                        through (default postgres://postgres@127.0.0.1:5432/postgres)
#
# Installs what it needs (a Python virtualenv with pinned boto3/awscli/pytest) and starts what it
# needs (fleetrun servers and agents, on ephemeral loopback ports). Nothing else must be running.
set -euo pipefail
cd "$(dirname "$0")/.."

STORES="${FLEETRUN_TEST_STORES:-sqlite postgres}"
export FLEETRUN_TEST_PG_URL="${FLEETRUN_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
unset FLEETRUN_TEST_STORE FLEETRUN_BIN

for store in $STORES; do
    case "$store" in sqlite|postgres) ;; *) echo "unknown store '$store'" >&2; exit 2 ;; esac
done
if [[ " $STORES " == *" postgres "* ]]; then
    # The machine's PostgreSQL service may be stopped (a reboot): start its cluster when we can.
    if ! psql "$FLEETRUN_TEST_PG_URL" -qAtc "SELECT 1" >/dev/null 2>&1 \
        && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        for dir in /etc/postgresql/*/; do
            version="$(basename "$dir")"
            echo "== starting PostgreSQL $version (pg_ctlcluster)" >&2
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        done
    fi
    if ! psql "$FLEETRUN_TEST_PG_URL" -qAtc "SELECT 1" >/dev/null 2>&1; then
        echo "PostgreSQL is not reachable at $FLEETRUN_TEST_PG_URL (needs psql and a server that" >&2
        echo "lets that user create databases); FLEETRUN_TEST_STORES=sqlite runs the SQLite pass only" >&2
        exit 2
    fi
fi

echo "== building the fleetrun and fleetrun-agent binaries for the end-to-end suite" >&2
cargo build -p fleetrun -p fleetrun-agent

for store in $STORES; do
    if [ "$store" = sqlite ]; then
        echo "== cargo test --workspace (SQLite)" >&2
        cargo test --workspace
    else
        echo "== store conformance and server SDK tests on PostgreSQL" >&2
        FLEETRUN_TEST_STORE=postgres cargo test -p fleetrun-store -p fleetrun-server
    fi
    echo "== Python end-to-end suite (boto3, aws CLI) on $store" >&2
    FLEETRUN_TEST_STORE="$store" ./scripts/e2e.sh
done
