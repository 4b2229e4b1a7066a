import pytest

from streamscribe.vad import FRAME_SAMPLES, SpeechEnd, SpeechGate, SpeechStart


def run(gate: SpeechGate, probabilities: list[float]) -> list[object]:
    events = []
    for index, probability in enumerate(probabilities):
        event = gate.receive_probability(probability, index * FRAME_SAMPLES)
        if event is not None:
            events.append(event)
    return events


def gate() -> SpeechGate:
    return SpeechGate(threshold=0.5, release=0.35, min_silence_samples=3 * FRAME_SAMPLES, pad_samples=100)


def test_silence_never_starts_speech() -> None:
    assert run(gate(), [0.1, 0.3, 0.49, 0.2] * 10) == []


def test_speech_starts_padded_and_ends_after_enough_silence() -> None:
    events = run(gate(), [0.1, 0.9, 0.8, 0.1, 0.1, 0.1, 0.1])
    assert events == [SpeechStart(FRAME_SAMPLES - 100), SpeechEnd(3 * FRAME_SAMPLES + 100)]


def test_hysteresis_keeps_speech_through_the_release_band_and_short_dips() -> None:
    # 0.4 lies between release and threshold: still speech. Two silent frames are too short.
    events = run(gate(), [0.9, 0.4, 0.4, 0.1, 0.1, 0.9, 0.4])
    assert events == [SpeechStart(0)]


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError):
        SpeechGate(threshold=0.3, release=0.5, min_silence_samples=1, pad_samples=0)
