"""What the server keeps, as protocols: transcripts and their versions (TranscriptStore), second-pass
jobs (JobQueue), API keys (KeyStore), session events (EventBus) and recordings (AudioStore). The
embedded defaults are SQLite (sqlite.py), an in-process event log (events.py) and files in the
data directory (audio.py); the distributed ones are PostgreSQL (postgres.py), Redis Streams
(redis_events.py, redis_jobs.py) and S3 (audio.py), behind the same types."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from ..audio import Samples, SampleSource
from ..transcript import Transcript, TranscriptListing, VersionSummary
from ..wire import ServerMessage
from .handover import JobEvent

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
    node: str | None = None
    """The node that held it while it was live (recovery takes only those of dead nodes)."""
    job_id: str | None = None
    """The queued or last second-pass job: a version is stored once per job id."""


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
        node: str | None = None,
    ) -> None:
        """A new 'live' transcript held by `node` (None: this process alone, as the embedded server)."""
        ...

    def get(self, transcript_id: str) -> TranscriptRecord | None: ...

    def listing(self, owner: str | None, limit: int, before: float | None) -> list[TranscriptListing]:
        """Newest first: the transcripts of `owner` (every one where None) created before `before`."""
        ...

    def add_version(self, transcript: Transcript, job_id: str | None = None) -> Transcript:
        """Store the next version (its number is assigned here); versions are never changed. When a
        version of this transcript was stored under `job_id` already, that one is returned and
        nothing is stored: a job delivered twice stores one version."""
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

    def queue_job(self, transcript_id: str, job_settings: bytes, job_id: str) -> bool:
        """Mark a second pass due (state 'queued', these overrides, this job id); False when one is
        already queued or running, or the transcript is gone."""
        ...

    def start_job(self, transcript_id: str, job_id: str) -> TranscriptRecord | None:
        """Mark job `job_id` running and return its transcript; None when the job is stale (the
        transcript was deleted, or its job is another one now): the caller drops it."""
        ...

    def end_job(self, transcript_id: str, job_id: str | None, error: str | None) -> None:
        """State 'done' (or 'failed' with `error`), if `job_id` is still its job (None: any)."""
        ...

    def orphaned_streams(self, live_nodes: Collection[str], created_before: float = math.inf) -> list[str]:
        """Transcripts still 'live', created before `created_before` (time.time()), whose node is
        not in `live_nodes`: streams cut off by a crash (rows of node None, the embedded server's,
        count as orphans whenever asked)."""
        ...

    def unfinished_jobs(self) -> list[tuple[str, str]]:
        """(transcript id, job id) of every job queued or running, as the store sees it."""
        ...

    def delete(self, transcript_id: str) -> TranscriptRecord | None:
        """Remove the transcript and every version; returns what was removed (to delete its audio)."""
        ...

    def check(self) -> None:
        """Raises if the store cannot be read now (for /healthz)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker took: `heartbeat` while it runs, then `finish_job` or `release_job`."""

    record: TranscriptRecord
    job_id: str
    receipt: str
    """The queue's handle on the delivery (a Redis message id)."""


class JobQueue(Protocol):
    """Second-pass jobs, one per transcript at a time, delivered at least once. Blocking calls,
    safe from any thread."""

    poll_s: float | None
    """How long a worker with nothing to do waits before it asks again (None: until woken)."""

    def enqueue(self, transcript_id: str, job_settings: bytes) -> bool:
        """Ask for a second pass with these settings overrides (JSON); False if one is already
        queued or running."""
        ...

    def claim_next_job(self, worker: str) -> ClaimedJob | None:
        """The next job for `worker` (a job whose worker stopped sending heartbeats included),
        now marked running; None when there is none (after waiting a little, for a remote queue)."""
        ...

    def heartbeat(self, job: ClaimedJob, worker: str) -> None:
        """`worker` is still on `job`: keep it from being handed to another one."""
        ...

    def finish_job(self, job: ClaimedJob, error: str | None) -> None: ...

    def release_job(self, job: ClaimedJob) -> None:
        """Give an unfinished job back (this worker is shutting down): another one takes it now."""
        ...

    def recover(self) -> None:
        """At start: jobs that a stopped process of this queue left running are queued again."""
        ...

    def retire_worker(self, worker: str) -> None:
        """`worker` stops for good (shutdown): forget its name, unless it still holds a job."""
        ...

    def requeue_lost(self) -> list[str]:
        """Queue again what the store holds queued or running but the queue lost (a crash between
        the two writes); returns their transcript ids. Call it now and then, from any process."""
        ...


class JobEventChannel(Protocol):
    """Job events between processes: a worker anywhere `announce`s, every node delivers."""

    def announce(self, transcript_id: str, event: JobEvent) -> None:
        """Send it (in the background, on the running loop)."""
        ...

    async def deliver_forever(self, notify: Callable[[str, JobEvent], None]) -> None:
        """Hand every event announced from now on to `notify`, until cancelled."""
        ...

    async def close(self) -> None:
        """Wait for the announcements still being sent."""
        ...


class NodeDirectory(Protocol):
    """Which nodes and workers are running (their leases are current)."""

    async def live_nodes(self) -> set[str]: ...


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

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event of a session as followers get it."""

    seq: int
    type: str
    """The wire `type` tag: "final", "speech_started", ..."""
    json: bytes


class EventStream(Protocol):
    """The writing end of one session's events, on the node that runs the session."""

    session_id: str
    owner: str | None
    """The name of the key whose session it is (None on a server without keys)."""

    def append(self, event: ServerMessage) -> None:
        """The session's next event (seq order; never blocks); `closed` closes the stream."""
        ...

    def close(self) -> None:
        """No more events (a session that ended without `closed`)."""
        ...


class EventFeed(Protocol):
    """The reading end of one session's events, on any node: any number of followers, each from
    any seq."""

    session_id: str
    owner: str | None
    closed: bool
    """No event was to be appended any more, when the feed was found."""

    async def check_available(self, after_seq: int) -> None:
        """Raises EventsExpired when events after `after_seq` are no longer kept."""
        ...

    async def has_after(self, after_seq: int) -> bool: ...

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

    async def find(self, session_id: str) -> EventFeed | None:
        """The session's events, wherever it runs; None if it is unknown or long finished."""
        ...

    async def forget(self, session_id: str) -> None:
        """Drop a finished session's events now (its transcript was deleted)."""
        ...

    async def close(self) -> None:
        """At shutdown, after every session finished: deliver what is still pending."""
        ...


class AudioRecording(Protocol):
    """One stream's recording as it is written (an AudioSink): `write` samples in order, `close`
    once. Blocking and thread-safe: call them off the event loop."""

    location: str
    """Where it is kept (a path, or an s3:// URL): the transcript's `audio_path`."""
    samples: int
    """Samples written so far."""

    def write(self, samples: Samples) -> None: ...

    def close(self) -> None: ...


class AudioStore(Protocol):
    """Where recordings are kept: the data directory, a shared volume or an S3 bucket. Blocking
    calls, safe from any thread. A `location` is what `record` gave (`AudioRecording.location`)."""

    def record(self, transcript_id: str) -> AudioRecording:
        """A new recording, readable as it grows: a crash loses at most its last seconds."""
        ...

    def samples(self, location: str) -> SampleSource:
        """The recording, read a slice at a time; raises AudioNotRetained when it is gone."""
        ...

    def duration_s(self, location: str) -> float:
        """Seconds recorded; 0 when it is missing or unreadable."""
        ...

    def size_bytes(self, location: str) -> int:
        """What it takes in the store; 0 when it is gone (for per-key quotas)."""
        ...

    def wav_chunks(self, location: str) -> Iterator[bytes]:
        """The recording as one 16 kHz mono 16-bit WAV file, a piece at a time (for download);
        raises AudioNotRetained when it is gone."""
        ...

    def local_file(self, location: str) -> Path | None:
        """The recording's file where it is one on this machine's disk (served as it is, with
        Range support); None where it is not (an object store: read it with `wav_chunks`)."""
        ...

    def delete(self, location: str) -> None:
        """Remove it (nothing happens when it is gone already)."""
        ...

    def check(self) -> None:
        """Raises when the store cannot be reached now (for /readyz)."""
        ...


@dataclass(frozen=True, slots=True)
class JobBackends:
    """What a second-pass job reads and writes: the transcripts, the queue, the recordings."""

    store: TranscriptStore
    jobs: JobQueue
    audio: AudioStore


@dataclass(frozen=True, slots=True)
class Cluster:
    """This process's place among many nodes and workers on one Redis: its name (unique, held by
    a lease), the other processes' leases, and the channel job events travel on."""

    node_id: str
    nodes: NodeDirectory
    job_events: JobEventChannel
