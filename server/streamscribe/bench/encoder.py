"""streamscribe bench-encoder: Whisper's encoder given less than 30 s of input.

Live windows hold a few seconds of speech, yet faster-whisper encodes 30 s (3000 mel frames)
whatever a window holds; CTranslate2 also encodes fewer frames. The corpus is cut into windows of
each length asked for, and each window is decoded with its features padded (with silence) to
each encoder input length asked for (0: the window alone; 30: what faster-whisper does), with the
same greedy prompt (no timestamps, no prompt text): WER of the joined words against the human
reference, and the mean encode and generate time per window. A cut through a word costs every
input length the same, so the differences are the encoder input's.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer

from ..asr.models import load_faster_whisper
from ..audio import SAMPLE_RATE
from ..config import load_settings
from .corpus import Corpus
from .metrics import word_error_rate
from .options import add_benchmark

_FULL_FRAMES = 3000
_FRAMES_PER_S = 100
_MAX_NEW_TOKENS = 200


async def measure(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    return await asyncio.to_thread(_measure, corpus, args)


def _measure(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings({"device": "cpu", "compute_type": "int8", "cpu_threads": args.cpu_threads})
    whisper: Any = load_faster_whisper(settings, args.model).whisper
    tokenizer = Tokenizer(
        whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe", language="en"
    )
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    figures: dict[str, Any] = {
        "corpus": corpus.name,
        "audio_s": round(corpus.duration_s, 1),
        "model": args.model,
    }
    for window_s in args.windows:
        window = int(window_s * SAMPLE_RATE)
        pieces = [corpus.audio[offset : offset + window] for offset in range(0, corpus.audio.size, window)]
        for input_s in args.encoder_inputs:
            texts: list[str] = []
            encode_s = generate_s = 0.0
            for piece in pieces:
                features = whisper.feature_extractor(piece)
                own = features.shape[-1] + features.shape[-1] % 2  # the encoder halves the frames
                frames = min(_FULL_FRAMES, max(own, int(input_s * _FRAMES_PER_S)))
                batch = ctranslate2.StorageView.from_array(
                    np.ascontiguousarray(pad_or_trim(features, frames)[None], dtype=np.float32)
                )
                began = time.perf_counter()
                encoded = whisper.model.encode(batch, to_cpu=False)
                encode_s += time.perf_counter() - began
                began = time.perf_counter()
                result = whisper.model.generate(encoded, [prompt], beam_size=1, max_length=_MAX_NEW_TOKENS)
                generate_s += time.perf_counter() - began
                texts.append(tokenizer.decode([t for t in result[0].sequences_ids[0] if t < tokenizer.eot]))
            figures[f"{window_s:g}_{input_s:g}"] = {
                "window_s": window_s,
                "encoder_input_s": input_s,
                "windows": len(pieces),
                "wer": round(word_error_rate(corpus.reference, " ".join(texts)), 4),
                "encode_ms": round(1000 * encode_s / len(pieces), 1),
                "generate_ms": round(1000 * generate_s / len(pieces), 1),
            }
    return figures


def report(figures: dict[str, Any]) -> None:
    print(f"\n== {figures['corpus']}: {figures['audio_s']} s of audio, model {figures['model']}")
    print(f"{'window':>7} {'encoder input':>14} {'WER':>8} {'encode':>9} {'generate':>9}")
    for row in (value for value in figures.values() if isinstance(value, dict)):
        given = "the window" if row["encoder_input_s"] == 0 else f">= {row['encoder_input_s']:g} s"
        print(
            f"{row['window_s']:>6g}s {given:>14} {100 * row['wer']:7.2f}% "
            f"{row['encode_ms']:7.1f}ms {row['generate_ms']:7.1f}ms"
        )


def add_bench_encoder_parser(commands: Any) -> None:
    bench = add_benchmark(
        commands, "bench-encoder", "Whisper's encoder on window-sized input against 30 s padding: WER, time",
        measure, report, ("librispeech", "conversation"), engine_option=False,
    )  # fmt: skip
    bench.add_argument(
        "--windows", type=float, nargs="+", default=[3.0, 6.0, 10.0, 20.0],
        help="window lengths in seconds, each decoded both ways (default: 3 6 10 20)",
    )  # fmt: skip
    bench.add_argument(
        "--encoder-inputs", dest="encoder_inputs", type=float, nargs="+", default=[30.0, 20.0, 15.0, 10.0, 0.0],
        help="least encoder input in seconds (a window is padded to it; 30 = faster-whisper's, 0 = the "
        "window alone) (default: 30 20 15 10 0)",
    )  # fmt: skip
    bench.add_argument(
        "--cpu-threads", dest="cpu_threads", type=int, default=0,
        help="threads for the model; 0 = all cores (default: 0)",
    )  # fmt: skip
