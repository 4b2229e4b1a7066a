"""Readable text from a word list, pure logic: repeats and hallucinated phrases removed, sentences
and capitals, paragraphs at speaker changes and long pauses, caption lines broken for reading.
"""

from __future__ import annotations

import re

from msgspec.structs import replace

from ..exports import MAX_CUE_S
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
_CLAUSE_END = (",", ";", ":", *_SENTENCE_END)
_BINDS_FORWARD = frozenset(
    "a an the to of in on at by for with from into about as and or but nor if than that my your his "
    "her its our their this these those i we you he she they is are was were not".split()
)
"""Words that belong with the word after them: a caption line or cue should not end on one."""
_BREAK_WEIGHT = 150.0
"""What a line break after a clause end saves, or after a word that binds forward costs, against
even lines (whose cost is the sum of squared line lengths: moving a 5-letter word from a line of
40 characters to one of 30 saves 48)."""
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


def caption_lines(words: list[Word], layout: CaptionLayout, reserve: int = 0) -> list[Line]:
    """The words in caption cues, each broken into balanced lines that keep phrases together. A
    cue ends at a pause, at a sentence end once it is half a line long, before it would last
    more than ~7 s, or when it is full (at a clause end if one is in its second half). `reserve`:
    characters the first line leaves for a speaker mark (CaptionLayout.speaker_mark)."""
    lines: list[Line] = []
    for index, cue in enumerate(_cues(words, layout, reserve)):
        first_width = layout.max_chars - (reserve if index == 0 else 0)
        for number, line in enumerate(_balanced_lines(cue, layout.max_lines, first_width, layout.max_chars)):
            text = " ".join(word.text for word in line)
            lines.append(
                Line(start=line[0].start, end=line[-1].end, text=text, words=line, new_cue=number == 0)
            )
    return lines


def _cues(words: list[Word], layout: CaptionLayout, reserve: int) -> list[list[Word]]:
    cues: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if current:
            first_width = layout.max_chars - (0 if cues else reserve)
            pause = word.start - current[-1].end >= _LINE_PAUSE_S
            sentence_break = (
                current[-1].text.endswith(_SENTENCE_END) and _length(current) >= layout.max_chars // 2
            )
            if pause or sentence_break or word.end - current[0].start > MAX_CUE_S:
                cues.append(current)
                current = []
            elif _line_count([*current, word], first_width, layout.max_chars) > layout.max_lines:
                keep = _cue_break(current)
                cues.append(current[:keep])
                current = current[keep:]
        current.append(word)
    if current:
        cues.append(current)
    return cues


def _cue_break(words: list[Word]) -> int:
    """How many words a full cue keeps: up to the last clause end in its second half, else not
    ending on a word that binds to the next, else all of them."""
    second_half = range(len(words), len(words) // 2, -1)
    for keep in second_half:
        if words[keep - 1].text.endswith(_CLAUSE_END):
            return keep
    for keep in second_half:
        if not _binds_forward(words[keep - 1]):
            return keep
    return len(words)


def _balanced_lines(words: list[Word], max_lines: int, first_width: int, width: int) -> list[list[Word]]:
    """As few lines as the words need (at most `max_lines`), broken where the lines are most even
    (least sum of squared lengths), preferring clause ends and never lightly ending a line on a
    word that binds to the next ("the", "to", "of")."""
    count = _line_count(words, first_width, width)
    if count == 1 or count > max_lines or max(len(word.text) for word in words) > min(first_width, width):
        return _greedy_lines(words, first_width, width)  # one line, or a word too long for one
    sizes = [len(word.text) for word in words]
    infinity = float("inf")
    # best[lines][end]: the least cost of words[:end] in that many lines, and where its last line began.
    best = [[(infinity, 0)] * (len(words) + 1) for _ in range(count + 1)]
    best[0][0] = (0.0, 0)
    for lines in range(1, count + 1):
        limit = first_width if lines == 1 else width
        for end in range(1, len(words) + 1):
            for begin in range(end - 1, -1, -1):
                length = sum(sizes[begin:end]) + end - begin - 1
                if length > limit:
                    break
                before = best[lines - 1][begin][0]
                if before == infinity:
                    continue
                cost = before + length**2 + (_break_cost(words[end - 1]) if end < len(words) else 0)
                if cost < best[lines][end][0]:
                    best[lines][end] = (cost, begin)
    result: list[list[Word]] = []
    end = len(words)
    for lines in range(count, 0, -1):
        begin = best[lines][end][1]
        result.insert(0, words[begin:end])
        end = begin
    return result


def _greedy_lines(words: list[Word], first_width: int, width: int) -> list[list[Word]]:
    lines: list[list[Word]] = [[]]
    limit = first_width
    for word in words:
        if lines[-1] and _length(lines[-1]) + 1 + len(word.text) > limit:
            lines.append([])
            limit = width
        lines[-1].append(word)
    return lines


def _line_count(words: list[Word], first_width: int, width: int) -> int:
    """The fewest lines the words fit in (filling each line as far as it goes is optimal)."""
    return len(_greedy_lines(words, first_width, width))


def _length(words: list[Word]) -> int:
    return sum(len(word.text) for word in words) + len(words) - 1


def _break_cost(word: Word) -> float:
    """What ending a line after `word` costs, in squared characters (negative: a good place)."""
    if word.text.endswith(_CLAUSE_END):
        return -_BREAK_WEIGHT
    return _BREAK_WEIGHT if _binds_forward(word) else 0.0


def _binds_forward(word: Word) -> bool:
    return word_key(word.text) in _BINDS_FORWARD


def readable_paragraphs(words: list[Word], pause_s: float) -> list[list[Word]]:
    """Repeats and hallucinated phrases removed, split into paragraphs, sentence-cased."""
    cleaned = remove_hallucinations(remove_repeats(words))
    return [sentence_case(group) for group in paragraphs(cleaned, pause_s)]


def to_segments(groups: list[list[Word]], layout: CaptionLayout) -> list[Segment]:
    """One segment per paragraph, its words broken into caption lines (the first line of a new
    speaker leaves room for the mark SRT gives it)."""
    segments: list[Segment] = []
    for group in (group for group in groups if group):
        speaker = group[0].speaker
        previous = segments[-1].speaker if segments else None
        reserve = len(layout.speaker_mark(speaker, previous))
        segments.append(
            Segment(
                speaker=speaker,
                start=group[0].start,
                end=group[-1].end,
                lines=caption_lines(group, layout, reserve),
            )
        )
    return segments
