#!/usr/bin/env bash
# Runs every tachyon test: Rust unit/property tests, then the end-to-end tests that profile
# real Python processes and load the outputs in their real consumers.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --workspace
cargo test --workspace --release

# Real consumers used by the end-to-end tests.
if [ ! -x target/tools/bin/inferno-flamegraph ] && ! command -v inferno-flamegraph >/dev/null; then
    cargo install --quiet --locked inferno --version 0.12.8 --root target/tools
fi
if [ ! -x .venv/bin/pytest ]; then
    python3 -m venv .venv
fi
# snakeviz: its own table code reads the pstats output; maturin builds the wheel.
[ -x .venv/bin/maturin ] && .venv/bin/python -c "import pytest, zstandard, jsonschema, snakeviz" 2>/dev/null \
    || .venv/bin/pip install --quiet pytest zstandard jsonschema snakeviz maturin
# tmux (Debian's package) drives the --live tests in a real terminal.
if ! command -v tmux >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null) \
        || echo "tmux could not be installed: the --live tests will be skipped"
fi
# Headless Chromium (Debian's package) and playwright-core to drive it, for the HTML tests.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "chromium could not be installed: browser tests will be skipped"
fi
if { [ ! -d tests/browser/node_modules/speedscope ] || [ ! -d tests/browser/node_modules/pprof-format ]; } && command -v npm >/dev/null; then
    (cd tests/browser && npm install --no-audit --no-fund --silent) || echo "playwright-core missing: browser tests will be skipped"
fi
# CPython 3.14/3.15 from Debian sid for the debug-offsets tests (skipped if unavailable).
bash tests/setup_debian_pythons.sh || echo "Debian sid Pythons unavailable: 3.14/3.15 tests will be skipped"
.venv/bin/pytest -ra tests "$@"
