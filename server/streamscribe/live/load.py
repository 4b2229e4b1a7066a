"""How long live sessions wait for their decodes: the measure admission goes by.

A live session that has new speech waits in the decoder's queue, then for its batch to be decoded.
That wait (its turnaround) is what a stream's latency is made of; it stays short while the decoder
keeps up and grows with every stream once the decoder is saturated, where a batch's cost grows
with the streams in it. So one more stream is predicted to stretch the recent p95 turnaround by
(N + 1) / N, and a stream that would stretch it past the limit is refused. Times are given by
the caller (sans-I/O).
"""

from __future__ import annotations

from collections import deque

import numpy as np

_MAX_SAMPLES = 4096


class DecodeLoad:
    """`record()` each live decode's turnaround; ask `admits()` before taking a live stream."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=_MAX_SAMPLES)

    def record(self, now: float, turnaround_s: float) -> None:
        self._samples.append((now, turnaround_s))

    def recent_p95_s(self, now: float) -> float | None:
        """The p95 turnaround over the last window, or None when no live decode ran in it."""
        while self._samples and self._samples[0][0] < now - self._window_s:
            self._samples.popleft()
        if not self._samples:
            return None
        return float(np.percentile([turnaround for _, turnaround in self._samples], 95))

    def admits(self, now: float, live_streams: int, limit_s: float) -> bool:
        """Whether one more live stream keeps the predicted p95 turnaround within limit_s."""
        p95 = self.recent_p95_s(now)
        if p95 is None or live_streams == 0:
            return True
        return p95 * (live_streams + 1) / live_streams <= limit_s
