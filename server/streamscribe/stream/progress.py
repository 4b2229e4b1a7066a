"""How far the live pass of a replayed file has got, reported in steps (sans-I/O)."""

from __future__ import annotations

from ..audio import SAMPLE_RATE

_STEPS = 100
_MIN_STEP_S = 1.0
_UNKNOWN_TOTAL_STEP_S = 5.0


class FileProgress:
    """Call `receive_processed` as audio is processed and `receive_finished` once the live pass
    is done; each returns the (processed_s, total_s) of a `progress` event to send, or None.

    Steps are 1 % of the declared length, at least 1 s (5 s when no length is declared); the
    last report carries the real length, whatever the file declared."""

    def __init__(self, total_s: float | None) -> None:
        self._total_s = total_s
        step_s = _UNKNOWN_TOTAL_STEP_S if total_s is None else total_s / _STEPS
        self._step_samples = int(max(step_s, _MIN_STEP_S) * SAMPLE_RATE)
        self._reported_samples = 0
        self._finished = False

    def receive_processed(self, processed_samples: int) -> tuple[float, float | None] | None:
        if self._finished or processed_samples - self._reported_samples < self._step_samples:
            return None
        self._reported_samples = processed_samples
        processed_s = processed_samples / SAMPLE_RATE
        if self._total_s is not None:
            processed_s = min(processed_s, self._total_s)
        return round(processed_s, 3), self._total_s

    def receive_finished(self, received_samples: int) -> tuple[float, float | None] | None:
        if self._finished:
            return None
        self._finished = True
        length_s = round(received_samples / SAMPLE_RATE, 3)
        return length_s, length_s
