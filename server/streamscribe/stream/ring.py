"""A fixed-size ring of the most recent audio, addressed by absolute sample offsets."""

from __future__ import annotations

import numpy as np

from ..audio import Samples

_SCALE = 32768.0
"""As 16-bit PCM is read (audio.py): such input goes in and out unchanged."""


class AudioRing:
    """Holds the last `capacity_samples` samples of a stream; older audio is overwritten.

    Kept as 16-bit PCM (half the memory of float32: a session reads far ahead of its decoder);
    `read` gives float32 back.
    """

    def __init__(self, capacity_samples: int) -> None:
        self._buffer = np.zeros(capacity_samples, dtype=np.int16)
        self._capacity = capacity_samples
        self.end_samples = 0
        """Absolute offset one past the newest sample written."""

    @property
    def start_samples(self) -> int:
        """Oldest absolute offset still held."""
        return max(0, self.end_samples - self._capacity)

    def write(self, samples: Samples) -> None:
        if samples.size >= self._capacity:
            self.end_samples += samples.size - self._capacity
            samples = samples[-self._capacity :]
        pcm = np.clip(np.rint(samples * _SCALE), -32768, 32767).astype(np.int16)
        head = self.end_samples % self._capacity
        first = min(pcm.size, self._capacity - head)
        self._buffer[head : head + first] = pcm[:first]
        self._buffer[: pcm.size - first] = pcm[first:]
        self.end_samples += pcm.size

    def read(self, start_samples: int, end_samples: int) -> Samples:
        """A copy of [start, end); raises ValueError if that range is no longer (or not yet) held."""
        if (
            start_samples < self.start_samples
            or end_samples > self.end_samples
            or start_samples > end_samples
        ):
            raise ValueError(
                f"range {start_samples}-{end_samples} outside held {self.start_samples}-{self.end_samples}"
            )
        head = start_samples % self._capacity
        length = end_samples - start_samples
        first = min(length, self._capacity - head)
        pcm = np.concatenate([self._buffer[head : head + first], self._buffer[: length - first]])
        return pcm.astype(np.float32) / _SCALE
