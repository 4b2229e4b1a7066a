"""Live windows decoded in batches (asr/windows.py) by the real models on real speech."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamscribe.asr.engine import DecodeOptions, Engine, LiveWindow
from streamscribe.asr.models import load_engine
from streamscribe.asr.windows import encoder_input_frames
from streamscribe.audio import SAMPLE_RATE
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings

pytestmark = pytest.mark.model

LONG_PROMPT = (
    "And so my fellow Americans, this is the text that came before the window, long enough to fill a bucket."
)


def test_the_encoder_input_follows_the_window() -> None:
    assert encoder_input_frames(300) == 1500, "at least 15 s"
    assert encoder_input_frames(1101) == 1602, "the window and 5 s of silence, an even count"
    assert encoder_input_frames(2900) == 3000, "never past Whisper's 30 s"


def test_windows_of_different_lengths_and_prompts_are_decoded_in_one_call(
    engine: Engine, jfk: tuple[np.ndarray, str]
) -> None:
    audio, reference = jfk
    tail = audio[3 * SAMPLE_RATE :]
    windows = [
        LiveWindow(audio[: 4 * SAMPLE_RATE], DecodeOptions("en", None)),
        LiveWindow(tail, DecodeOptions("en", LONG_PROMPT)),
        LiveWindow(audio, DecodeOptions("en", "Kennedy")),
        LiveWindow(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), DecodeOptions("en", None)),
    ]
    head, after_prompt, whole, silence = engine.decode_windows(windows)
    assert [word.text.lower().strip(",.") for word in head[:4]] == ["and", "so", "my", "fellow"]
    tail_reference = reference.split("Americans", 1)[1]
    assert word_error_rate(tail_reference, " ".join(word.text for word in after_prompt)) < 0.15
    assert word_error_rate(reference, " ".join(word.text for word in whole)) < 0.1
    assert silence == [], "silence decodes to nothing, not to a hallucination"
    for words, window in zip((head, after_prompt, whole), windows, strict=False):
        duration = window.audio.size / SAMPLE_RATE
        assert all(0 <= w.start_s <= w.end_s <= duration + 0.01 for w in words)
        assert all(a.start_s <= b.start_s for a, b in itertools.pairwise(words))


def test_a_multilingual_model_detects_the_language_of_a_window_that_names_none(
    settings: ServerSettings, jfk: tuple[np.ndarray, str]
) -> None:
    base = load_engine(settings, "base")
    audio, reference = jfk
    [words] = base.decode_windows([LiveWindow(audio, DecodeOptions(None, None))])
    assert word_error_rate(reference, " ".join(word.text for word in words)) < 0.1
