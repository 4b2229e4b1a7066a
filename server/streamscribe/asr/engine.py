"""The Engine protocol: what the scheduler needs from a speech recogniser."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..audio import Samples


@dataclass(frozen=True, slots=True)
class AsrWord:
    """A word as the engine saw it; times in seconds from the start of the decoded audio."""

    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    language: str | None = None
    prompt: str | None = None
    beam_size: int = 1
    whole_recording: bool = False
    """A whole recording (second pass): cut at silences by Whisper's own VAD and decoded with the
    previous text as context; otherwise one live window, decoded without either."""


@dataclass(frozen=True, slots=True)
class LiveWindow:
    """One live decode: a window of a session's speech and how to decode it."""

    audio: Samples
    options: DecodeOptions


Progress = Callable[[float], None]


class Engine(Protocol):
    """A loaded model. Its methods block; call them from the scheduler's worker threads only."""

    name: str
    """The model's name."""
    runtime: str
    """What runs it: faster-whisper or whisper.cpp."""
    device: str
    """Where it runs: cpu, cuda or metal."""
    multilingual: bool
    parallel_decodes: int
    """How many calls may run at once, each from its own thread."""
    batch_size: int
    """Live windows per `decode_windows` call that suit its device (the server's default)."""

    def transcribe(
        self, audio: Samples, options: DecodeOptions, on_progress: Progress | None = None
    ) -> list[AsrWord]:
        """Words in audio time; `on_progress` gets the fraction of the audio decoded so far."""
        ...

    def decode_windows(self, windows: Sequence[LiveWindow]) -> list[list[AsrWord]]:
        """The words of each live window (in window time), decoded in as few model calls as
        their languages, prompts and beam sizes allow."""
        ...
