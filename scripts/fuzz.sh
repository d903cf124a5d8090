#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time and fails on any crash, panic, timeout or
# out-of-memory. `--smoke` (CI): 20 s per target. `SECONDS_PER_TARGET` (a number): that long each.
# Optional target names after it run only those: `scripts/fuzz.sh 600 ssm_api sigv4`.
#
# cargo-fuzz is installed into $HOME/.cargo/bin if missing. The toolchain is stable: cargo-fuzz's
# instrumentation flags need RUSTC_BOOTSTRAP=1, and the sanitizer is off (the code is
# `unsafe_code = "forbid"`; what we look for is panics, hangs and wrong answers, which libFuzzer
# catches without ASan). Builds go to $HOME/.cache/fleetrun-fuzz-target; the corpus a run grows
# goes to $HOME/.cache/fleetrun-fuzz-corpus/<target> (the checked-in seeds in fuzz/corpus stay as
# they are); crash inputs go to fuzz/artifacts/<target>/ (cargo-fuzz's default).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=20
case "${1:-}" in
  --smoke) shift ;;
  "" ) ;;
  *[!0-9]*) echo "usage: $0 [--smoke|SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
  *) secs=$1; shift ;;
esac

export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_INCREMENTAL=0
export CARGO_TERM_COLOR=never
target_dir="${FLEETRUN_FUZZ_TARGET_DIR:-$HOME/.cache/fleetrun-fuzz-target}"
corpus_root="${FLEETRUN_FUZZ_CORPUS_DIR:-$HOME/.cache/fleetrun-fuzz-corpus}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# The same flags for build and run, so `run` finds the build fresh.
fuzz_flags=(--sanitizer none --codegen-units 16 --target-dir "$target_dir")

start=$(date +%s)
echo "== building fuzz targets"
(cd fuzz && cargo fuzz build "${fuzz_flags[@]}")
echo "   built in $(( $(date +%s) - start )) s"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# Per-target input size cap: documents may be 64 KB; everything else is a request line or a body.
max_len() {
  case "$1" in
    document_content) echo 65536 ;;
    ssm_api|ssm_request|sigv4|agent_messages) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$corpus_root/$t" "fuzz/artifacts/$t"
  log="$corpus_root/$t.log"
  echo "== fuzzing $t for ${secs} s"
  set +e
  # New inputs go to the first corpus dir (the cache); the checked-in seeds are read only.
  (cd fuzz && cargo fuzz run "${fuzz_flags[@]}" "$t" "$corpus_root/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
      -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  done_line=$(grep -aE '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  execs=$(grep -aE '^stat::number_of_executed_units:' "$log" | awk '{print $2}' | tail -1 || true)
  echo "   ${done_line:-no DONE line}"
  echo "   stat::number_of_executed_units: ${execs:-?}"
  summary+=("$t: ${execs:-?} executions")
  if [ $rc -ne 0 ]; then
    echo "   FAILED (exit $rc); the end of $log:"
    tail -40 "$log" | sed 's/^/   | /'
    failed+=("$t")
  fi
done

echo "== fuzz summary ($(( $(date +%s) - start )) s)"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "   crashing targets: ${failed[*]} (inputs under fuzz/artifacts/)"
  exit 1
fi
