"""Live windows decoded in batches (asr/windows.py) by the real models on real speech."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamscribe.asr.engine import DecodeOptions, Engine, LiveWindow
from streamscribe.asr.models import load_engine
from streamscribe.asr.windows import WindowDecoder, encoder_input_frames
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


def test_windows_encoded_one_at_a_time_decode_as_a_batch_does(
    engine: Engine, jfk: tuple[np.ndarray, str]
) -> None:
    """A CPU encodes and aligns each window on its own (faster there); a GPU encodes the batch.
    Both stack into one `generate` and must give the same words."""
    audio, _ = jfk
    windows = [
        LiveWindow(audio[: 5 * SAMPLE_RATE], DecodeOptions("en", None)),
        LiveWindow(audio[2 * SAMPLE_RATE :], DecodeOptions("en", None)),
        LiveWindow(np.zeros(2 * SAMPLE_RATE, dtype=np.float32), DecodeOptions("en", None)),
    ]
    whisper = engine.whisper  # type: ignore[attr-defined]
    one_by_one = WindowDecoder(whisper, batch_encoder=False).decode(windows)
    batched = WindowDecoder(whisper, batch_encoder=True).decode(windows)
    assert [[w.text for w in words] for words in one_by_one] == [[w.text for w in words] for words in batched]
    assert len(one_by_one[0]) >= 5 and len(one_by_one[1]) >= 10 and one_by_one[2] == []
    for single, together in zip(itertools.chain(*one_by_one), itertools.chain(*batched), strict=True):
        assert abs(single.start_s - together.start_s) < 0.1 and abs(single.end_s - together.end_s) < 0.1
