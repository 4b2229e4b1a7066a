"""The real Silero model (shipped in the silero-vad package) on real speech and on silence."""

from __future__ import annotations

import csv

import numpy as np

from streamscribe.audio import SAMPLE_RATE, read_file
from streamscribe.vad import SpeechEnd, SpeechGate, SpeechStart, VoiceDetector

from ..conftest import speech_file


def regions(samples: np.ndarray) -> list[tuple[float, float]]:
    detector = VoiceDetector(SpeechGate(0.5, 0.35, SAMPLE_RATE // 2, SAMPLE_RATE // 5))
    found: list[tuple[float, float]] = []
    start = None
    for offset in range(0, samples.size, 1600):
        for event in detector.receive_audio(samples[offset : offset + 1600]):
            if isinstance(event, SpeechStart):
                start = event.at_samples / SAMPLE_RATE
            elif isinstance(event, SpeechEnd) and start is not None:
                found.append((start, event.at_samples / SAMPLE_RATE))
    if detector.in_speech and start is not None:
        found.append((start, samples.size / SAMPLE_RATE))
    return found


def test_silence_and_faint_noise_are_not_speech() -> None:
    rng = np.random.default_rng(1)
    assert regions(np.zeros(5 * SAMPLE_RATE, dtype=np.float32)) == []
    assert regions((rng.standard_normal(5 * SAMPLE_RATE) * 0.003).astype(np.float32)) == []


def test_conversation_turns_are_found_and_gaps_left_out() -> None:
    audio = read_file(speech_file("conversations/conv2spk_1272_84.wav"))
    with speech_file("conversations/conv2spk_1272_84.transcript.tsv").open() as handle:
        turns = [(float(row["start"]), float(row["end"])) for row in csv.DictReader(handle, delimiter="\t")]
    found = regions(audio)

    def covered(start: float, end: float) -> float:
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in found)

    # Reference turns include each recording's own leading and trailing silence (~0.2-0.5 s).
    for start, end in turns:
        assert covered(start, end) >= 0.75 * (end - start), f"turn {start}-{end} is mostly missed"
    turns_s = sum(end - start for start, end in turns)
    detected_s = sum(b - a for a, b in found)
    assert 0.85 * turns_s < detected_s < 1.05 * turns_s, "speech missed, or gaps marked as speech"
