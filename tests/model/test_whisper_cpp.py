"""The whisper.cpp engine on the embedded tiny.en, converted to ggml on first use, on real speech."""

from __future__ import annotations

import itertools
import logging
import platform
import shutil
import statistics
import struct
from pathlib import Path

import msgspec
import numpy as np
import pytest

from streamscribe.asr.engine import AsrWord, DecodeOptions, Engine, LiveWindow
from streamscribe.asr.ggml_file import check_ggml_file
from streamscribe.asr.models import load_engine, load_faster_whisper, resolve_ggml
from streamscribe.asr.whisper_cpp_engine import WhisperCppEngine
from streamscribe.audio import SAMPLE_RATE, read_file
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings
from streamscribe.errors import UnknownModel

from ..conftest import librispeech_utterance, speech_file

UTTERANCES = (
    "1272-141231-0000", "1272-141231-0001", "1272-141231-0002", "1272-141231-0003",
    "1988-24833-0000", "1988-24833-0001", "1988-24833-0002", "1988-24833-0003",
    "6241-61943-0000", "6241-61943-0001", "6241-61943-0002", "6241-61943-0003",
)  # fmt: skip


@pytest.fixture(scope="module")
def whisper_cpp_settings(settings: ServerSettings) -> ServerSettings:
    return msgspec.structs.replace(settings, engine="whisper.cpp")


@pytest.fixture(scope="module")
def whisper_cpp(whisper_cpp_settings: ServerSettings) -> Engine:
    return load_engine(whisper_cpp_settings)


def text_of(words: list[AsrWord]) -> str:
    return " ".join(word.text for word in words)


def test_the_engine_converts_the_embedded_model_once_and_names_itself(
    settings: ServerSettings, whisper_cpp: Engine
) -> None:
    assert isinstance(whisper_cpp, WhisperCppEngine)
    assert (whisper_cpp.runtime, whisper_cpp.device, whisper_cpp.name) == ("whisper.cpp", "cpu", "tiny.en")
    assert not whisper_cpp.multilingual
    ggml = resolve_ggml("tiny.en", settings.model_cache_dir)
    assert ggml.parent == settings.model_cache_dir / "ggml" and ggml.name.startswith("ggml-tiny.en-")
    assert check_ggml_file(ggml) == whisper_cpp.hparams
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


@pytest.fixture
def converted_copy(settings: ServerSettings, tmp_path: Path) -> Path:
    """A copy of the converted tiny.en, to damage."""
    copy = tmp_path / "ggml-damaged.bin"
    shutil.copyfile(resolve_ggml("tiny.en", settings.model_cache_dir), copy)
    return copy


def test_hyper_parameters_that_lie_are_refused_naming_the_tensor(
    whisper_cpp_settings: ServerSettings, converted_copy: Path, jfk: tuple[np.ndarray, str]
) -> None:
    """The header and the tensor table are whole, but n_audio_ctx says 1000 where the encoder's
    positional embedding has 1500 rows: whisper.cpp logs the failure and returns a context that
    crashes when used; the engine refuses it with whisper.cpp's reason."""
    with converted_copy.open("r+b") as handle:
        handle.seek(8)  # the magic, n_vocab, then n_audio_ctx
        assert struct.unpack("<i", handle.read(4)) == (1500,)
        handle.seek(8)
        handle.write(struct.pack("<i", 1000))
    assert check_ggml_file(converted_copy).n_audio_ctx == 1000, "the file check alone lets it through"
    with pytest.raises(UnknownModel, match=r"encoder\.positional_embedding") as caught:
        load_engine(msgspec.structs.replace(whisper_cpp_settings, model=str(converted_copy)))
    assert str(converted_copy) in caught.value.message


def test_a_renamed_tensor_is_refused(whisper_cpp_settings: ServerSettings, converted_copy: Path) -> None:
    raw = bytearray(converted_copy.read_bytes())
    name = b"encoder.ln_post.weight"
    at = raw.find(name)
    assert at > 0 and raw.find(name, at + 1) == -1
    raw[at : at + len(name)] = b"encoder.ln_post.weighz"
    converted_copy.write_bytes(bytes(raw))
    with pytest.raises(UnknownModel, match=r"encoder\.ln_post\.weighz"):
        load_engine(msgspec.structs.replace(whisper_cpp_settings, model=str(converted_copy)))


def test_a_gpu_this_build_lacks_is_refused(whisper_cpp_settings: ServerSettings) -> None:
    """This pywhispercpp is built for the CPU: asked for cuda, whisper.cpp finds no GPU and would
    run on the CPU unasked."""
    with pytest.raises(
        UnknownModel, match="device cuda asked for, but this pywhispercpp build decodes on cpu"
    ):
        load_engine(msgspec.structs.replace(whisper_cpp_settings, device="cuda"))


def test_metal_off_apple_silicon_is_refused(whisper_cpp_settings: ServerSettings) -> None:
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        pytest.skip("this is Apple silicon: metal is whisper.cpp's device here")
    with pytest.raises(UnknownModel, match="device metal needs a Mac with Apple silicon"):
        load_engine(msgspec.structs.replace(whisper_cpp_settings, device="metal"))


def test_a_beam_past_whisper_cpps_maximum_is_clamped(
    whisper_cpp: Engine, jfk: tuple[np.ndarray, str]
) -> None:
    """whisper.cpp fails a whole decode asked for more than 8 beams; the engine asks for 8."""
    audio, reference = jfk
    words = whisper_cpp.transcribe(audio, DecodeOptions("en", beam_size=9))
    assert word_error_rate(reference, text_of(words)) < 0.1, text_of(words)


def test_progress_rises_to_one_over_a_long_recording(whisper_cpp: Engine) -> None:
    """About a minute of speech, decoded 30 s at a time: a report per 30 s, ending at 1.0."""
    parts = []
    for utterance in UTTERANCES:
        parts.append(librispeech_utterance(utterance)[0])
        if sum(part.size for part in parts) >= 60 * SAMPLE_RATE:
            break
    audio = np.concatenate(parts)
    assert audio.size >= 60 * SAMPLE_RATE
    reported: list[float] = []
    words = whisper_cpp.transcribe(
        audio, DecodeOptions("en", whole_recording=True), on_progress=reported.append
    )
    assert len(reported) > 2, reported
    assert all(0.0 <= value <= 1.0 for value in reported), reported
    assert reported == sorted(reported), reported
    assert reported[-1] == 1.0, reported
    assert words[-1].end_s > 50, "the decode stopped early"


def test_audio_too_short_to_decode_has_no_words(
    whisper_cpp: Engine, jfk: tuple[np.ndarray, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Under 0.1 s is not decoded: given no samples, whisper.cpp would decode its previous call's
    audio (here JFK's, on every context) again, and under 0.1 s it warns."""
    audio = jfk[0][: 5 * SAMPLE_RATE]
    tiny = np.zeros(800, dtype=np.float32)
    speech, after_speech = whisper_cpp.decode_windows(
        [LiveWindow(audio, DecodeOptions("en")), LiveWindow(tiny, DecodeOptions("en"))]
    )
    assert speech and after_speech == []
    for _ in range(whisper_cpp.parallel_decodes):
        assert whisper_cpp.transcribe(audio, DecodeOptions("en"))
    caplog.set_level(logging.WARNING, logger="streamscribe.asr.whisper_cpp_engine")
    reported: list[float] = []
    for samples in (0, 0, 800, 1599):
        silence = np.zeros(samples, dtype=np.float32)
        assert whisper_cpp.transcribe(silence, DecodeOptions("en"), on_progress=reported.append) == []
    assert reported == [], "a previous call's audio was decoded again"
    assert [record.getMessage() for record in caplog.records] == []


def test_a_decode_is_not_prompted_by_the_previous_one(whisper_cpp_settings: ServerSettings) -> None:
    """One context decodes clip B, then clip A, then B again: B's words are the same both times
    (whisper.cpp keeps a call's text as the next call's prompt unless told not to)."""
    engine = load_engine(whisper_cpp_settings, "tiny.en")  # a fresh engine of one context
    assert engine.parallel_decodes == 1
    options = DecodeOptions("en", whole_recording=True)
    clip_a, _ = librispeech_utterance("1272-141231-0000")
    clip_b, reference_b = librispeech_utterance("1988-24833-0001")
    fresh = engine.transcribe(clip_b, options)
    engine.transcribe(clip_a, options)
    after_a = engine.transcribe(clip_b, options)
    assert word_error_rate(reference_b, text_of(fresh)) < 0.2, text_of(fresh)
    assert [word.text for word in after_a] == [word.text for word in fresh]
    for ours, theirs in zip(after_a, fresh, strict=True):
        assert ours.probability == pytest.approx(theirs.probability, abs=1e-6), ours.text
        assert (ours.start_s, ours.end_s) == pytest.approx((theirs.start_s, theirs.end_s), abs=1e-6), (
            ours.text
        )
