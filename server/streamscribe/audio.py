"""Audio in: raw PCM frames or files, converted to 16 kHz mono float32."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import numpy.typing as npt

from .errors import NoAudioStream, UnsupportedAudio

SAMPLE_RATE = 16000
MIN_INPUT_RATE = 8000
MAX_INPUT_RATE = 48000
MAX_CHANNELS = 2

Samples = npt.NDArray[np.float32]


class SampleSource(Protocol):
    """16 kHz mono float32 samples, read a slice at a time: an array, or a recording on disk
    (store.recording.RecordedSamples) that is never read whole."""

    @property
    def size(self) -> int: ...

    def __getitem__(self, part: slice) -> Samples: ...


def _mulaw_table() -> Samples:
    """The 256 G.711 mu-law codes as samples in [-1, 1]."""
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (codes >> 4) & 0x07, codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return (np.where(codes & 0x80, -magnitude, magnitude) / 32768.0).astype(np.float32)


def _alaw_table() -> Samples:
    """The 256 G.711 A-law codes as samples in [-1, 1]."""
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent, mantissa = (codes >> 4) & 0x07, codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return (np.where(codes & 0x80, magnitude, -magnitude) / 32768.0).astype(np.float32)


_DTYPES: dict[str, np.dtype[Any]] = {
    "pcm_s16le": np.dtype("<i2"),
    "pcm_f32le": np.dtype("<f4"),
    "pcm_mulaw": np.dtype("u1"),
    "pcm_alaw": np.dtype("u1"),
}
_G711_TABLES = {"pcm_mulaw": _mulaw_table(), "pcm_alaw": _alaw_table()}
"""The 8-bit companded encodings of telephony (G.711), decoded through a table."""


class Resampler:
    """Audio frames of any rate and layout to 16 kHz mono float32, keeping state across frames.
    Call `resample(None)` at the end of the stream for what it still holds."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def resample(self, frame: av.AudioFrame | None) -> Samples:
        frames = self._resampler.resample(frame)
        if not frames:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([piece.to_ndarray().reshape(-1) for piece in frames]).astype(np.float32)


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
        self._table = _G711_TABLES.get(encoding)
        self._channels = channels
        self._frame_bytes = self._dtype.itemsize * channels
        self._rate = sample_rate
        self._pending = b""
        self._resampler = Resampler() if sample_rate != SAMPLE_RATE else None

    def convert(self, data: bytes) -> Samples:
        """Convert one frame; returns the 16 kHz mono samples it completes (maybe none)."""
        data = self._pending + data
        usable = len(data) - len(data) % self._frame_bytes
        self._pending = data[usable:]
        interleaved = np.frombuffer(data[:usable], dtype=self._dtype)
        if self._table is not None:
            samples = self._table[interleaved]
        else:
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
        return self._resampler.resample(None)

    def _resample(self, mono: Samples) -> Samples:
        assert self._resampler is not None
        if mono.size == 0:
            return mono
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self._rate
        return self._resampler.resample(frame)


@dataclass(frozen=True, slots=True)
class FileInfo:
    format: str
    codec: str
    duration_s: float | None
    """What the file declares (None if nothing); decoding may find less in a damaged file."""


_TRUNCATED_FRACTION = 0.9
_TRUNCATED_MIN_S = 1.0


class AudioFile:
    """An audio or video file that PyAV/ffmpeg reads, decoded as it is read: `chunks()` yields
    16 kHz mono float32, never the whole file at once. Use it as a context manager.

    Raises UnsupportedAudio when the file cannot be opened or decoded (including a file that stops
    decoding well before the length it declares) and NoAudioStream when it has no audio.
    """

    def __init__(self, path: Path, name: str | None = None) -> None:
        """`name`: how errors call the file (default: its file name)."""
        self._name = name or path.name
        try:
            self._container: Any = av.open(str(path))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__  # not str(exc): it holds our path
            raise UnsupportedAudio(
                f"{self._name} is not an audio or video file that can be decoded ({reason})"
            ) from exc
        format_name = self._container.format.name
        if not self._container.streams.audio:
            self._container.close()
            raise NoAudioStream(f"{self._name} (format {format_name}) has no audio stream")
        stream = self._container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        if rate and rate < MIN_INPUT_RATE:  # 4 KB at 1 Hz would decode to 38 minutes
            self._container.close()
            raise UnsupportedAudio(
                f"{self._name} is sampled at {rate} Hz; speech needs at least {MIN_INPUT_RATE} Hz"
            )
        duration_s: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration_s = self._container.duration / av.time_base
        self.info = FileInfo(format_name, stream.codec_context.name, duration_s)

    def __enter__(self) -> AudioFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def chunks(self, chunk_samples: int = SAMPLE_RATE // 10) -> Iterator[Samples]:
        """The audio in chunks of `chunk_samples` (the last may be shorter)."""
        resampler = Resampler()
        buffered: list[Samples] = []
        held = decoded = 0
        try:
            for frame in self._container.decode(audio=0):
                samples = resampler.resample(frame)
                buffered.append(samples)
                held += samples.size
                while held >= chunk_samples:
                    joined = np.concatenate(buffered)
                    yield joined[:chunk_samples]
                    decoded += chunk_samples
                    buffered, held = [joined[chunk_samples:]], joined.size - chunk_samples
        except av.error.FFmpegError as exc:
            raise UnsupportedAudio(
                f"{self._name} is damaged after {decoded / SAMPLE_RATE:.1f} s ({exc.strerror})"
            ) from exc
        tail = np.concatenate([*buffered, resampler.resample(None)])
        if tail.size:
            yield tail
        self._check_complete((decoded + tail.size) / SAMPLE_RATE)

    def _check_complete(self, decoded_s: float) -> None:
        declared_s = self.info.duration_s
        if decoded_s == 0:
            raise NoAudioStream(f"{self._name} holds no audio samples")
        if declared_s and decoded_s < declared_s * _TRUNCATED_FRACTION - _TRUNCATED_MIN_S:
            raise UnsupportedAudio(
                f"{self._name} is damaged or truncated: it stopped decoding at {decoded_s:.1f} s of the "
                f"{declared_s:.1f} s it declares"
            )


def iter_file(path: Path, chunk_samples: int = SAMPLE_RATE // 10) -> Iterator[Samples]:
    """Decode a whole file incrementally (see AudioFile), as 16 kHz mono chunks."""
    with AudioFile(path) as audio:
        yield from audio.chunks(chunk_samples)


def read_file(path: Path) -> Samples:
    """The whole file as 16 kHz mono float32 (for tests and benchmarks, not the live path)."""
    chunks = list(iter_file(path, chunk_samples=SAMPLE_RATE * 30))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def from_pcm_s16le(data: bytes) -> Samples:
    """16-bit little-endian PCM (a recording's frames) to float samples."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768)


def to_pcm_s16le(samples: Samples) -> bytes:
    """Float samples to 16-bit little-endian PCM, as a client would send them."""
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()
