"""Readable text and caption lines, pure logic."""

from __future__ import annotations

from streamscribe.finalize.enhance import (
    caption_lines,
    paragraphs,
    remove_hallucinations,
    remove_repeats,
    sentence_case,
)
from streamscribe.transcript import CaptionLayout, Word


def words(
    text: str, start: float = 0.0, step: float = 0.3, confidence: float = 0.9, speaker: str | None = None
) -> list[Word]:
    return [
        Word(
            id=f"w{i}",
            text=t,
            start=start + i * step,
            end=start + i * step + 0.25,
            confidence=confidence,
            speaker=speaker,
        )
        for i, t in enumerate(text.split())
    ]


def texts(result: list[Word]) -> str:
    return " ".join(word.text for word in result)


def test_repeated_phrases_are_dropped_but_intended_doubles_stay() -> None:
    assert texts(remove_repeats(words("I think I think we should go go now"))) == "I think we should go now"
    assert texts(remove_repeats(words("he said that that was fine"))) == "he said that that was fine"


def test_stock_phrases_go_only_when_heard_unsure() -> None:
    unsure = words("so that is all") + words("Thank you for watching.", start=2, confidence=0.3)
    assert texts(remove_hallucinations(unsure)) == "so that is all"
    sure = words("thank you for watching", confidence=0.95)
    assert texts(remove_hallucinations(sure)) == "thank you for watching"


def test_paragraphs_split_at_speaker_changes_and_long_pauses() -> None:
    stream = (
        words("one two", speaker="A")
        + words("three", start=0.7, speaker="B")
        + words("four", start=5.0, speaker="B")
    )
    assert [texts(group) for group in paragraphs(stream, pause_s=2.0)] == ["one two", "three", "four"]


def test_sentences_get_capitals_and_a_full_stop() -> None:
    assert texts(sentence_case(words("i think so. and i'm sure, yes"))) == "I think so. And I'm sure, yes."


def test_caption_lines_respect_the_limits() -> None:
    layout = CaptionLayout(max_chars=20, max_lines=2)
    long_text = "the quick brown fox jumps over the lazy dog and keeps on running far away"
    lines = caption_lines(words(long_text), layout)
    assert all(len(line.text) <= 20 for line in lines)
    assert " ".join(line.text for line in lines) == long_text
    cue_sizes: list[int] = []
    for line in lines:
        if line.new_cue:
            cue_sizes.append(0)
        cue_sizes[-1] += 1
    assert max(cue_sizes) <= 2 and lines[0].new_cue


def test_a_pause_starts_a_new_cue() -> None:
    lines = caption_lines(words("before") + words("after", start=3.0), CaptionLayout())
    assert [line.text for line in lines] == ["before", "after"]
    assert lines[1].new_cue


def test_two_line_cues_are_balanced_and_keep_phrases_together() -> None:
    text = (
        "But with full ravishment the hours of prime, singing, received they in the midst of leaves "
        "that ever bore a burden to their rhymes."
    )
    lines = caption_lines(words(text), CaptionLayout())
    assert " ".join(line.text for line in lines) == text
    cues: list[list[str]] = []
    for line in lines:
        if line.new_cue:
            cues.append([])
        cues[-1].append(line.text)
    assert all(len(cue) <= 2 for cue in cues)
    for cue in cues:
        if len(cue) == 2:
            assert min(map(len, cue)) >= 0.6 * max(map(len, cue)), f"unbalanced: {cue}"
    assert not any(line.text.split()[-1] in {"a", "the", "to", "their", "of"} for line in lines), lines
    assert "rhymes." not in [line.text for line in lines], "the last word is not left alone on a line"


def test_a_word_longer_than_a_line_gets_a_line_of_its_own() -> None:
    url = "https://example.org/a/very/long/path/that/no/caption/line/can/hold"
    lines = caption_lines(words(f"see {url} now"), CaptionLayout())
    assert [line.text for line in lines] == ["see", url, "now"]
