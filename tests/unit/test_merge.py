"""Merging a new decode into the previous version, pure logic."""

from __future__ import annotations

from streamscribe.finalize.merge import merge, number_words
from streamscribe.transcript import Word


def decoded(text: str, confidence: float, start: float = 0.0) -> list[Word]:
    return [
        Word(
            id="",
            text=t,
            start=start + i * 0.4,
            end=start + i * 0.4 + 0.3,
            confidence=confidence,
            source="second_pass",
        )
        for i, t in enumerate(text.split())
    ]


def live(text: str, confidence: float, start: float = 0.0) -> list[Word]:
    return number_words(
        [
            Word(id="", text=w.text, start=w.start, end=w.end, confidence=confidence)
            for w in decoded(text, confidence, start)
        ]
    )


def test_agreeing_words_keep_ids_and_take_the_new_spelling() -> None:
    merged = merge(live("hello world", 0.6), decoded("Hello, world.", 0.8))
    assert [(w.id, w.text, w.source) for w in merged] == [("w1", "Hello,", "both"), ("w2", "world.", "both")]
    assert all(w.confidence > 0.8 for w in merged)


def test_disagreement_goes_to_the_more_confident_pass() -> None:
    merged = merge(live("the cat sat", 0.9), decoded("the hat sat", 0.5))
    assert [(w.text, w.source) for w in merged] == [("the", "both"), ("cat", "live"), ("sat", "both")]
    merged = merge(live("the cat sat", 0.5), decoded("the hat sat", 0.6))
    assert [(w.id, w.text, w.source) for w in merged] == [
        ("w1", "the", "both"),
        ("w4", "hat", "second_pass"),
        ("w3", "sat", "both"),
    ]


def test_words_only_one_pass_heard() -> None:
    merged = merge(live("a b c", 0.5), decoded("a c d", 0.7))
    assert [w.text for w in merged] == ["a", "c", "d"]
    merged = merge(live("a b c", 0.95), decoded("a c", 0.7))
    assert [w.text for w in merged] == ["a", "b", "c"]


def test_long_recordings_are_merged_in_chunks_in_time_order() -> None:
    previous = [*live("one two", 0.5), Word(id="w3", text="three", start=10.0, end=10.3, confidence=0.5)]
    merged = merge(previous, decoded("one two", 0.9) + decoded("three four", 0.9, start=10.0))
    assert [w.text for w in merged] == ["one", "two", "three", "four"]
    assert [w.id for w in merged[:3]] == ["w1", "w2", "w3"] and merged[3].id == "w4"


def test_a_confident_live_span_never_drops_words_the_second_pass_heard() -> None:
    """The live pass wrote "American." where the second pass heard "Americans, ask not"."""
    merged = merge(
        live("my fellow American. what your", 0.95), decoded("my fellow Americans, ask not what your", 0.5)
    )
    assert " ".join(w.text for w in merged) == "my fellow Americans, ask not what your"
    assert [w.source for w in merged if w.text in ("ask", "not")] == ["second_pass", "second_pass"]
