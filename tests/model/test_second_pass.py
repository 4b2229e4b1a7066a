"""The second pass on real speech: better words than the live pass, the right speakers, and a
version even when a backend fails. Live pass: tiny.en streamed in-process; second pass: base."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import msgspec
import numpy as np
import pytest
import srt

from streamscribe import local
from streamscribe.asr.engine import Engine
from streamscribe.audio import read_file
from streamscribe.bench.metrics import diarization_error, word_error_rate
from streamscribe.config import FinalizeSettings, ServerSettings
from streamscribe.exports import CUE_GAP_S, caption_cues, to_srt
from streamscribe.finalize.pipeline import SecondPass
from streamscribe.local import live_pass
from streamscribe.transcript import Transcript, stream_cut_warning

from ..conftest import speech_file

pytestmark = pytest.mark.model


async def live_version(engine: Engine, settings: ServerSettings, audio: np.ndarray, name: str) -> Transcript:
    """Version 1 from the in-process live pass, as `streamscribe transcribe` makes it."""
    finals = await live_pass(engine, settings, [audio], "en", lambda _event: None)
    return local.live_version(name, finals, audio, "en", engine.name, settings)


@pytest.fixture(scope="module")
def second_pass(settings: ServerSettings) -> SecondPass:
    return SecondPass.for_server(settings)


@pytest.fixture(scope="module")
async def conversation(
    engine: Engine, settings: ServerSettings, second_pass: SecondPass
) -> tuple[Transcript, Transcript]:
    audio = read_file(speech_file("conversations/conv2spk_1272_84.wav"))
    first = await live_version(engine, settings, audio, "conv2spk")
    second = await asyncio.to_thread(second_pass.run, audio, first, FinalizeSettings(), lambda _p: None)
    return first, second


@pytest.fixture(scope="module")
async def meeting(engine: Engine, settings: ServerSettings) -> tuple[np.ndarray, Transcript]:
    audio = read_file(speech_file("pyannote/sample.wav"))
    return audio, await live_version(engine, settings, audio, "sample")


def conversation_text() -> str:
    with speech_file("conversations/conv2spk_1272_84.transcript.tsv").open() as handle:
        return " ".join(row["text"] for row in csv.DictReader(handle, delimiter="\t"))


def text_of(transcript: Transcript) -> str:
    return " ".join(word.text for word in transcript.words)


def test_second_pass_words_beat_the_live_words(conversation: tuple[Transcript, Transcript]) -> None:
    first, second = conversation
    live_wer = word_error_rate(conversation_text(), text_of(first))
    final_wer = word_error_rate(conversation_text(), text_of(second))
    assert final_wer <= live_wer, f"v2 WER {final_wer:.3f} > v1 WER {live_wer:.3f}"
    assert final_wer < 0.12


def test_agreeing_words_keep_their_live_ids(conversation: tuple[Transcript, Transcript]) -> None:
    first, second = conversation
    live_ids = {word.id: word for word in first.words}
    both = [word for word in second.words if word.source == "both"]
    assert len(both) > 0.7 * len(second.words)
    assert all(word.id in live_ids for word in both)
    new_ids = [word.id for word in second.words if word.source == "second_pass"]
    assert not set(new_ids) & set(live_ids), "a replaced word reused a live id"
    assert len({word.id for word in second.words}) == len(second.words)


def test_two_speakers_found_with_low_der(conversation: tuple[Transcript, Transcript]) -> None:
    _first, second = conversation
    assert second.speakers == ["Speaker 1", "Speaker 2"]
    der = diarization_error(second, speech_file("conversations/conv2spk_1272_84.rttm"))
    assert der is not None and der <= 0.15, f"DER {der}"
    assert all(word.speaker is not None for word in second.words)


def test_version_records_parent_models_and_timings(conversation: tuple[Transcript, Transcript]) -> None:
    _first, second = conversation
    assert second.version == 2 and second.info.parent == 1
    assert second.info.models == {"second_pass": "base", "diarizer": "resemblyzer"}
    recorded = msgspec.structs.asdict(FinalizeSettings())
    del recorded["pyannote_checkpoint"], recorded["rewrite_url"]  # the server's own, never shown
    assert second.info.settings == recorded
    assert set(second.info.timings_s) >= {"redecode_s", "diarize_s", "enhance_s", "total_s"}
    assert second.info.warnings == []


async def test_real_meeting_finds_two_speakers(
    meeting: tuple[np.ndarray, Transcript], second_pass: SecondPass
) -> None:
    audio, first = meeting
    second = await asyncio.to_thread(second_pass.run, audio, first, FinalizeSettings(), lambda _p: None)
    assert len(second.speakers) == 2
    der = diarization_error(second, speech_file("pyannote/sample.rttm"))
    assert der is not None and der <= 0.35, f"DER {der}"


async def test_speaker_count_hint_is_obeyed(
    meeting: tuple[np.ndarray, Transcript], second_pass: SecondPass
) -> None:
    audio, first = meeting
    settings = FinalizeSettings(num_speakers=3)
    second = await asyncio.to_thread(second_pass.run, audio, first, settings, lambda _p: None)
    assert len(second.speakers) == 3


async def test_failing_backends_still_yield_a_version(
    meeting: tuple[np.ndarray, Transcript], second_pass: SecondPass, tmp_path: Path
) -> None:
    """pyannote pointed at a missing checkpoint, and a rewrite endpoint that refuses connections;
    the parent is of a stream that was cut, which every later version still says."""
    audio, first = meeting
    cut = stream_cut_warning(30.0, "the connection was lost before the client sent stop")
    first = msgspec.structs.replace(first, info=msgspec.structs.replace(first.info, warnings=[cut]))
    settings = FinalizeSettings(
        diarizer="pyannote",
        pyannote_checkpoint=str(tmp_path / "missing.yaml"),
        rewrite_url="http://127.0.0.1:9/v1",
        rewrite_timeout_s=2.0,
    )
    second = await asyncio.to_thread(second_pass.run, audio, first, settings, lambda _p: None)
    assert len(second.words) > 20
    assert second.speakers == []
    assert any("diarization (pyannote) failed" in warning for warning in second.info.warnings)
    assert any("rewrite failed" in warning for warning in second.info.warnings)
    assert cut in second.info.warnings, "the recording is still the cut one"
    assert second.info.models["diarizer"] == "none"


def test_the_caption_file_follows_the_cue_rules(conversation: tuple[Transcript, Transcript]) -> None:
    """The SRT of a real two-speaker conversation, read back and checked as a captioner would."""
    _, second = conversation
    layout = second.layout
    cues = list(srt.parse(to_srt(second)))
    speakers = [cue.speaker for cue in caption_cues(second)]
    assert len(speakers) == len(cues) and len(set(speakers)) == 2
    for index, cue in enumerate(cues):
        lines = cue.content.split("\n")
        assert len(lines) <= layout.max_lines and all(len(line) <= layout.max_chars for line in lines), lines
        if len(lines) == 2:
            assert min(map(len, lines)) >= 0.4 * max(map(len, lines)), f"unbalanced lines: {lines}"
        new_speaker = index > 0 and speakers[index] != speakers[index - 1]
        assert cue.content.startswith("- ") == new_speaker, "a change of speaker, and only that, is marked"
        duration = (cue.end - cue.start).total_seconds()
        assert duration > 0
        if index + 1 == len(cues):
            continue
        gap = (cues[index + 1].start - cue.end).total_seconds()
        assert gap >= 0, f"cue {index + 1} overlaps the next"
        if gap > CUE_GAP_S + 0.001:  # the next cue left room: the reading rules hold
            assert duration >= layout.min_duration_s - 0.001, cue
            assert len(cue.content.replace("\n", " ")) / duration <= layout.max_chars_per_s + 0.01, cue
