#!/usr/bin/env bash
# Reproduces the engine figures: faster-whisper and whisper.cpp side by side on this machine,
# tiny.en, each a fresh server with the second pass off. First one live stream of real speech at
# real-time pace (partial and final latency, WER, decoder real-time factor), then bench-capacity's
# search for the most streams that hold the latency and accuracy targets. Both engines are timed
# against the same clock: the word end times of faster-whisper's offline decode.
# `--quick` runs only the one-stream part.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p loadtests/results
stamp=$(date +%Y%m%d-%H%M%S)
one=loadtests/results/engines-one-$stamp.jsonl
capacity=loadtests/results/engines-capacity-$stamp.jsonl
for engine in faster-whisper whisper.cpp; do
    .venv/bin/streamscribe bench --corpus librispeech --minutes 5 --no-second-pass \
        --engine "$engine" --json "$one"
done
if [[ "${1:-}" != "--quick" ]]; then
    for engine in faster-whisper whisper.cpp; do
        .venv/bin/streamscribe bench-capacity --corpus librispeech --minutes 2 --stagger-s 5 \
            --max-streams 16 --engine "$engine" --json "$capacity"
    done
fi
.venv/bin/python - "$one" "$capacity" <<'PY'
import json, os, sys
print(f"\n{'one stream':15} {'WER finals':>10} {'partial p50/p95':>18} {'final p50/p95':>16} {'RTF':>6}")
for line in open(sys.argv[1]):
    f = json.loads(line)
    partial, final = f["latency_partial"], f["latency_final"]
    print(f"{f['engine']:15} {100 * f['wer_finals']:9.2f}% {partial['p50_s']:8.2f} / {partial['p95_s']:.2f} s"
          f" {final['p50_s']:6.2f} / {final['p95_s']:.2f} s {f['rtf_decoder_busy']:6.3f}")
if os.path.exists(sys.argv[2]):
    for line in open(sys.argv[2]):
        f = json.loads(line)
        print(f"capacity {f['engine']:15} largest N holding the targets: {f.get('capacity')}")
PY
if [[ -f "$capacity" ]]; then
    echo "figures appended to $one $capacity"
else
    echo "figures appended to $one"
fi
