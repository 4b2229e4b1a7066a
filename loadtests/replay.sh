#!/usr/bin/env bash
# Reproduces the upload figures: a recording uploaded to a real server and replayed through the live
# core at max speed and at real-time pace; replay speed (x real time) and WER of version 1 (live pass)
# and of the final version, on a 5-minute LibriSpeech stream and the two-speaker conversation.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p loadtests/results
out=loadtests/results/replay-$(date +%Y%m%d-%H%M%S).jsonl
bench=(.venv/bin/streamscribe bench-replay --json "$out")
"${bench[@]}" --corpus librispeech --minutes 5
"${bench[@]}" --corpus conversation
echo "figures appended to $out"
