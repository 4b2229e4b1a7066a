"""streamscribe bench-replay: a recording uploaded to a real server and replayed through the
live core, at `max` speed and at `realtime` pace.

Prints, per speed, how fast the live pass ran (audio seconds per wall second, from the upload
until the last `progress` event), the time to the final version, and the WER of version 1 (the
live pass) and of the final version. The corpus is encoded as a 64 kbit/s mp3, as a voice memo
would be, so decoding the file is part of the figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from ..client import Client
from ..transcript import Transcript
from ..wire import Progress, TranscriptReady
from .corpus import Corpus, write_mp3
from .metrics import word_error_rate
from .options import add_benchmark
from .server import ServerProcess


async def replay_once(
    base_url: str, file: Path, speed: Literal["max", "realtime"], corpus: Corpus
) -> dict[str, Any]:
    marks: dict[str, float] = {}
    async with Client(base_url) as client:
        began = time.monotonic()
        accepted = await client.upload(file, speed=speed, language="en")
        async for event in client.follow(accepted.session_id):
            if isinstance(event, Progress) and event.processed_s >= (event.total_s or float("inf")):
                marks.setdefault("live_s", time.monotonic() - began)
            elif isinstance(event, TranscriptReady):
                marks["final_s"] = time.monotonic() - began
        live = await client.transcript(accepted.transcript_id, version=1)
        final = await client.transcript(accepted.transcript_id)
    return {
        "speed": speed,
        "live_pass_s": round(marks["live_s"], 2),
        "replay_x_realtime": round(corpus.duration_s / marks["live_s"], 1),
        "final_version_s": round(marks["final_s"], 2),
        "final_version": final.version,
        "wer_live": round(word_error_rate(corpus.reference, _text(live)), 4),
        "wer_final": round(word_error_rate(corpus.reference, _text(final)), 4),
    }


def _text(transcript: Transcript) -> str:
    return " ".join(word.text for word in transcript.words)


async def measure(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / f"{corpus.name}.mp3"
        write_mp3(corpus.audio, file)
        serve_args = ["--data-dir", str(Path(scratch) / "data")]
        figures: dict[str, Any] = {
            "corpus": corpus.name,
            "audio_s": round(corpus.duration_s, 1),
            "model": args.model,
            "engine": args.engine,
        }
        async with ServerProcess(args.model, *serve_args, engine=args.engine) as server:
            await replay_once(server.base_url, file, "max", corpus)  # warm-up: second-pass model load, caches
            figures["runs"] = [
                await replay_once(server.base_url, file, speed, corpus) for speed in args.speeds
            ]
    return figures


def report(figures: dict[str, Any]) -> None:
    print(
        f"corpus {figures['corpus']} ({figures['audio_s']} s of audio), "
        f"live model {figures['model']} ({figures['engine']})"
    )
    print(
        f"{'speed':<9} {'live pass':>10} {'x real time':>12} {'final after':>12} {'WER v1':>8} {'WER final':>10}"
    )
    for run in figures["runs"]:
        print(
            f"{run['speed']:<9} {run['live_pass_s']:>9.1f}s {run['replay_x_realtime']:>11.1f}x "
            f"{run['final_version_s']:>11.1f}s {run['wer_live']:>8.2%} {run['wer_final']:>10.2%}",
            flush=True,
        )


def add_bench_replay_parser(commands: Any) -> None:
    bench = add_benchmark(
        commands, "bench-replay", "upload a recording to a server; replay speed and WER", measure, report,
        ("librispeech", "conversation", "jfk"),
    )  # fmt: skip
    bench.add_argument(
        "--speeds", nargs="+", choices=["max", "realtime"], default=["max", "realtime"],
        help="replay paces to measure, in order (default: max realtime)",
    )  # fmt: skip
