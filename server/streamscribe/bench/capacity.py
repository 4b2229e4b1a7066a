"""streamscribe bench-capacity: the most live streams a server holds to its latency targets.

Runs `bench` (real speech, real-time pace, staggered starts, one server per run) for N = 1, then
doubles N until a run misses a target and bisects between the last N that held and the first that
did not. A run holds when every stream is admitted and error-free, the worst stream's final p95
is within --final-p95-s, the partial p50 within --partial-p50-s, and the mean WER of the finals
within --wer-margin of the single stream's. Admission is lifted for the search (a refused stream
would hide the load); the server's other options come from --serve-args.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
from typing import Any

from .corpus import Corpus
from .live import measure, run_streams
from .metrics import offline_decode
from .options import add_benchmark, add_live_load_options

_NO_ADMISSION = "--max-decode-wait-s 1e9 --max-sessions 100000"


async def search(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    offline = await asyncio.to_thread(offline_decode, corpus, args.model)
    runs: dict[int, dict[str, Any]] = {}

    async def run(sessions: int) -> bool:
        run_args = copy.copy(args)
        run_args.sessions, run_args.serve_args = sessions, f"{args.serve_args} {_NO_ADMISSION}"
        figures = measure(corpus, offline, await run_streams(corpus, run_args), run_args)
        figures["holds"] = sessions == 1 or _holds(figures, runs[1], args)
        runs[sessions] = figures
        print(_line(figures), flush=True)
        return bool(figures["holds"])

    await run(1)
    held, missed = 1, None
    while missed is None and held * 2 <= args.max_streams:
        if await run(held * 2):
            held *= 2
        else:
            missed = held * 2
    while missed is not None and missed - held > max(1, held // 8):
        middle = (held + missed) // 2
        if await run(middle):
            held = middle
        else:
            missed = middle
    return {
        "corpus": corpus.name,
        "audio_s": round(corpus.duration_s, 1),
        "model": args.model,
        "engine": args.engine,
        "serve_args": args.serve_args,
        "stagger_s": args.stagger_s,
        "targets": {
            "final_p95_s": args.final_p95_s,
            "partial_p50_s": args.partial_p50_s,
            "wer_margin": args.wer_margin,
        },
        "capacity": held,
        "first_missed": missed,
        "runs": {str(n): runs[n] for n in sorted(runs)},
    }


def _holds(figures: dict[str, Any], single: dict[str, Any], args: argparse.Namespace) -> bool:
    return bool(
        figures["streams_with_errors"] == 0
        and figures["completed"] == figures["sessions"]
        and figures["final_p95_worst_stream_s"] <= args.final_p95_s
        and figures["latency_partial"]["p50_s"] <= args.partial_p50_s
        and figures["wer_finals"] <= single["wer_finals"] + args.wer_margin
    )


def _line(figures: dict[str, Any]) -> str:
    return (
        f"{figures['sessions']:>4} streams: {'holds' if figures['holds'] else 'misses':6}  "
        f"final p95 worst {figures['final_p95_worst_stream_s']:6.2f} s  "
        f"partial p50 {figures['latency_partial']['p50_s']:5.2f} s  "
        f"WER {100 * figures['wer_finals']:5.2f} %  errors {figures['streams_with_errors']}  "
        f"batch {figures['decodes'] / max(figures['batches'], 1):.1f}"
    )


def report(figures: dict[str, Any]) -> None:
    print(
        f"\n== {figures['corpus']}: {figures['audio_s']} s of audio per stream, model {figures['model']} "
        f"({figures['engine']}), "
        f"starts {figures['stagger_s']:g} s apart, server options {figures['serve_args'] or 'default'!r}"
    )
    for run in figures["runs"].values():
        print(_line(run))
    print(
        f"capacity: {figures['capacity']} streams hold every target"
        + (f" ({figures['first_missed']} do not)" if figures["first_missed"] else "")
    )


def add_bench_capacity_parser(commands: Any) -> None:
    bench = add_benchmark(
        commands, "bench-capacity", "search the most live streams that hold the latency and accuracy targets",
        search, report, ("librispeech", "conversation"),
    )  # fmt: skip
    bench.set_defaults(speed=1.0, uploads=0, transport="websocket", no_second_pass=True)
    add_live_load_options(bench, stagger_s=5.0)
    bench.add_argument("--max-streams", dest="max_streams", type=int, default=64,
                       help="the most streams tried (default: 64)")  # fmt: skip
    bench.add_argument("--final-p95-s", dest="final_p95_s", type=float, default=3.5,
                       help="target for the worst stream's final p95 (default: 3.5)")  # fmt: skip
    bench.add_argument("--partial-p50-s", dest="partial_p50_s", type=float, default=1.0,
                       help="target for the partial p50 (default: 1.0)")  # fmt: skip
    bench.add_argument("--wer-margin", dest="wer_margin", type=float, default=0.02,
                       help="how much the mean WER may exceed one stream's (default: 0.02)")  # fmt: skip
