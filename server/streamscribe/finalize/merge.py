"""Merge a new decode into the previous version's words, pure logic.

Words whose text agrees keep the previous id (a client patches its view instead of redrawing)
and take the new decode's spelling and times. Where the passes disagree, the span whose mean
confidence is higher wins, with a bias towards the new (stronger) pass, unless the new pass heard
more words there; each word says which pass its text came from.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from difflib import SequenceMatcher

from msgspec.structs import replace

from ..text import word_key
from ..transcript import Word

PREVIOUS_WINS_MARGIN = 0.25
"""The previous pass keeps a disputed span only if its mean confidence beats the new one by this."""
PREVIOUS_ONLY_MIN_CONFIDENCE = 0.9
"""A word only the previous pass heard is kept only if it was this sure."""
_CHUNK_GAP_S = 1.0


def merge(previous: list[Word], decoded: list[Word]) -> list[Word]:
    """The merged word list, in time order. `decoded` words need no ids; new ones get fresh ids."""
    ids = _IdAllocator(previous)
    merged: list[Word] = []
    for old, new in _chunks(previous, decoded):
        merged.extend(_merge_chunk(old, new, ids))
    return merged


def _merge_chunk(old: list[Word], new: list[Word], ids: _IdAllocator) -> Iterator[Word]:
    matcher = SequenceMatcher(
        None, [word_key(w.text) for w in old], [word_key(w.text) for w in new], autojunk=False
    )
    for tag, old_from, old_to, new_from, new_to in matcher.get_opcodes():
        old_span, new_span = old[old_from:old_to], new[new_from:new_to]
        if tag == "equal":
            for before, after in zip(old_span, new_span, strict=True):
                yield replace(
                    after,
                    id=before.id,
                    confidence=round(1 - (1 - before.confidence) * (1 - after.confidence), 4),
                    source="both",
                )
        elif _previous_wins(old_span, new_span):
            yield from old_span
        else:
            yield from (replace(word, id=ids.next(), source="second_pass") for word in new_span)


def _previous_wins(old: list[Word], new: list[Word]) -> bool:
    """Never over a span in which the new pass heard more words: a live "American." must not take
    the place of "Americans, ask not"."""
    if not old or len(old) < len(new):
        return False
    old_confidence = _mean_confidence(old)
    if not new:
        return old_confidence >= PREVIOUS_ONLY_MIN_CONFIDENCE
    return old_confidence > _mean_confidence(new) + PREVIOUS_WINS_MARGIN


def _mean_confidence(words: list[Word]) -> float:
    return sum(word.confidence for word in words) / len(words)


def _chunks(previous: list[Word], decoded: list[Word]) -> Iterator[tuple[list[Word], list[Word]]]:
    """Cut both lists at pauses of the new decode, so each alignment stays small on long recordings."""
    cuts: list[float] = [
        (before.end + after.start) / 2
        for before, after in itertools.pairwise(decoded)
        if after.start - before.end >= _CHUNK_GAP_S
    ]
    old_chunks: list[list[Word]] = [[] for _ in range(len(cuts) + 1)]
    new_chunks: list[list[Word]] = [[] for _ in range(len(cuts) + 1)]
    for word in previous:
        old_chunks[bisect.bisect(cuts, (word.start + word.end) / 2)].append(word)
    for word in decoded:
        new_chunks[bisect.bisect(cuts, (word.start + word.end) / 2)].append(word)
    yield from zip(old_chunks, new_chunks, strict=True)


class _IdAllocator:
    """Ids are "w<n>"; new words continue after the highest id of the previous version."""

    def __init__(self, previous: list[Word]) -> None:
        numbers = [int(word.id[1:]) for word in previous if word.id[1:].isdigit()]
        self._next = max(numbers, default=0) + 1

    def next(self) -> str:
        word_id = f"w{self._next}"
        self._next += 1
        return word_id


def number_words(words: list[Word]) -> list[Word]:
    """Give the live pass's words their ids w1, w2, ... (version 1)."""
    return [replace(word, id=f"w{index}") for index, word in enumerate(words, 1)]
