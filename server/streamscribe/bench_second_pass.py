"""streamscribe bench-second-pass: v1 (live finals) vs v2 (second pass) on real speech.

The live pass runs in-process as fast as the decoder allows (the same core as the server); the
second pass then runs alone and is timed. Prints WER of both versions, DER (collar 0.25 s) where
speaker turns are known, the speaker count, and the second pass's time as a fraction of the audio.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec

from .audio import SAMPLE_RATE
from .bench import DEFAULT_TESTDATA, Corpus, append_json, corpus_from_args
from .evaluation import word_error_rate
from .transcript import Transcript


def diarization_error(transcript: Transcript, rttm: Path) -> float | None:
    """DER with pyannote.metrics (a test extra); None when it is not installed."""
    try:
        from pyannote.core import Annotation, Segment
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        return None
    reference, hypothesis = Annotation(), Annotation()
    for line in rttm.read_text().splitlines():
        fields = line.split()
        start = float(fields[3])
        reference[Segment(start, start + float(fields[4]))] = fields[7]
    for segment in transcript.segments:
        for caption in segment.lines:
            hypothesis[Segment(caption.start, max(caption.end, caption.start + 0.01))] = segment.speaker or "?"
    return float(DiarizationErrorRate(collar=0.25)(reference, hypothesis))


async def measure(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    from .app import load_model
    from .cli import LivePrinter, live_pass
    from .config import load_settings
    from .finalize.pipeline import SecondPass, first_version

    settings = load_settings({"model": args.model, "finalize": {"model": args.second_pass_model}})
    engine = load_model(settings)
    began = time.perf_counter()
    finals = await live_pass(engine, settings, [corpus.audio], "en", LivePrinter(False, io.StringIO()))
    live_s = time.perf_counter() - began
    first = first_version(
        corpus.name, finals, language="en", duration_s=corpus.duration_s, live_model=engine.name,
        settings=settings.finalize,
    )  # fmt: skip
    second_pass = SecondPass(lambda name: load_model(msgspec.structs.replace(settings, model=name)))
    # Warm up once (model load, the speaker encoder's first run) so the timing is the steady state.
    await asyncio.to_thread(second_pass.run, corpus.audio[: 5 * SAMPLE_RATE], first, settings.finalize, lambda _p: None)
    began = time.perf_counter()
    second = await asyncio.to_thread(second_pass.run, corpus.audio, first, settings.finalize, lambda _p: None)
    finalize_s = time.perf_counter() - began
    figures: dict[str, Any] = {
        "corpus": corpus.name,
        "audio_s": round(corpus.duration_s, 1),
        "live_model": engine.name,
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
        figures["wer_v2"] = round(word_error_rate(corpus.reference, " ".join(w.text for w in second.words)), 4)
    if corpus.rttm is not None:
        figures["der"] = diarization_error(second, corpus.rttm)
    return figures


def _cmd_bench_second_pass(args: argparse.Namespace) -> int:
    corpus = corpus_from_args(args)
    if corpus is None:
        return 2
    figures = asyncio.run(measure(corpus, args))
    print(json.dumps(figures, indent=2))
    append_json(args.json, figures)
    return 0


def add_bench_second_pass_parser(commands: Any) -> None:
    bench = commands.add_parser("bench-second-pass", help="v1 vs v2: WER, DER, second-pass time")
    bench.add_argument("--corpus", choices=["librispeech", "conversation", "jfk", "meeting"], default="librispeech")
    bench.add_argument("--minutes", type=float, default=5.0, help="length of the LibriSpeech stream")
    bench.add_argument("--model", default="tiny.en", help="the live model")
    bench.add_argument("--second-pass-model", dest="second_pass_model", default="base")
    bench.add_argument("--testdata", default=os.environ.get("STREAMSCRIBE_TESTDATA", str(DEFAULT_TESTDATA)))
    bench.add_argument("--json", help="append the figures as one JSON line to this file")
    bench.set_defaults(handler=_cmd_bench_second_pass)
