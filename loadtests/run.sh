#!/usr/bin/env bash
# Reproduces the streaming-core figures: a 5-minute and a 10-minute LibriSpeech stream, the
# 3-minute two-speaker conversation, and 4 concurrent streams. Appends JSON lines to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p loadtests/results
out=loadtests/results/stream-$(date +%Y%m%d-%H%M%S).jsonl
bench=(.venv/bin/streamscribe bench --json "$out")
"${bench[@]}" --corpus librispeech --minutes 5
"${bench[@]}" --corpus librispeech --minutes 10
"${bench[@]}" --corpus conversation
"${bench[@]}" --corpus librispeech --minutes 2 --sessions 4
echo "figures appended to $out"
