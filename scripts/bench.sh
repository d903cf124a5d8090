#!/usr/bin/env bash
# Benchmarks fleetrun against moto's server in one run; see BENCHMARKS.md.
#
#   ./scripts/bench.sh              full run: N = 10k and 100k, dispatch, 10,000-node fan-out, agent RSS,
#                                   moto at 10k (installed from PyPI into ~/.cache/fleetrun-bench-venv)
#   ./scripts/bench.sh --million    the same plus N = 1,000,000 (adds a few minutes of seeding)
#   ./scripts/bench.sh --smoke      CI: N = 1,000, K = 100, few iterations, moto only if already
#                                   installed; proves the harness works, judges no target
#
# Every phase runs on SQLite and again on PostgreSQL (each phase in a database of its own, created
# and dropped through FLEETRUN_BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres);
# when that server cannot be reached, the PostgreSQL column is left out and the script says so.
# FLEETRUN_BENCH_POSTGRES=0 leaves it out on purpose.
#
# Any other flags go to the fleetrun-bench binary (`--help` lists them). The report is printed and
# written to bench-results.md (override with --out FILE). Exit status is non-zero only when a
# measurement fails, never because a number is slow.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
for a in "$@"; do [ "$a" = "--smoke" ] && SMOKE=1; done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fleetrun-target}"
VENV="${FLEETRUN_BENCH_VENV:-$HOME/.cache/fleetrun-bench-venv}"

# The fan-out holds one connection per simulated node on each side: raise the soft limit on open
# files to the hard limit (the server child process inherits it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "$SMOKE" = 1 ]; then
  # Smoke mode judges no number: reuse the debug build the tests already made instead of compiling
  # the AWS SDK a second time in release mode.
  echo "== building (debug, smoke mode)" >&2
  cargo build --quiet -p fleetrun -p fleetrun-bench -p fleetrun-agent --bin fleetrun --bin fleetrun-bench --bin fleetrun-agent
  BENCH_BIN="$CARGO_TARGET_DIR/debug/fleetrun-bench"
  AGENT_BIN="$CARGO_TARGET_DIR/debug/fleetrun-agent"
else
  echo "== building (release)" >&2
  cargo build --release --quiet -p fleetrun -p fleetrun-bench
  # The node-only agent binary, size-optimised (see [profile.agent] in Cargo.toml).
  cargo build --profile agent --quiet -p fleetrun-agent --bin fleetrun-agent
  BENCH_BIN="$CARGO_TARGET_DIR/release/fleetrun-bench"
  AGENT_BIN="$CARGO_TARGET_DIR/agent/fleetrun-agent"
fi

MOTO=()
if [ -x "$VENV/bin/moto_server" ]; then
  MOTO=(--moto-server "$VENV/bin/moto_server")
elif [ "$SMOKE" = 0 ]; then
  echo "== installing moto[server] into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'moto[server]'
  MOTO=(--moto-server "$VENV/bin/moto_server")
else
  echo "== moto not installed: skipped in smoke mode" >&2
fi

PG=()
PG_URL="${FLEETRUN_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if [ "${FLEETRUN_BENCH_POSTGRES:-1}" != 1 ]; then
  echo "== PostgreSQL left out (FLEETRUN_BENCH_POSTGRES=${FLEETRUN_BENCH_POSTGRES})" >&2
elif psql "$PG_URL" -qAtc "SELECT 1" >/dev/null 2>&1; then
  PG=(--postgres "$PG_URL")
else
  echo "== PostgreSQL not reachable at $PG_URL: measuring SQLite only" >&2
fi

exec "$BENCH_BIN" --agent-bin "$AGENT_BIN" "${MOTO[@]}" "${PG[@]}" "$@"
