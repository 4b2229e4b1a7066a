#!/usr/bin/env bash
# The fuzz suite (tests/fuzz) at length: SCALE times the cases the test command runs (default 20,
# about 50,000 generated requests, streams and offers against one real server). Extra arguments
# go to pytest, e.g. `loadtests/fuzz.sh 50 -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-20}"
shift || true
STREAMSCRIBE_FUZZ_SCALE="$scale" exec .venv/bin/pytest tests/fuzz -q "$@"
