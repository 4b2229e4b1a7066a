"""How fast a live stream's audio is taken: a token bucket of audio seconds, `burst_s` at once,
then `speed` times real time. Silence costs no decode, so without it a client could push hours of
it a minute through the voice detector and onto the disk. Times are given by the caller (sans-I/O).
"""

from __future__ import annotations

import math


class AudioPace:
    """`delay_s` for each piece of audio before it is taken; `speed` inf takes everything at once."""

    def __init__(self, speed: float, burst_s: float, now_s: float) -> None:
        self._speed = speed
        self._burst_s = burst_s
        self._allowance_s = burst_s
        self._last_s = now_s

    def delay_s(self, audio_s: float, now_s: float) -> float:
        """How long to wait before taking `audio_s` more seconds of audio (0: take it now); the
        audio counts as taken."""
        if math.isinf(self._speed):
            return 0.0
        refill_s = (now_s - self._last_s) * self._speed
        self._allowance_s = min(self._burst_s, self._allowance_s + refill_s) - audio_s
        self._last_s = now_s
        return max(0.0, -self._allowance_s / self._speed)
