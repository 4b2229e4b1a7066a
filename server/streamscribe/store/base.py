"""What the server keeps, as protocols: transcripts and their versions (TranscriptStore), second-pass
jobs (JobQueue), API keys (KeyStore) and session events (EventBus). The embedded defaults are
SQLite (sqlite.py) and an in-process event log (events.py); distributed implementations plug in
behind the same types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

from ..transcript import Transcript, TranscriptListing, VersionSummary
from ..wire import ServerMessage

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
    owner: str | None = None
    """The name of the key that created it (None on a server without keys): its tenant."""
    audio_retention_h: float | None = None
    """How long its audio is kept after its last second pass; None: the server's setting."""


class TranscriptStore(Protocol):
    """Blocking calls, safe from any thread; the server calls them through asyncio.to_thread."""

    def create(
        self,
        transcript_id: str,
        *,
        language: str | None,
        live_model: str,
        audio_path: str,
        owner: str | None,
        audio_retention_h: float | None,
    ) -> None: ...

    def get(self, transcript_id: str) -> TranscriptRecord | None: ...

    def listing(self, owner: str | None, limit: int, before: float | None) -> list[TranscriptListing]:
        """Newest first: the transcripts of `owner` (every one where None) created before `before`."""
        ...

    def add_version(self, transcript: Transcript) -> Transcript:
        """Store the next version (its number is assigned here); versions are never changed."""
        ...

    def version(self, transcript_id: str, version: int | None = None) -> Transcript | None:
        """A version, or the latest one when `version` is None."""
        ...

    def versions(self, transcript_id: str) -> list[VersionSummary]: ...

    def audio_expired(self, now: float, default_retention_h: float) -> list[TranscriptRecord]:
        """Transcripts whose audio is still kept although their retention (or the default) has passed."""
        ...

    def forget_audio(self, transcript_id: str) -> None: ...

    def audio_paths(self, owner: str | None) -> list[str]:
        """Where the kept recordings of `owner`'s transcripts are (for its disk quota)."""
        ...

    def delete(self, transcript_id: str) -> TranscriptRecord | None:
        """Remove the transcript and every version; returns what was removed (to delete its audio)."""
        ...

    def check(self) -> None:
        """Raises if the store cannot be read now (for /healthz)."""
        ...

    def close(self) -> None: ...


class JobQueue(Protocol):
    """Second-pass jobs, one per transcript at a time. Blocking calls, safe from any thread."""

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


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as stored: its name (the tenant that owns what it creates), rights and limits,
    never the key itself (only its hash is kept)."""

    name: str
    admin: bool = False
    """Sees and may delete every tenant's transcripts and sessions."""
    created_at: float = 0.0
    max_streams: int | None = None
    """Live streams (WebSocket, WebRTC) open at once; None: only the server's limits."""
    max_replays: int | None = None
    """Files being transcribed at once; None: only the server's limit."""
    audio_retention_h: float | None = None
    """How long the audio of its transcripts is kept (0: none once done); None: the server's setting."""
    max_audio_mb: float | None = None
    """Recorded audio its transcripts may keep on disk; past it new streams and uploads are
    refused (`quota_exceeded`) until retention or deletes free some. None: no quota."""


def can_see(caller: ApiKey | None, owner: str | None) -> bool:
    """Whether `caller` (None on a server that checks no keys) may read or change what `owner` made."""
    return caller is None or caller.admin or caller.name == owner


class KeyStore(Protocol):
    """API keys by the SHA-256 of the key, and the short-lived tokens made from them. Blocking
    calls, safe from any thread."""

    def create_key(self, key: ApiKey, key_hash: str) -> None:
        """Raises KeyExists when a key of that name exists."""
        ...

    def keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        ...

    def key_for_hash(self, key_hash: str) -> ApiKey | None: ...

    def has_keys(self) -> bool:
        """Whether any key exists: until one does, the server asks for no credential."""
        ...

    def revoke_key(self, name: str) -> bool:
        """Delete the key and its tokens; False when there is none of that name."""
        ...

    def create_token(self, token_hash: str, key_name: str, expires_at: float) -> None:
        """Store a token that authenticates as `key_name` until `expires_at`; expired ones are purged."""
        ...

    def key_for_token(self, token_hash: str, now: float) -> ApiKey | None:
        """The key an unexpired token stands for."""
        ...


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event of a session as followers get it."""

    seq: int
    type: str
    """The wire `type` tag: "final", "speech_started", ..."""
    json: bytes


class EventStream(Protocol):
    """One session's events in seq order, readable by any number of followers from any seq."""

    session_id: str
    owner: str | None
    """The name of the key whose session it is (None on a server without keys)."""
    closed: bool
    """No event will be appended any more."""

    def append(self, event: ServerMessage) -> None:
        """The session's next event; `closed` closes the stream."""
        ...

    def close(self) -> None:
        """No more events (a session that ended without `closed`)."""
        ...

    def check_available(self, after_seq: int) -> None:
        """Raises EventsExpired when events after `after_seq` are no longer kept."""
        ...

    def has_after(self, after_seq: int) -> bool: ...

    def follow(self, after_seq: int = 0) -> AsyncIterator[LoggedEvent]:
        """Every event with a seq above `after_seq`, as it comes, until the stream is closed.
        Raises EventsExpired if the follower falls so far behind that its next events are gone."""
        ...


class EventBus(Protocol):
    """The event streams of running sessions, and of recently finished ones."""

    def open(self, session_id: str, owner: str | None) -> EventStream:
        """A new stream for a session of `owner` that is starting; `finish` it when the session ends."""
        ...

    def finish(self, stream: EventStream) -> None:
        """The session ended: close its stream, which stays readable for a while."""
        ...

    def get(self, session_id: str) -> EventStream | None:
        """The session's stream, or None if it is unknown or long finished."""
        ...

    def forget(self, session_id: str) -> None:
        """Drop a finished session's stream now (its transcript was deleted)."""
        ...
