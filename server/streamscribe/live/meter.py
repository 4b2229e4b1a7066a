"""What one session counts into its server's Metrics: the audio it takes, its final words, and
each final word's lag.

The lag of a final word is the time from the arrival at the server of the audio of the word's
end (the frame that held its last sample was read from the client, or from the file of an
upload) to the moment its `final` event goes out (the driver hands it to the event stream and
the client's outbox). Audio that waits for the pace or for decoding to catch up counts as
arrived when it was read: the wait is part of the lag.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from ..audio import SAMPLE_RATE
from ..metrics import Metrics
from ..wire import Word

RESOLUTION_SAMPLES = SAMPLE_RATE // 20
"""Audio read in pieces shorter than this (50 ms) is merged into one mark."""
MAX_MARKS = 4096
"""Marks kept at most: at least 204 s of audio, more than a session can hold undecoded."""


class AudioArrivals:
    """When a session's audio arrived, by sample: `receive` as it takes audio, `arrived_by_s` for
    the end of each final word, in order. Bounded: marks of audio shorter than `resolution_samples`
    are merged (the later time is kept), the oldest beyond `max_marks` are dropped, and a lookup
    lets go of the marks before it."""

    def __init__(self, resolution_samples: int = RESOLUTION_SAMPLES, max_marks: int = MAX_MARKS) -> None:
        self._resolution_samples = resolution_samples
        self._marks: deque[tuple[int, float]] = deque(maxlen=max_marks)
        """(end_samples, at_s): every sample before end_samples had arrived by at_s."""
        self._last_mark_from = 0
        """Where the audio of the newest mark begins."""

    def receive(self, end_samples: int, at_s: float) -> None:
        """The session holds `end_samples` samples now; the newest arrived at `at_s` (monotonic)."""
        if self._marks and self._marks[-1][0] - self._last_mark_from < self._resolution_samples:
            self._marks[-1] = (end_samples, at_s)
            return
        if self._marks:
            self._last_mark_from = self._marks[-1][0]
        self._marks.append((end_samples, at_s))

    def arrived_by_s(self, sample: int) -> float | None:
        """When the audio up to `sample` (exclusive) had all arrived: exact to one mark, later
        for audio older than the oldest mark kept; None before any audio. Ask in non-decreasing
        order of `sample`: the marks wholly before it are dropped."""
        while len(self._marks) > 1 and self._marks[0][0] < sample:
            self._marks.popleft()
        return self._marks[0][1] if self._marks else None


class SessionMeter:
    """One session's share of the server's metrics, labelled with its transport. Its driver calls
    `took_audio` whenever the session takes audio and `sent_final` as each `final` goes out."""

    def __init__(self, metrics: Metrics, transport: str) -> None:
        self._audio_s = metrics.audio_received.labels(transport=transport)
        self._words = metrics.final_words.labels(transport=transport)
        self._lag_s = metrics.final_word_lag.labels(transport=transport)
        self._arrivals = AudioArrivals()
        self._received_samples = 0

    def took_audio(self, received_samples: int, arrived_s: float) -> None:
        """The session holds `received_samples` now; what it took since was read at `arrived_s`."""
        self._audio_s.inc((received_samples - self._received_samples) / SAMPLE_RATE)
        self._received_samples = received_samples
        self._arrivals.receive(received_samples, arrived_s)

    def sent_final(self, words: Sequence[Word], sent_s: float) -> None:
        """The words of one `final` go out at `sent_s` (monotonic)."""
        self._words.inc(len(words))
        for word in words:
            arrived_s = self._arrivals.arrived_by_s(round(word.end * SAMPLE_RATE))
            if arrived_s is not None:
                self._lag_s.observe(sent_s - arrived_s)
