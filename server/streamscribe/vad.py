"""Silero VAD (the ONNX model shipped in the silero-vad package) with a hysteresis gate.

`SpeechGate` is pure logic over per-frame speech probabilities; `VoiceDetector` runs the model
for one stream and feeds the gate. Both count samples at 16 kHz from the start of the stream.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, Samples

FRAME_SAMPLES = 512
_CONTEXT_SAMPLES = 64


@dataclass(frozen=True, slots=True)
class SpeechStart:
    at_samples: int


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    at_samples: int


VadEvent = SpeechStart | SpeechEnd


class SpeechGate:
    """Hysteresis over frame probabilities: speech starts at `threshold`, and ends only after
    `min_silence_samples` of frames below `release`. Speech start is reported `pad_samples`
    early (never before 0) so that the first phoneme is kept.
    """

    def __init__(self, threshold: float, release: float, min_silence_samples: int, pad_samples: int) -> None:
        if not 0.0 < release <= threshold < 1.0:
            raise ValueError("need 0 < release <= threshold < 1")
        self._threshold = threshold
        self._release = release
        self._min_silence_samples = min_silence_samples
        self._pad_samples = pad_samples
        self._in_speech = False
        self._silence_since: int | None = None

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def receive_probability(self, probability: float, frame_start_samples: int) -> VadEvent | None:
        """One frame's probability; returns the event it causes, if any."""
        frame_end = frame_start_samples + FRAME_SAMPLES
        if not self._in_speech:
            if probability >= self._threshold:
                self._in_speech = True
                self._silence_since = None
                return SpeechStart(max(0, frame_start_samples - self._pad_samples))
            return None
        if probability >= self._release:
            self._silence_since = None
            return None
        if self._silence_since is None:
            self._silence_since = frame_start_samples
        if frame_end - self._silence_since >= self._min_silence_samples:
            self._in_speech = False
            end = self._silence_since + self._pad_samples
            self._silence_since = None
            return SpeechEnd(end)
        return None


@functools.cache
def _onnx_session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def silero_model_path() -> Path:
    """The ONNX file inside the installed silero-vad package (the package is not imported)."""
    try:
        path = Path(str(distribution("silero-vad").locate_file("silero_vad/data/silero_vad.onnx")))
    except PackageNotFoundError as exc:
        raise RuntimeError("the silero-vad package is not installed") from exc
    if not path.is_file():
        raise RuntimeError(f"silero-vad is installed but {path} is missing")
    return path


class VoiceDetector:
    """Runs Silero on one stream's audio and reports speech start/end at sample offsets."""

    def __init__(self, gate: SpeechGate, model_path: Path | None = None) -> None:
        self._session = _onnx_session(model_path or silero_model_path())
        self._gate = gate
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, _CONTEXT_SAMPLES), dtype=np.float32)
        self._rate = np.array(SAMPLE_RATE, dtype=np.int64)
        self._pending = np.zeros(0, dtype=np.float32)
        self._next_frame_samples = 0

    @property
    def in_speech(self) -> bool:
        return self._gate.in_speech

    def receive_audio(self, samples: Samples) -> list[VadEvent]:
        """Feed the next samples of the stream; returns the events they complete."""
        audio = np.concatenate([self._pending, samples]) if self._pending.size else samples
        whole = audio.size - audio.size % FRAME_SAMPLES
        self._pending = audio[whole:].copy()
        events: list[VadEvent] = []
        for offset in range(0, whole, FRAME_SAMPLES):
            probability = self._probability(audio[offset : offset + FRAME_SAMPLES])
            event = self._gate.receive_probability(probability, self._next_frame_samples)
            self._next_frame_samples += FRAME_SAMPLES
            if event is not None:
                events.append(event)
        return events

    def _probability(self, frame: Samples) -> float:
        batch = np.concatenate([self._context, frame.reshape(1, -1)], axis=1)
        output, self._state = self._session.run(
            None, {"input": batch, "state": self._state, "sr": self._rate}
        )
        self._context = batch[:, -_CONTEXT_SAMPLES:]
        return float(output[0][0])
