#!/usr/bin/env bash
# Reproduces the protocol figures: the same real speech streamed at real-time pace over our
# /v1/stream, Deepgram's /v1/listen and OpenAI Realtime's /v1/realtime (each a fresh server, the
# second pass off so that nothing but the live pass runs), with partial and final latency p50/p95
# and WER of each. Pass more `bench` options after the script's name (e.g. --minutes 5).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p loadtests/results
out=loadtests/results/protocols-$(date +%Y%m%d-%H%M%S).jsonl
for transport in websocket deepgram openai-realtime; do
    .venv/bin/streamscribe bench --corpus librispeech --minutes 3 --no-second-pass \
        --transport "$transport" --json "$out" "$@"
done
.venv/bin/python - "$out" <<'PY'
import json, sys
print(f"\n{'protocol':16} {'WER finals':>10} {'partial p50/p95':>18} {'final p50/p95':>16}")
for line in open(sys.argv[1]):
    f = json.loads(line)
    partial, final = f["latency_partial"], f["latency_final"]
    print(f"{f['transport']:16} {100 * f['wer_finals']:9.2f}% {partial['p50_s']:8.2f} / {partial['p95_s']:.2f} s"
          f" {final['p50_s']:6.2f} / {final['p95_s']:.2f} s")
PY
echo "figures appended to $out"
