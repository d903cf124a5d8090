#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, store conformance, SDK integration tests with real
# agents) and the Python end-to-end suite (boto3 + AWS CLI against the real binary).
# Installs what it needs (a Python virtualenv with pinned boto3/awscli/pytest) and starts what it
# needs (fleetrun servers and agents, on ephemeral loopback ports). Nothing else must be running.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace" >&2
cargo test --workspace

echo "== building the fleetrun binary for the end-to-end suite" >&2
cargo build -p fleetrun
unset FLEETRUN_BIN

echo "== Python end-to-end suite (boto3, aws CLI)" >&2
./scripts/e2e.sh
