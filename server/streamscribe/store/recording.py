"""A session's audio on disk while it streams: 16 kHz mono 16-bit WAV, valid after every write."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, Samples, to_pcm_s16le


class AudioRecorder:
    """Append samples with `write`; `close` when the stream ends (writes after it are ignored).
    Both block on the disk and are thread-safe: call them off the event loop. The WAV header is
    rewritten on every write (the wave module does so), so a crash leaves a readable file of what
    was heard."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = path.open("wb")  # opened here: wave.open of a path that fails warns in __del__
        self._file = wave.open(self._handle, "wb")
        self._file.setnchannels(1)
        self._file.setsampwidth(2)
        self._file.setframerate(SAMPLE_RATE)
        self._lock = threading.Lock()
        self._closed = False
        self.samples = 0

    def write(self, samples: Samples) -> None:
        with self._lock:
            if samples.size and not self._closed:
                self._file.writeframes(to_pcm_s16le(samples))
                self.samples += samples.size

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._file.close()
                self._handle.close()


def read_recording(path: Path) -> Samples:
    """The recorded audio as float32 samples."""
    with wave.open(str(path), "rb") as recording:
        frames = recording.readframes(recording.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def recording_duration_s(path: Path) -> float:
    """Seconds of audio in a recording; 0 when it is missing or unreadable."""
    try:
        with wave.open(str(path), "rb") as recording:
            return recording.getnframes() / recording.getframerate()
    except (OSError, EOFError, wave.Error):
        return 0.0
