#!/usr/bin/env bash
# Reproduces the second-pass figures: v1 (live finals) vs v2 (second pass) WER on 5- and 10-minute
# LibriSpeech streams, WER and DER on the two-speaker conversation, DER on pyannote's meeting
# sample, and the second pass's time as a fraction of the audio. Appends JSON lines to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p loadtests/results
out=loadtests/results/second-pass-$(date +%Y%m%d-%H%M%S).jsonl
bench=(.venv/bin/streamscribe bench-second-pass --json "$out")
"${bench[@]}" --corpus conversation
"${bench[@]}" --corpus meeting
"${bench[@]}" --corpus librispeech --minutes 5
"${bench[@]}" --corpus librispeech --minutes 10
echo "figures appended to $out"
