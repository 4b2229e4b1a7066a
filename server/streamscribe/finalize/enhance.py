"""Readable text from a word list, pure logic: repeats and hallucinated phrases removed, sentences
and capitals, paragraphs at speaker changes and long pauses, caption lines broken for reading.
"""

from __future__ import annotations

import re

from msgspec.structs import replace

from ..text import word_key
from ..transcript import CaptionLayout, Line, Segment, Word

_SENTENCE_END = (".", "?", "!")
_MAX_REPEAT_WORDS = 4
_SINGLE_WORD_REPEATS_KEPT = frozenset({"that", "had", "is", "no", "yes", "very", "bye", "so", "really"})
"""Doubled words that English uses on purpose ("that that", "no no"); other doubles are stutters."""
_HALLUCINATED = (
    "thank you for watching",
    "thanks for watching",
    "please subscribe",
    "subscribe to my channel",
    "like and subscribe",
    "subtitles by",
    "transcribed by",
    "amara org",
)
_HALLUCINATION_MAX_CONFIDENCE = 0.6
_LINE_PAUSE_S = 0.8
"""A pause this long starts a new caption cue."""
_MAX_CUE_S = 7.0
_I_FORMS = re.compile(r"^i('m|'ll|'ve|'d)?$")


def remove_repeats(words: list[Word]) -> list[Word]:
    """Drop a phrase of 1-4 words that immediately repeats itself ("I think I think" -> "I think")."""
    kept: list[Word] = []
    for word in words:
        kept.append(word)
        for length in range(1, _MAX_REPEAT_WORDS + 1):
            if len(kept) < 2 * length:
                break
            tail = [word_key(w.text) for w in kept[-length:]]
            before = [word_key(w.text) for w in kept[-2 * length : -length]]
            if tail == before and not (length == 1 and tail[0] in _SINGLE_WORD_REPEATS_KEPT):
                del kept[-length:]
                break
    return kept


def remove_hallucinations(words: list[Word]) -> list[Word]:
    """Drop Whisper's stock phrases ("thank you for watching") where they were heard with low confidence."""
    keys = [word_key(word.text) for word in words]
    drop: set[int] = set()
    for phrase in _HALLUCINATED:
        phrase_keys = [word_key(part) for part in phrase.split()]
        length = len(phrase_keys)
        for start in range(len(words) - length + 1):
            if keys[start : start + length] != phrase_keys:
                continue
            span = words[start : start + length]
            if sum(word.confidence for word in span) / length < _HALLUCINATION_MAX_CONFIDENCE:
                drop.update(range(start, start + length))
    return [word for index, word in enumerate(words) if index not in drop]


def paragraphs(words: list[Word], pause_s: float) -> list[list[Word]]:
    """Split where the speaker changes or the speech pauses for `pause_s` or longer."""
    groups: list[list[Word]] = []
    for word in words:
        if groups and word.speaker == groups[-1][-1].speaker and word.start - groups[-1][-1].end < pause_s:
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups


def sentence_case(words: list[Word]) -> list[Word]:
    """Capitalise sentence starts and "I"; end the paragraph with a full stop if it has none."""
    result: list[Word] = []
    starts_sentence = True
    for index, word in enumerate(words):
        text = word.text
        if _I_FORMS.match(text):
            text = "I" + text[1:]
        if starts_sentence and text[:1].islower():
            text = text[:1].upper() + text[1:]
        if index == len(words) - 1 and not text.endswith(_SENTENCE_END):
            text = text.rstrip(",;:") + "."
        starts_sentence = text.endswith(_SENTENCE_END)
        result.append(replace(word, text=text) if text != word.text else word)
    return result


def caption_lines(words: list[Word], layout: CaptionLayout) -> list[Line]:
    """Greedy lines of at most max_chars; a new line (and cue) after a pause or a sentence end once
    the line is half full; a cue holds at most max_lines lines and lasts at most ~7 s."""
    lines: list[Line] = []
    current: list[Word] = []
    cue_lines = 0
    cue_start = 0.0
    new_cue = True

    def close_line() -> None:
        nonlocal current, cue_lines, new_cue
        lines.append(
            Line(
                start=current[0].start,
                end=current[-1].end,
                text=" ".join(word.text for word in current),
                words=current,
                new_cue=new_cue,
            )
        )
        cue_lines = 1 if new_cue else cue_lines + 1
        current, new_cue = [], False

    for word in words:
        if current:
            length = sum(len(w.text) + 1 for w in current) - 1
            pause = word.start - current[-1].end >= _LINE_PAUSE_S
            sentence_break = current[-1].text.endswith(_SENTENCE_END) and length >= layout.max_chars // 2
            long_cue = word.end - cue_start > _MAX_CUE_S
            if pause or sentence_break or long_cue or length + 1 + len(word.text) > layout.max_chars:
                close_line()
                new_cue = pause or sentence_break or long_cue or cue_lines >= layout.max_lines
        if new_cue and not current:
            cue_start = word.start
        current.append(word)
    if current:
        close_line()
    return lines


def readable_paragraphs(words: list[Word], pause_s: float) -> list[list[Word]]:
    """Repeats and hallucinated phrases removed, split into paragraphs, sentence-cased."""
    cleaned = remove_hallucinations(remove_repeats(words))
    return [sentence_case(group) for group in paragraphs(cleaned, pause_s)]


def to_segments(groups: list[list[Word]], layout: CaptionLayout) -> list[Segment]:
    """One segment per paragraph, its words broken into caption lines."""
    return [
        Segment(
            speaker=group[0].speaker,
            start=group[0].start,
            end=group[-1].end,
            lines=caption_lines(group, layout),
        )
        for group in groups
        if group
    ]
