"""The JobQueue of a server without Redis: the transcript store's own job columns (SQLite, or
PostgreSQL for one node), worked by this process alone. A job that was running when the process
stopped is queued again by `recover` at the next start."""

from __future__ import annotations

import uuid
from typing import Protocol

from .base import ClaimedJob, TranscriptRecord, TranscriptStore


class JobTable(TranscriptStore, Protocol):
    """A store that can hand out its queued jobs itself."""

    def claim_queued(self) -> TranscriptRecord | None:
        """The oldest queued transcript, now 'running'."""
        ...

    def requeue_running(self) -> None:
        """Every 'running' transcript back to 'queued'."""
        ...


class TableJobQueue:
    """Jobs as states of the transcripts table; `wake` the runner after `enqueue` (poll_s None)."""

    poll_s: float | None = None

    def __init__(self, store: JobTable) -> None:
        self._store = store

    def enqueue(self, transcript_id: str, job_settings: bytes) -> bool:
        return self._store.queue_job(transcript_id, job_settings, uuid.uuid4().hex)

    def claim_next_job(self, worker: str) -> ClaimedJob | None:
        record = self._store.claim_queued()
        if record is None:
            return None
        return ClaimedJob(record, record.job_id or record.id, record.id)

    def heartbeat(self, job: ClaimedJob, worker: str) -> None:
        """Nothing to do: no other process takes this queue's jobs."""

    def finish_job(self, job: ClaimedJob, error: str | None) -> None:
        self._store.end_job(job.record.id, job.job_id, error)

    def release_job(self, job: ClaimedJob) -> None:
        """It stays 'running' in the store: `recover` queues it again at the next start."""

    def recover(self) -> None:
        self._store.requeue_running()

    def retire_worker(self, worker: str) -> None:
        """Nothing to do: workers are not named in the table."""

    def requeue_lost(self) -> list[str]:
        """Nothing is ever lost: the table is the queue."""
        return []
