"""A session's audio on disk while it streams: 16 kHz mono 16-bit WAV, valid after every write."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, Samples, from_pcm_s16le, to_pcm_s16le


class AudioRecorder:
    """Append samples with `write`; `close` when the stream ends (writes after it are ignored).
    Both block on the disk and are thread-safe: call them off the event loop. The WAV header is
    rewritten on every write (the wave module does so), so a crash leaves a readable file of what
    was heard."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.location = str(path)  # the transcript's audio_path (store.audio.LocalAudioStore)
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
                try:
                    self._file.close()
                finally:
                    self._handle.close()


class RecordedSamples:
    """A WAV recording as a SampleSource: each slice is read from the file when asked for, so a
    second pass of hours holds one piece at a time, never the whole recording."""

    def __init__(self, path: Path) -> None:
        """Reads the header only; raises OSError or wave.Error when the file cannot be read."""
        self._path = path
        with wave.open(str(path), "rb") as recording:
            self.size: int = recording.getnframes()

    def __getitem__(self, part: slice) -> Samples:
        start, stop = contiguous(part, self.size)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        with wave.open(str(self._path), "rb") as recording:
            recording.setpos(start)
            frames = recording.readframes(stop - start)
        return from_pcm_s16le(frames)


def contiguous(part: slice, size: int) -> tuple[int, int]:
    """The start and stop of `part` within `size` samples; raises ValueError for a step."""
    start, stop, step = part.indices(size)
    if step != 1:
        raise ValueError("a recording is read in contiguous slices")
    return start, stop


def recording_duration_s(path: Path) -> float:
    """Seconds of audio in a recording; 0 when it is missing or unreadable."""
    try:
        with wave.open(str(path), "rb") as recording:
            return recording.getnframes() / recording.getframerate()
    except (OSError, EOFError, wave.Error):
        return 0.0
