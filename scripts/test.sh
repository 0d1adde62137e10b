#!/usr/bin/env bash
# The one test command: installs what the tests need when missing (PostgreSQL 15, promtool,
# Synapse and the Python tools, see install-test-deps.sh), then checks formatting, lints with
# clippy -D warnings, and runs every test: unit tables, the CLI against real PostgreSQL,
# Synapse and an OIDC provider, and the rule conformance tests against promtool.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --features mxwarden/failpoints --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets --features mxwarden/failpoints --quiet 2>&1
