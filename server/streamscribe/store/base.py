"""The TranscriptStore interface; SQLite is the embedded default."""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from ..transcript import Transcript, VersionSummary

JobState = Literal["live", "queued", "running", "done", "failed"]


class TranscriptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One transcript: its second-pass job state and where its audio is (None once deleted)."""

    id: str
    created_at: float
    language: str | None
    live_model: str
    audio_path: str | None
    state: JobState
    """live: still streaming; queued/running: a second pass is due; done/failed: the last one ended."""
    job_settings: bytes | None
    """JSON of the FinalizeSettings overrides of the queued job."""
    error: str | None
    finalized_at: float | None


class TranscriptStore(Protocol):
    """Blocking calls, safe from any thread; the server calls them through asyncio.to_thread."""

    def create(self, transcript_id: str, language: str | None, live_model: str, audio_path: str) -> None: ...

    def get(self, transcript_id: str) -> TranscriptRecord | None: ...

    def add_version(self, transcript: Transcript) -> Transcript:
        """Store the next version (its number is assigned here); versions are never changed."""
        ...

    def version(self, transcript_id: str, version: int | None = None) -> Transcript | None:
        """A version, or the latest one when `version` is None."""
        ...

    def versions(self, transcript_id: str) -> list[VersionSummary]: ...

    def enqueue(self, transcript_id: str, job_settings: bytes) -> bool:
        """Ask for a second pass with these settings overrides (JSON); False if one is already
        queued or running."""
        ...

    def claim_next_job(self) -> TranscriptRecord | None:
        """The oldest queued job, now marked running."""
        ...

    def finish_job(self, transcript_id: str, error: str | None) -> None: ...

    def recover(self) -> list[str]:
        """After a restart: jobs that were running go back to the queue; streams cut off while
        live are queued too. Returns the ids of the streams that were cut off."""
        ...

    def audio_expired(self, finalized_before: float) -> list[TranscriptRecord]: ...

    def forget_audio(self, transcript_id: str) -> None: ...

    def delete(self, transcript_id: str) -> TranscriptRecord | None:
        """Remove the transcript and every version; returns what was removed (to delete its audio)."""
        ...

    def close(self) -> None: ...
