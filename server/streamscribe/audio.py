"""Audio in: raw PCM frames or files, converted to 16 kHz mono float32."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from .errors import UnsupportedAudio

SAMPLE_RATE = 16000
MIN_INPUT_RATE = 8000
MAX_INPUT_RATE = 48000
MAX_CHANNELS = 2

Samples = npt.NDArray[np.float32]

_DTYPES: dict[str, np.dtype[Any]] = {"pcm_s16le": np.dtype("<i2"), "pcm_f32le": np.dtype("<f4")}


class PcmConverter:
    """Turns raw PCM frames of any size into 16 kHz mono float32, keeping state across frames.

    A frame may end mid-sample; the remainder is kept for the next frame. Call `flush()` at
    the end of the stream to get what the resampler still holds.
    """

    def __init__(self, encoding: str, sample_rate: int, channels: int) -> None:
        if encoding not in _DTYPES:
            raise UnsupportedAudio(f"encoding {encoding!r} is not supported; use one of {sorted(_DTYPES)}")
        if not MIN_INPUT_RATE <= sample_rate <= MAX_INPUT_RATE:
            raise UnsupportedAudio(
                f"sample_rate {sample_rate} is outside {MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz"
            )
        if not 1 <= channels <= MAX_CHANNELS:
            raise UnsupportedAudio(f"channels {channels} is not supported; send 1 or 2")
        self._dtype = _DTYPES[encoding]
        self._channels = channels
        self._frame_bytes = self._dtype.itemsize * channels
        self._rate = sample_rate
        self._pending = b""
        self._resampler: av.AudioResampler | None = None
        if sample_rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def convert(self, data: bytes) -> Samples:
        """Convert one frame; returns the 16 kHz mono samples it completes (maybe none)."""
        data = self._pending + data
        usable = len(data) - len(data) % self._frame_bytes
        self._pending = data[usable:]
        interleaved = np.frombuffer(data[:usable], dtype=self._dtype)
        samples = interleaved.astype(np.float32)
        if self._dtype.kind == "i":
            samples /= 32768.0
        frames = samples.reshape(-1, self._channels)
        mono = frames.mean(axis=1, dtype=np.float32) if self._channels > 1 else frames[:, 0]
        if self._resampler is None:
            return np.ascontiguousarray(mono)
        return self._resample(mono)

    def flush(self) -> Samples:
        """Samples still held by the resampler at the end of the stream."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return _frames_to_samples(self._resampler.resample(None))

    def _resample(self, mono: Samples) -> Samples:
        assert self._resampler is not None
        if mono.size == 0:
            return mono
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self._rate
        return _frames_to_samples(self._resampler.resample(frame))


def _frames_to_samples(frames: list[av.AudioFrame]) -> Samples:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype(np.float32)


def iter_file(path: Path, chunk_samples: int = SAMPLE_RATE // 10) -> Iterator[Samples]:
    """Decode any file PyAV/ffmpeg reads, incrementally, as 16 kHz mono chunks of `chunk_samples`.

    Raises UnsupportedAudio when the file cannot be opened or has no audio stream.
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise UnsupportedAudio(f"cannot open {path.name}: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise UnsupportedAudio(f"{path.name} has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        buffered: list[Samples] = []
        held = 0
        for frame in container.decode(audio=0):
            for piece in resampler.resample(frame):
                samples = piece.to_ndarray().reshape(-1).astype(np.float32)
                buffered.append(samples)
                held += samples.size
            while held >= chunk_samples:
                joined = np.concatenate(buffered)
                yield joined[:chunk_samples]
                buffered, held = [joined[chunk_samples:]], joined.size - chunk_samples
        tail = np.concatenate([*buffered, _frames_to_samples(resampler.resample(None))])
        if tail.size:
            yield tail


def read_file(path: Path) -> Samples:
    """The whole file as 16 kHz mono float32 (for tests and benchmarks, not the live path)."""
    chunks = list(iter_file(path, chunk_samples=SAMPLE_RATE * 30))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def to_pcm_s16le(samples: Samples) -> bytes:
    """Float samples to 16-bit little-endian PCM, as a client would send them."""
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()
