"""Whisper's failure signs, shared by the whole-recording and the live-window decodes."""

from __future__ import annotations

import zlib

from .engine import AsrWord

_MAX_COMPRESSION_RATIO = 2.4
NO_SPEECH_PROB = 0.6
MIN_AVG_LOGPROB = -1.0
_MAX_TAIL_WORDS = 4
END_MARGIN_S = 0.05
"""Words Whisper places at the very end of the audio are squeezed-in guesses, not speech."""


def looks_hallucinated(compression_ratio: float, no_speech_prob: float, avg_logprob: float) -> bool:
    """A decode to drop whole: a repetition loop, or 'no speech' decoded with low confidence."""
    if compression_ratio > _MAX_COMPRESSION_RATIO:
        return True
    return no_speech_prob > NO_SPEECH_PROB and avg_logprob < MIN_AVG_LOGPROB


def compression_ratio(text: str) -> float:
    """How much zlib shrinks the text: Whisper's measure of a repetition loop."""
    encoded = text.encode("utf-8")
    return len(encoded) / len(zlib.compress(encoded)) if encoded else 0.0


def has_letters(text: str) -> bool:
    """Punctuation-only pieces (a lone "." after a pause) are not words."""
    return any(character.isalnum() for character in text)


def without_squeezed_tail(words: list[AsrWord]) -> list[AsrWord]:
    """The words less a trailing run of anomalous ones (the "Thank you." Whisper appends to the
    silence after speech). Every word of the run must be anomalous itself, so one squeezed word
    does not take real ones with it."""
    run = 0
    while run < min(_MAX_TAIL_WORDS, len(words)) and _anomaly(words[-run - 1]) > 0:
        run += 1
    for length in range(run, 0, -1):
        score = sum(_anomaly(word) for word in words[-length:])
        if score >= 3 or score + 0.01 >= length:
            return words[: len(words) - length]
    return words


def _anomaly(word: AsrWord) -> float:
    """Whisper's word anomaly score: improbable, squeezed into almost no time, or stretched."""
    duration = word.end_s - word.start_s
    score = 1.0 if word.probability < 0.15 else 0.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score
