"""What the benchmarks measure: word error rate, per-word latency against an offline decode of the
same audio (words matched by alignment), and diarization error."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..asr.engine import AsrWord
from ..asr.models import load_faster_whisper
from ..client.stream import TimedEvent
from ..config import load_settings
from ..text import word_keys
from ..transcript import Transcript
from ..wire import Final, Partial
from .corpus import Corpus


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> tuple[int, list[tuple[int, int]]]:
    """Levenshtein alignment: (edit count, pairs (ref_index, hyp_index) of exactly matched words)."""
    rows, cols = len(reference) + 1, len(hypothesis) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            same = reference[i - 1] == hypothesis[j - 1]
            cost[i][j] = min(cost[i - 1][j - 1] + (0 if same else 1), cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    matches: list[tuple[int, int]] = []
    i, j = rows - 1, cols - 1
    while i > 0 and j > 0:
        same = reference[i - 1] == hypothesis[j - 1]
        if cost[i][j] == cost[i - 1][j - 1] + (0 if same else 1):
            if same:
                matches.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    matches.reverse()
    return cost[-1][-1], matches


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = word_keys(reference), word_keys(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    errors, _ = align(ref, hyp)
    return errors / len(ref)


@dataclass(slots=True)
class OfflineDecode:
    words: list[AsrWord]
    seconds: float
    tokens: list[str] = field(default_factory=list)
    token_end_s: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for word in self.words:
            for token in word_keys(word.text):
                self.tokens.append(token)
                self.token_end_s.append(word.end_s)

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)


def offline_decode(corpus: Corpus, model: str) -> OfflineDecode:
    """The whole recording at once with `model` on the CPU (int8), faster-whisper's default
    offline settings (beam 5): the reference for accuracy and for word end times."""
    whisper = load_faster_whisper(load_settings({"device": "cpu", "compute_type": "int8"}), model).whisper
    began = time.perf_counter()
    segments, _ = whisper.transcribe(corpus.audio, language="en", word_timestamps=True, beam_size=5)
    words = [
        AsrWord(word.word.strip(), word.start, word.end, word.probability)
        for segment in list(segments)
        for word in segment.words or []
    ]
    return OfflineDecode(words, time.perf_counter() - began)


def first_arrivals(
    events: list[TimedEvent], offline: OfflineDecode
) -> tuple[dict[int, float], dict[int, float]]:
    """For each offline token index: when it first arrived in any hypothesis, and as a final.

    Finals are matched by a Levenshtein alignment of the whole final sequence; a partial word is
    matched to the offline token with the same text whose end time is nearest (within 1 s).
    """
    final_tokens: list[str] = []
    final_arrival: list[float] = []
    for timed in events:
        if isinstance(timed.event, Final):
            for word in timed.event.words:
                for token in word_keys(word.text):
                    final_tokens.append(token)
                    final_arrival.append(timed.arrived_s)
    _, pairs = align(offline.tokens, final_tokens)
    finals = {ref: final_arrival[hyp] for ref, hyp in pairs}

    seen = dict(finals)
    by_text: dict[str, list[int]] = {}
    for index, token in enumerate(offline.tokens):
        by_text.setdefault(token, []).append(index)
    for timed in events:
        if not isinstance(timed.event, Partial):
            continue
        for word in timed.event.words:
            for token in word_keys(word.text):
                candidates = [
                    i for i in by_text.get(token, []) if abs(offline.token_end_s[i] - word.end) < 1.0
                ]
                if candidates:
                    index = min(candidates, key=lambda i: abs(offline.token_end_s[i] - word.end))
                    seen[index] = min(seen.get(index, timed.arrived_s), timed.arrived_s)
    return seen, finals


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]  # nearest rank


Latency = tuple[float, float]
"""(offline end time of the word, seconds from that end until it arrived)."""


def latencies(arrivals: dict[int, float], offline: OfflineDecode) -> list[Latency]:
    return [
        (offline.token_end_s[index], arrived - offline.token_end_s[index])
        for index, arrived in arrivals.items()
    ]


def latency_summary(
    samples: list[Latency], window_s: tuple[float, float] = (0.0, float("inf"))
) -> dict[str, float]:
    values = [latency for end_s, latency in samples if window_s[0] <= end_s < window_s[1]]
    return {"p50_s": percentile(values, 0.5), "p95_s": percentile(values, 0.95), "words": len(values)}


def diarization_error(transcript: Transcript, rttm: Path) -> float | None:
    """DER with pyannote.metrics (a test extra); None when it is not installed."""
    try:
        from pyannote.core import Annotation, Segment
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        return None
    reference, hypothesis = Annotation(), Annotation()
    for line in rttm.read_text().splitlines():
        fields = line.split()
        start = float(fields[3])
        reference[Segment(start, start + float(fields[4]))] = fields[7]
    for segment in transcript.segments:
        for caption in segment.lines:
            hypothesis[Segment(caption.start, max(caption.end, caption.start + 0.01))] = (
                segment.speaker or "?"
            )
    return float(DiarizationErrorRate(collar=0.25)(reference, hypothesis))
