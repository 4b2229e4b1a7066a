"""What a finished live stream hands over to be kept, and what it hears back: the contract between
the live runtime and whatever stores transcripts and runs second passes (finalize/service.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..audio import Samples
from ..wire import Word


class AudioSink(Protocol):
    """Where a stream's audio is recorded. Blocking and thread-safe: call `write` off the event
    loop, in order; `close` once, after the last write (later writes are ignored)."""

    def write(self, samples: Samples) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class JobProgress:
    progress: float


@dataclass(frozen=True, slots=True)
class JobDone:
    version: int


@dataclass(frozen=True, slots=True)
class JobFailed:
    message: str


JobEvent = JobProgress | JobDone | JobFailed
JobListener = Callable[[JobEvent], None]


@dataclass(frozen=True, slots=True)
class LiveEnd:
    """What a live session hands over when its last final has been sent."""

    transcript_id: str
    finals: list[Word]
    language: str | None
    duration_s: float
    live_model: str
    recorder: AudioSink
    finalize_overrides: bytes = b"{}"
    """FinalizeSettings fields (JSON) the stream asked for; already checked by the keeper."""
    warnings: tuple[str, ...] = ()
    """What version 1 must say about how the stream went (it was cut short, say)."""


class TranscriptKeeper(Protocol):
    """Keeps what live sessions hear: records their audio and stores their versions."""

    async def open_recording(
        self,
        transcript_id: str,
        language: str | None,
        live_model: str,
        *,
        owner: str | None,
        audio_retention_h: float | None,
        audio_quota_mb: float | None,
    ) -> AudioSink:
        """Create the transcript (owned by `owner`, its audio kept `audio_retention_h` after its
        second pass, None: the server's setting) and a recorder for its audio; raises if `owner`'s
        recordings already take `audio_quota_mb` (None: no quota) or storage fails."""
        ...

    def live_ended(self, end: LiveEnd, listener: JobListener | None) -> None:
        """Store version 1 and queue the second pass; `listener` hears how that job goes. A
        stream with no audio (`duration_s` 0) is removed instead, and `listener` hears nothing."""
        ...
