import pytest

from streamscribe.asr.engine import AsrWord
from streamscribe.bench.metrics import (
    OfflineDecode,
    align,
    first_arrivals,
    latencies,
    latency_summary,
    word_error_rate,
)
from streamscribe.client.stream import TimedEvent
from streamscribe.text import word_keys
from streamscribe.wire import Final, Partial, Word


def test_wer_normalises_both_sides() -> None:
    assert word_error_rate("AND SO MY FELLOW AMERICANS", "And so, my fellow Americans.") == 0.0
    assert word_error_rate("a b c d", "a x c") == pytest.approx(0.5)  # one substitution, one deletion
    assert word_keys("Twenty-five don't!") == ["twenty", "five", "don't"]


def test_alignment_pairs_only_exact_matches() -> None:
    errors, pairs = align(["a", "b", "c", "d"], ["a", "x", "c", "d", "e"])
    assert errors == 2 and pairs == [(0, 0), (2, 2), (3, 3)]


def word(text: str, start: float) -> Word:
    return Word(text=text, start=start, end=start + 0.3, confidence=0.9)


def test_first_arrival_of_each_offline_word_as_partial_and_as_final() -> None:
    offline = OfflineDecode([AsrWord("ask", 0.0, 0.3, 1.0), AsrWord("not", 0.4, 0.7, 1.0)], seconds=0.1)
    events = [
        TimedEvent(0.5, Partial(seq=1, words=[word("ask", 0.0)])),
        TimedEvent(0.9, Partial(seq=2, words=[word("ask", 0.0), word("not", 0.4)])),
        TimedEvent(1.4, Final(seq=3, words=[word("ask", 0.0), word("not", 0.4)])),
    ]
    seen, finals = first_arrivals(events, offline)
    assert seen == {0: 0.5, 1: 0.9} and finals == {0: 1.4, 1: 1.4}
    summary = latency_summary(latencies(finals, offline))
    assert summary["words"] == 2 and summary["p50_s"] == pytest.approx(0.7)
