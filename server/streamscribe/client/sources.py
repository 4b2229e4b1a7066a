"""Where a stream's audio comes from: a file, the caller's chunks, or a microphone. Every source is
read as pcm_s16le mono bytes at its `sample_rate` (16 kHz but for a microphone opened at another).

Chunks a caller gives, from an async or a plain iterable (a plain one is read in a worker thread),
are either `bytes` of pcm_s16le 16 kHz mono or numpy float32 arrays of 16 kHz mono samples in
[-1, 1]; any size (the stream sends them in frames of at most `chunk_ms`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..audio import SAMPLE_RATE, AudioFile, to_pcm_s16le

Chunk = bytes | npt.NDArray[np.floating[Any]]
"""pcm_s16le 16 kHz mono bytes, or float samples (16 kHz mono, in [-1, 1])."""
_MIC_EXTRA = "pip install 'streamscribe[mic]'"


@dataclass(frozen=True, slots=True)
class Microphone:
    """An input device read with `sounddevice`, as 16-bit mono at `sample_rate` (the server takes
    8-48 kHz; the device or its host API must offer the rate). Make one with `microphone()`."""

    device: int | str | None
    sample_rate: int
    max_backlog_s: float
    """How much audio may wait to be sent (while a dropped connection is resumed, say) before
    the stream fails rather than grow without bound."""

    @contextlib.asynccontextmanager
    async def opened(self, block_samples: int) -> AsyncIterator[AsyncIterator[bytes]]:
        """The device open, as an iterator of blocks of `block_samples`; closed on exit. Once
        more than `max_backlog_s` of blocks wait unread, the device's blocks are dropped and the
        iterator's next step raises RuntimeError (once: it ends there)."""
        sounddevice = _import_sounddevice()
        loop = asyncio.get_running_loop()
        backlog_blocks = int(self.max_backlog_s * self.sample_rate / block_samples) + 1
        blocks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=backlog_blocks)
        overflowed = False

        def take(block: bytes) -> None:  # on the loop: the device's thread only schedules this
            nonlocal overflowed
            if blocks.full():
                overflowed = True  # `read` raises at its next step
            elif not overflowed:  # after the overflow the device's blocks are dropped, not kept
                blocks.put_nowait(block)

        def on_block(data: Any, frames: int, time: Any, status: Any) -> None:
            loop.call_soon_threadsafe(take, bytes(data))

        async def read() -> AsyncIterator[bytes]:
            while not overflowed:
                yield await blocks.get()
            raise RuntimeError(
                f"the microphone's audio waited more than {self.max_backlog_s:g} s to be sent; "
                "the stream cannot keep up"
            )

        device = sounddevice.RawInputStream(
            samplerate=self.sample_rate, channels=1, dtype="int16", blocksize=block_samples,
            device=self.device, callback=on_block,
        )  # fmt: skip
        with device:
            yield read()


Source = str | os.PathLike[str] | AsyncIterable[Chunk] | Iterable[Chunk] | Microphone
"""What `Client.stream` takes: a path to an audio or video file (decoded to 16 kHz mono), the
caller's chunks, or `microphone()`."""


def microphone(device: int | str | None = None, *, sample_rate: int = SAMPLE_RATE) -> Microphone:
    """The default input device (or `device`, by index or name as `sounddevice.query_devices()`
    lists them), to pass to `Client.stream`. Needs the `mic` extra: raises ImportError naming it
    where `sounddevice` is not installed."""
    _import_sounddevice()
    return Microphone(device, sample_rate, max_backlog_s=60.0)


def _import_sounddevice() -> ModuleType:
    try:
        return importlib.import_module("sounddevice")
    except (ImportError, OSError) as exc:  # OSError: sounddevice is there, PortAudio is not
        raise ImportError(
            f"the microphone source needs the sounddevice package and the PortAudio library: "
            f"{_MIC_EXTRA} (and e.g. apt install libportaudio2)"
        ) from exc


def sample_rate_of(source: Source) -> int:
    """The rate the source's bytes are at: what the stream's `start` names."""
    return source.sample_rate if isinstance(source, Microphone) else SAMPLE_RATE


@contextlib.asynccontextmanager
async def opened(source: Source, chunk_samples: int) -> AsyncIterator[AsyncIterator[bytes]]:
    """The source as pcm_s16le bytes until it ends. A file is opened (and checked: raises
    UnsupportedAudio or NoAudioStream) on entry and closed on exit, as is a microphone."""
    if isinstance(source, Microphone):
        async with source.opened(chunk_samples) as blocks:
            yield blocks
    elif isinstance(source, str | os.PathLike):
        audio = await asyncio.to_thread(AudioFile, Path(source))
        reading = _FileReading(audio, chunk_samples)
        try:
            yield reading.chunks()
        finally:
            await reading.close()
    elif isinstance(source, bytes | np.ndarray):
        raise TypeError("a source is an iterable of chunks: pass [audio] to send one whole recording")
    elif isinstance(source, AsyncIterable):
        yield _as_bytes(source)
    else:
        yield _as_bytes(_in_worker_thread(iter(source)))


class _FileReading:
    """A file decoded in a worker thread a chunk at a time; `close` waits for the chunk being
    decoded, if any, before it closes the file (its decoder must not be closed under it)."""

    def __init__(self, audio: AudioFile, chunk_samples: int) -> None:
        self._audio = audio
        self._decoded = audio.chunks(chunk_samples)
        self._step: asyncio.Future[Any] | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            self._step = asyncio.ensure_future(asyncio.to_thread(next, self._decoded, None))
            samples = await asyncio.shield(self._step)
            if samples is None:
                return
            yield to_pcm_s16le(samples)

    async def close(self) -> None:
        if self._step is not None:
            await asyncio.wait([self._step])
        await asyncio.to_thread(self._audio.close)


async def _in_worker_thread(chunks: Iterator[Chunk]) -> AsyncIterator[Chunk]:
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


async def _as_bytes(chunks: AsyncIterable[Chunk]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if isinstance(chunk, bytes | bytearray | memoryview):
            yield bytes(chunk)
        elif isinstance(chunk, np.ndarray):
            yield to_pcm_s16le(chunk.astype(np.float32, copy=False).reshape(-1))
        else:
            raise TypeError(
                f"a chunk is bytes (pcm_s16le 16 kHz mono) or a float32 array, not {type(chunk).__name__}"
            )
