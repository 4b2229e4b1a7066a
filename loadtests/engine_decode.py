"""One live window's decode time on each engine: the figure behind loadtests/README.md, "Engines".

    .venv/bin/python loadtests/engine_decode.py

An 8 s window of LibriSpeech (with a prompt, as live windows have) decoded alone, greedy and with
beam 5, with one and two threads, on tiny.en: faster-whisper int8 and whisper.cpp on the same
weights converted to ggml; the mean of three decodes after one to warm up.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tests.conftest import librispeech_utterance

from streamscribe.asr.engine import DecodeOptions, Engine, LiveWindow
from streamscribe.asr.models import load_engine
from streamscribe.config import load_settings

_REPEATS = 3


def seconds_per_window(engine: Engine, window: LiveWindow) -> float:
    engine.decode_windows([window])
    began = time.perf_counter()
    for _ in range(_REPEATS):
        engine.decode_windows([window])
    return (time.perf_counter() - began) / _REPEATS


if __name__ == "__main__":
    audio, _ = librispeech_utterance("1272-141231-0002")
    audio = np.concatenate([audio, audio])[: 16000 * 8]
    cache = Path(tempfile.mkdtemp(prefix="engine-decode-"))
    print(f"{'per 8 s window':16} {'threads':>7} {'greedy':>8} {'beam 5':>8}")
    for engine_kind in ("faster-whisper", "whisper.cpp"):
        for threads in (1, 2):
            settings = load_settings(
                {"engine": engine_kind, "device": "cpu", "cpu_threads": threads, "decode_workers": 1,
                 "model_cache_dir": cache},
                environ={},
            )  # fmt: skip
            engine = load_engine(settings)
            greedy, beam = (
                seconds_per_window(
                    engine, LiveWindow(audio, DecodeOptions("en", "the words said before", beam))
                )
                for beam in (1, 5)
            )
            print(f"{engine_kind:16} {threads:>7} {greedy:>7.3f}s {beam:>7.3f}s", flush=True)
