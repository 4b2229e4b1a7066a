"""LocalAgreement-n: commit the prefix that the last n hypotheses agree on.

Better than the textbook LocalAgreement-2 in two ways: words are compared after normalising case
and punctuation (so "Americans," agrees with "Americans"), and words the window still holds but
that are already committed are removed by time and by n-gram overlap before comparing.
"""

from __future__ import annotations

import re
from collections import deque

from ..wire import Word

_PUNCTUATION = re.compile(r"[^\w']+")
_OVERLAP_TOLERANCE_S = 0.1
_MAX_OVERLAP_WORDS = 5
_RECENT_WORDS = 64


def normalise(text: str) -> str:
    """Lower case, no punctuation: the form in which hypotheses are compared."""
    return _PUNCTUATION.sub("", text.lower())


class LocalAgreement:
    """Feed hypotheses with `receive_hypothesis`; it returns words that became final.

    `tentative` is the unstable tail of the newest hypothesis (what a partial should show).
    """

    def __init__(self, n: int = 2) -> None:
        if n < 2:
            raise ValueError("agreement needs at least two hypotheses")
        self._history: deque[list[Word]] = deque(maxlen=n - 1)
        self._recent: deque[Word] = deque(maxlen=_RECENT_WORDS)
        self.tentative: list[Word] = []
        self.committed_end_s = 0.0
        self.committed_count = 0

    def receive_hypothesis(self, words: list[Word]) -> list[Word]:
        """A new hypothesis in stream time; returns the newly committed words."""
        fresh = self._drop_committed(words)
        agreed = 0
        if len(self._history) == self._history.maxlen:
            agreed = min(_common_prefix(previous, fresh) for previous in self._history)
        committed = self._commit(fresh[:agreed])
        if agreed:
            self._history = deque(
                (previous[agreed:] for previous in self._history), maxlen=self._history.maxlen
            )
        self.tentative = fresh[agreed:]
        self._history.append(self.tentative)
        return committed

    def flush(self, words: list[Word]) -> list[Word]:
        """Commit all of this (last) hypothesis, e.g. at the end of an utterance."""
        committed = self._commit(self._drop_committed(words))
        self.reset_hypotheses()
        return committed

    def commit_until(self, end_s: float) -> list[Word]:
        """Force the tentative words that end by `end_s` to be final (window overflow)."""
        ready = [word for word in self.tentative if word.end <= end_s]
        committed = self._commit(ready)
        self.reset_hypotheses()
        return committed

    def reset_hypotheses(self) -> None:
        """Forget unconfirmed hypotheses (the audio they described is gone from the window)."""
        self._history.clear()
        self.tentative = []

    def recent_text(self, before_s: float, max_chars: int) -> str:
        """Committed text that ends by `before_s`, at most `max_chars` (the decode prompt)."""
        text = " ".join(word.text for word in self._recent if word.end <= before_s + 1e-6)
        return text[-max_chars:].lstrip()

    def _drop_committed(self, words: list[Word]) -> list[Word]:
        fresh = [word for word in words if word.start >= self.committed_end_s - _OVERLAP_TOLERANCE_S]
        if not fresh or not self._recent:
            return fresh
        recent = [normalise(word.text) for word in self._recent]
        for size in range(min(_MAX_OVERLAP_WORDS, len(fresh), len(recent)), 0, -1):
            if recent[-size:] == [normalise(word.text) for word in fresh[:size]]:
                return fresh[size:]
        return fresh

    def _commit(self, words: list[Word]) -> list[Word]:
        committed: list[Word] = []
        for word in words:
            start = max(word.start, self.committed_end_s)
            end = max(word.end, start)
            final = Word(
                text=word.text, start=round(start, 3), end=round(end, 3), confidence=round(word.confidence, 3)
            )
            committed.append(final)
            self._recent.append(final)
            self.committed_end_s = end
        self.committed_count += len(committed)
        return committed


def _common_prefix(first: list[Word], second: list[Word]) -> int:
    count = 0
    for left, right in zip(first, second, strict=False):
        if normalise(left.text) != normalise(right.text):
            break
        count += 1
    return count
