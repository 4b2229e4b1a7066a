"""The whisper.cpp engine on the embedded tiny.en, converted to ggml on first use, on real speech."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import msgspec
import numpy as np
import pytest

from streamscribe.asr.engine import AsrWord, DecodeOptions, Engine, LiveWindow
from streamscribe.asr.ggml_export import is_ggml_file
from streamscribe.asr.models import load_engine, load_faster_whisper, resolve_ggml
from streamscribe.asr.whisper_cpp_engine import WhisperCppEngine
from streamscribe.audio import read_file
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings

from ..conftest import librispeech_utterance, speech_file

UTTERANCES = (
    "1272-141231-0000", "1272-141231-0001", "1272-141231-0002", "1272-141231-0003",
    "1988-24833-0000", "1988-24833-0001", "1988-24833-0002", "1988-24833-0003",
    "6241-61943-0000", "6241-61943-0001", "6241-61943-0002", "6241-61943-0003",
)  # fmt: skip


@pytest.fixture(scope="module")
def whisper_cpp(settings: ServerSettings) -> Engine:
    return load_engine(msgspec.structs.replace(settings, engine="whisper.cpp"))


def text_of(words: list[AsrWord]) -> str:
    return " ".join(word.text for word in words)


def test_the_engine_converts_the_embedded_model_once_and_names_itself(
    settings: ServerSettings, whisper_cpp: Engine
) -> None:
    assert isinstance(whisper_cpp, WhisperCppEngine)
    assert (whisper_cpp.runtime, whisper_cpp.device, whisper_cpp.name) == ("whisper.cpp", "cpu", "tiny.en")
    assert not whisper_cpp.multilingual
    ggml = resolve_ggml("tiny.en", settings.model_cache_dir)
    assert ggml.parent == settings.model_cache_dir / "ggml" and is_ggml_file(ggml)
    written = ggml.stat().st_mtime_ns
    assert resolve_ggml("tiny.en", settings.model_cache_dir) == ggml
    assert ggml.stat().st_mtime_ns == written, "converted again though the cached file was whole"


def test_a_cut_short_conversion_is_done_again(tmp_path: Path) -> None:
    ggml = resolve_ggml("tiny.en", tmp_path)
    size = ggml.stat().st_size
    with ggml.open("r+b") as handle:
        handle.truncate(size // 3)
    assert resolve_ggml("tiny.en", tmp_path).stat().st_size == size
    assert not list(ggml.parent.glob("*.tmp"))


def test_a_ggml_file_is_used_as_it_is(settings: ServerSettings, tmp_path: Path) -> None:
    converted = resolve_ggml("tiny.en", settings.model_cache_dir)
    assert resolve_ggml(str(converted), tmp_path) == converted
    assert not (tmp_path / "ggml").exists()


def test_the_converted_model_is_as_accurate_as_faster_whisper(
    settings: ServerSettings, whisper_cpp: Engine
) -> None:
    """The conversion check: the same weights in float16 give faster-whisper's float32 word error
    rate within 1 point on the same real speech."""
    reference_engine = load_faster_whisper(
        msgspec.structs.replace(settings, compute_type="float32"), "tiny.en"
    )
    utterances = [librispeech_utterance(utterance) for utterance in UTTERANCES]
    reference = " ".join(text for _, text in utterances)
    rates = {}
    for engine in (whisper_cpp, reference_engine):
        decoded = " ".join(text_of(engine.transcribe(audio, DecodeOptions("en"))) for audio, _ in utterances)
        rates[engine.runtime] = word_error_rate(reference, decoded)
    assert rates["whisper.cpp"] < 0.15, rates
    assert abs(rates["whisper.cpp"] - rates["faster-whisper"]) <= 0.01, rates


def test_word_times_agree_with_faster_whisper_alignment(
    settings: ServerSettings, whisper_cpp: Engine, jfk: tuple[np.ndarray, str]
) -> None:
    audio, _ = jfk
    reference_engine = load_faster_whisper(settings, "tiny.en")
    ours = whisper_cpp.transcribe(audio, DecodeOptions("en"))
    theirs = reference_engine.transcribe(audio, DecodeOptions("en"))
    assert [word.text.strip(".,") for word in ours] == [word.text.strip(".,") for word in theirs]
    for earlier, later in itertools.pairwise(ours):
        assert earlier.start_s <= earlier.end_s <= later.start_s + 1e-6
    assert all(0.0 <= word.probability <= 1.0 for word in ours)
    assert 0.0 <= ours[0].start_s and ours[-1].end_s <= audio.size / 16000
    ends = statistics.median(abs(a.end_s - b.end_s) for a, b in zip(ours, theirs, strict=True))
    assert ends < 0.1, [(a.text, a.end_s, b.end_s) for a, b in zip(ours, theirs, strict=True)]


def test_live_windows_follow_prompt_and_beam_options(
    whisper_cpp: Engine, jfk: tuple[np.ndarray, str]
) -> None:
    """A batch of windows (one per session) keeps its order; a prompt or a beam changes nothing
    that was said, and each window's words stay inside it."""
    audio, reference = jfk
    windows = [
        LiveWindow(audio[: 16000 * 5], DecodeOptions("en", "fellow Americans", 5)),
        LiveWindow(audio, DecodeOptions("en")),
        LiveWindow(np.zeros(16000 * 3, dtype=np.float32), DecodeOptions("en")),
    ]
    short, whole, silence = whisper_cpp.decode_windows(windows)
    assert word_error_rate("and so my fellow americans ask not", text_of(short)) < 0.2, text_of(short)
    assert all(word.end_s <= 5.0 for word in short)
    assert word_error_rate(reference, text_of(whole)) < 0.1, text_of(whole)
    assert silence == [], "words decoded from silence"


def test_a_multilingual_model_detects_the_language_of_a_window(settings: ServerSettings) -> None:
    """base (converted on first use) with no language asked for: whisper.cpp detects Spanish, and
    the words are the speaker's."""
    folder = speech_file("azure/es-ES")
    references = dict(line.split("\t", 1) for line in (folder / "trans.txt").read_text().splitlines())
    audio = read_file(folder / "testing_audio.wav")[: 16000 * 12]
    base = load_engine(msgspec.structs.replace(settings, engine="whisper.cpp"), "base")
    assert base.multilingual
    [words] = base.decode_windows([LiveWindow(audio, DecodeOptions(None))])
    spoken = references["testing_audio.wav"].split()[: len(words)]
    assert word_error_rate(" ".join(spoken), text_of(words)) < 0.25, text_of(words)
