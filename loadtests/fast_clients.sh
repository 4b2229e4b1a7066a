#!/usr/bin/env bash
# Reproduces the fast-client figures: a client that sends a recording as fast as the socket takes
# it (speed 0), over the WebSocket with a measuring ping every second. Prints the live pass (the
# last final's arrival), how many x real time that is, the longest ping wait, and WER.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p loadtests/results
out=loadtests/results/fast-$(date +%Y%m%d-%H%M%S).jsonl
bench=(.venv/bin/streamscribe bench --speed 0 --json "$out")
"${bench[@]}" --corpus conversation
"${bench[@]}" --corpus librispeech --minutes 5
"${bench[@]}" --corpus librispeech --minutes 2 --sessions 4
echo "figures appended to $out"
