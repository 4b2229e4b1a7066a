"""streamscribe bench-second-pass: v1 (live finals) vs v2 (second pass) on real speech.

The live pass runs in-process as fast as the decoder allows (the same core as the server); the
second pass then runs alone and is timed. Prints WER of both versions, DER (collar 0.25 s) where
speaker turns are known, the speaker count, and the second pass's time as a fraction of the audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from ..asr.models import load_engine
from ..audio import SAMPLE_RATE
from ..config import load_settings
from ..finalize.pipeline import SecondPass
from ..local import live_pass, live_version, second_pass
from .corpus import Corpus
from .metrics import diarization_error, word_error_rate
from .options import add_benchmark


async def measure(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(
        {"engine": args.engine, "model": args.model, "finalize": {"model": args.second_pass_model}}
    )
    engine = load_engine(settings)
    began = time.perf_counter()
    finals = await live_pass(engine, settings, [corpus.audio], "en", lambda _event: None)
    live_s = time.perf_counter() - began
    first = live_version(corpus.name, finals, corpus.audio, "en", engine.name, settings)
    passes = SecondPass.for_server(settings)
    # Warm up once (model load, the speaker encoder's first run) so the timing is the steady state.
    warm_up = corpus.audio[: 5 * SAMPLE_RATE]
    await asyncio.to_thread(second_pass, settings, warm_up, first, lambda _p: None, passes)
    began = time.perf_counter()
    second = await asyncio.to_thread(second_pass, settings, corpus.audio, first, lambda _p: None, passes)
    finalize_s = time.perf_counter() - began
    figures: dict[str, Any] = {
        "corpus": corpus.name,
        "audio_s": round(corpus.duration_s, 1),
        "live_model": engine.name,
        "engine": settings.engine,
        "second_pass_model": args.second_pass_model,
        "live_pass_s": round(live_s, 1),
        "finalize_s": round(finalize_s, 1),
        "finalize_x_audio": round(finalize_s / corpus.duration_s, 3),
        "timings_s": second.info.timings_s,
        "speakers_found": len(second.speakers),
        "sources": {s: sum(w.source == s for w in second.words) for s in ("both", "second_pass", "live")},
    }
    if corpus.reference:
        figures["wer_v1"] = round(word_error_rate(corpus.reference, " ".join(w.text for w in first.words)), 4)
        figures["wer_v2"] = round(
            word_error_rate(corpus.reference, " ".join(w.text for w in second.words)), 4
        )
    if corpus.rttm is not None:
        figures["der"] = diarization_error(second, corpus.rttm)
    return figures


def report(figures: dict[str, Any]) -> None:
    print(json.dumps(figures, indent=2))


def add_bench_second_pass_parser(commands: Any) -> None:
    bench = add_benchmark(
        commands, "bench-second-pass", "v1 vs v2: WER, DER, second-pass time", measure, report,
        ("librispeech", "conversation", "jfk", "meeting"),
    )  # fmt: skip
    bench.add_argument(
        "--second-pass-model",
        dest="second_pass_model",
        default="base",
        help="the second pass's model (default: base)",
    )
