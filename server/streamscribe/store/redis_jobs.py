"""The JobQueue on a Redis Streams consumer group, shared by every node and worker.

A job is an entry {transcript_id, job_id} of `streamscribe:jobs`, read by the group `workers`.
Its state (queued, running, done, failed) stays in the transcript store, which decides whether a
job is due (`queue_job`), current (`start_job`) and over (`end_job`). Delivery is at least once:
an entry a worker took but did not acknowledge within the visibility timeout (the worker died, or
its machine) is claimed by the next worker that asks; a worker on a long job renews its claim
with heartbeats. The version write is idempotent per job id, so a job run twice stores one version.
Acknowledged entries are deleted, so the stream holds only jobs not yet done.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
import redis.exceptions

from .base import ClaimedJob, TranscriptStore
from .failures import BackendFailure
from .redis_events import redis_as_backend_failure

log = logging.getLogger(__name__)

JOBS_KEY = "streamscribe:jobs"
GROUP = "workers"
_BLOCK_MS = 1000
_NOT_QUEUED = (
    "the second pass could not be queued (Redis was unreachable); ask for it again (POST .../finalize)"
)

_RENEW_IF_OWNER = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if pending[1] and pending[1][2] == ARGV[3] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
    return 1
end
return 0
"""
"""Reset the entry's idle time, only while this worker still holds it (never take it back)."""
_RETIRE_IF_IDLE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
    return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""
"""Remove a consumer from the group, only when it holds no entry (deleting it would drop them)."""


class RedisJobQueue:
    """Blocking calls (run them in threads); `claim_next_job` waits up to a second for work."""

    poll_s: float | None = 0.0

    def __init__(self, client: redis.Redis, store: TranscriptStore, visibility_timeout_s: float) -> None:
        self._redis = client
        self._store = store
        self._visibility_ms = int(visibility_timeout_s * 1000)
        self._renew = client.register_script(_RENEW_IF_OWNER)
        self._retire = client.register_script(_RETIRE_IF_IDLE)
        self._missing_before: set[tuple[str, str]] = set()
        self._claim_cursor = "0-0"
        """Where the next look for abandoned entries starts (Redis scans a few pending ones a call)."""
        with redis_as_backend_failure():
            try:
                client.xgroup_create(JOBS_KEY, GROUP, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # the group is there already
                    raise

    def enqueue(self, transcript_id: str, job_settings: bytes) -> bool:
        job_id = uuid.uuid4().hex
        if not self._store.queue_job(transcript_id, job_settings, job_id):
            return False
        try:
            with redis_as_backend_failure():
                self._redis.xadd(JOBS_KEY, {"transcript_id": transcript_id, "job_id": job_id})
        except BackendFailure:  # never 'queued' with nothing in the queue
            self._store.end_job(transcript_id, job_id, _NOT_QUEUED)
            raise
        return True

    def claim_next_job(self, worker: str) -> ClaimedJob | None:
        entry = self._claim_abandoned(worker) or self._read_new(worker)
        if entry is None:
            return None
        receipt, fields = entry
        transcript_id, job_id = fields[b"transcript_id"].decode(), fields[b"job_id"].decode()
        record = self._store.start_job(transcript_id, job_id)
        if record is None:  # deleted meanwhile, or superseded: nothing to do
            self._acknowledge(receipt)
            return None
        return ClaimedJob(record, job_id, receipt)

    def heartbeat(self, job: ClaimedJob, worker: str) -> None:
        if not self._renew(keys=[JOBS_KEY], args=[GROUP, job.receipt, worker]):
            log.warning(
                "the job of %s was taken over by another worker (no heartbeat for %d ms); the version "
                "is stored once whichever finishes first",
                job.record.id,
                self._visibility_ms,
            )

    def finish_job(self, job: ClaimedJob, error: str | None) -> None:
        self._store.end_job(job.record.id, job.job_id, error)
        self._acknowledge(job.receipt)

    def release_job(self, job: ClaimedJob) -> None:
        """Queue it again at once (a new entry, then the old one acknowledged: never neither)."""
        self._redis.xadd(JOBS_KEY, {"transcript_id": job.record.id, "job_id": job.job_id})
        self._acknowledge(job.receipt)

    def recover(self) -> None:
        """Nothing to do: entries left by a stopped worker are claimed once their timeout passes."""

    def retire_worker(self, worker: str) -> None:
        self._retire(keys=[JOBS_KEY], args=[GROUP, worker])

    def requeue_lost(self) -> list[str]:
        """Jobs the store holds unfinished with no entry in the stream, at two calls in a row (so
        that an enqueue between its two writes is never taken for lost), get a new entry."""
        entries: Any = self._redis.xrange(JOBS_KEY)
        in_stream = {fields[b"job_id"].decode() for _entry_id, fields in entries}
        missing = {job for job in self._store.unfinished_jobs() if job[1] not in in_stream}
        lost, self._missing_before = missing & self._missing_before, missing - self._missing_before
        for transcript_id, job_id in sorted(lost):
            self._redis.xadd(JOBS_KEY, {"transcript_id": transcript_id, "job_id": job_id})
        return sorted(transcript_id for transcript_id, _job_id in lost)

    def _claim_abandoned(self, worker: str) -> tuple[str, dict[bytes, bytes]] | None:
        reply: Any = self._redis.xautoclaim(
            JOBS_KEY, GROUP, worker, self._visibility_ms, self._claim_cursor, count=1
        )
        self._claim_cursor = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        claimed = reply[1]
        for entry_id in reply[2] if len(reply) > 2 else []:  # entries deleted while pending
            self._redis.xack(JOBS_KEY, GROUP, entry_id)
        if not claimed:
            return None
        entry_id, fields = claimed[0]
        log.warning("took over the job of %s from a worker that stopped", fields[b"transcript_id"].decode())
        return entry_id.decode(), fields

    def _read_new(self, worker: str) -> tuple[str, dict[bytes, bytes]] | None:
        reply: Any = self._redis.xreadgroup(GROUP, worker, {JOBS_KEY: ">"}, count=1, block=_BLOCK_MS)
        if not reply or not reply[0][1]:
            return None
        entry_id, fields = reply[0][1][0]
        return entry_id.decode(), fields

    def _acknowledge(self, receipt: str) -> None:
        with self._redis.pipeline() as pipe:
            pipe.xack(JOBS_KEY, GROUP, receipt)
            pipe.xdel(JOBS_KEY, receipt)
            pipe.execute()
