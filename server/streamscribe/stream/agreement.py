"""LocalAgreement-n: commit the prefix that the last n hypotheses agree on.

Better than the textbook LocalAgreement-2 in two ways: words are compared after normalising case
and punctuation (so "Americans," agrees with "Americans"), and the committed words that the
decoded audio still holds are found in a new hypothesis by aligning their text with its start
(ties broken by time), not by a time threshold, so a repeated word ("gone and gone") is kept and
a re-timed committed word is not emitted twice.
"""

from __future__ import annotations

import math
from collections import deque

from ..text import word_key
from ..wire import Word

_EDGE_S = 0.05
"""A committed word must reach this far into the decoded audio to count as inside it."""
_RECENT_WORDS = 160


class LocalAgreement:
    """Feed hypotheses with `receive_hypothesis`; it returns words that became final.

    `tentative` is the unstable tail of the newest hypothesis (what a partial should show).
    """

    def __init__(self, n: int = 2, margin_s: float = 0.0, settle_s: float = math.inf) -> None:
        """`margin_s`: a word is committed by agreement only once it ends this long before the
        end of the decoded audio (Whisper guesses at words the audio cuts off). `settle_s`: a word
        the hypotheses still disagree on is committed as the newest one says once it ends this
        long before the end of the decoded audio (a bound on final latency)."""
        if n < 1:
            raise ValueError("agreement needs at least one hypothesis")
        self._margin_s = margin_s
        self._settle_s = settle_s
        self._history: deque[list[Word]] = deque(maxlen=n - 1)
        self._recent: deque[Word] = deque(maxlen=_RECENT_WORDS)
        self.tentative: list[Word] = []
        self.committed_end_s = 0.0
        self.committed_count = 0

    def receive_hypothesis(self, words: list[Word], audio_start_s: float, audio_end_s: float) -> list[Word]:
        """A hypothesis of the audio [audio_start_s, audio_end_s) in stream time; returns the
        newly committed words."""
        fresh = self._drop_committed(words, audio_start_s)
        agreed = 0
        if len(self._history) == self._history.maxlen:
            agreed = min((_common_prefix(previous, fresh) for previous in self._history), default=len(fresh))
            while agreed and fresh[agreed - 1].end > audio_end_s - self._margin_s:
                agreed -= 1
        settled = _ending_by(fresh, audio_end_s - self._settle_s, agreed)
        if settled > agreed:
            self._history.clear()
            agreed = settled
        committed = self._commit(fresh[:agreed])
        if agreed:
            self._history = deque(
                (previous[agreed:] for previous in self._history), maxlen=self._history.maxlen
            )
        self.tentative = fresh[agreed:]
        self._history.append(self.tentative)
        return committed

    def receive_alone(
        self, words: list[Word], audio_start_s: float, audio_end_s: float, margin_s: float
    ) -> list[Word]:
        """One hypothesis of a long window, trusted without agreement (a session catching up):
        commits its words that end `margin_s` before the window does; the rest stays tentative,
        and the next hypothesis may agree with it."""
        fresh = self._drop_committed(words, audio_start_s)
        ready = _ending_by(fresh, audio_end_s - margin_s)
        committed = self._commit(fresh[:ready])
        self.reset_hypotheses()
        self.tentative = fresh[ready:]
        self._history.append(self.tentative)
        return committed

    def flush(self, words: list[Word], audio_start_s: float) -> list[Word]:
        """Commit all of this (last) hypothesis, e.g. at the end of an utterance."""
        committed = self._commit(self._drop_committed(words, audio_start_s))
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

    def _drop_committed(self, words: list[Word], audio_start_s: float) -> list[Word]:
        inside = [word for word in self._recent if word.end > audio_start_s + _EDGE_S]
        if not inside:
            return words
        skip = _aligned_prefix(
            [word_key(word.text) for word in inside], words, audio_start_s, self.committed_end_s
        )
        return words[skip:]

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


def _ending_by(words: list[Word], end_s: float, first: int = 0) -> int:
    """How many leading words end by `end_s`, counting on from `first` (those before it count)."""
    count = first
    while count < len(words) and words[count].end <= end_s:
        count += 1
    return count


def _common_prefix(first: list[Word], second: list[Word]) -> int:
    count = 0
    for left, right in zip(first, second, strict=False):
        if word_key(left.text) != word_key(right.text):
            break
        count += 1
    return count


def _aligned_prefix(
    committed: list[str], words: list[Word], audio_start_s: float, committed_end_s: float
) -> int:
    """How many leading words of `words` re-state `committed`: the prefix with the least edit
    distance to it; among equals, the one ending nearest the committed end time."""
    texts = [word_key(word.text) for word in words]
    previous = list(range(len(texts) + 1))
    for index, token in enumerate(committed, start=1):
        current = [index]
        for column, text in enumerate(texts, start=1):
            substitution = previous[column - 1] + (token != text)
            current.append(min(substitution, previous[column] + 1, current[column - 1] + 1))
        previous = current

    def distance_from_end(prefix: int) -> float:
        end = words[prefix - 1].end if prefix else audio_start_s
        return abs(end - committed_end_s)

    return min(range(len(texts) + 1), key=lambda prefix: (previous[prefix], distance_from_end(prefix)))
