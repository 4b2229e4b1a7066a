"""How a second pass goes, told across machines: a worker anywhere announces its job's progress
and end on the stream `streamscribe:job-events`; every node reads it and hands each event to its
own listeners (the live session waiting for `transcript_ready`, a `?wait=1` request), exactly as
the embedded server hands them over in process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis

from .handover import JobDone, JobEvent, JobFailed, JobProgress
from .redis_events import REDIS_FAILURES

log = logging.getLogger(__name__)

JOB_EVENTS_KEY = "streamscribe:job-events"
_MAX_EVENTS = 10000
_BLOCK_MS = 2000
_RETRY_S = 1.0
_CLOSE_TIMEOUT_S = 5.0


class _Announcement(msgspec.Struct, frozen=True):
    transcript_id: str
    kind: str
    progress: float = 0.0
    version: int = 0
    message: str = ""


_decoder = msgspec.json.Decoder(_Announcement)


class RedisJobEvents:
    """`announce` from the job runner (on the loop); `deliver_forever(notify)` in a task on every
    node that has listeners."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._sending: set[asyncio.Task[None]] = set()

    def announce(self, transcript_id: str, event: JobEvent) -> None:
        task = asyncio.create_task(self._send(_announcement(transcript_id, event)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, announcement: _Announcement) -> None:
        for _attempt in range(5):
            try:
                await self._redis.xadd(
                    JOB_EVENTS_KEY,
                    {"json": msgspec.json.encode(announcement)},
                    maxlen=_MAX_EVENTS,
                    approximate=True,
                )
                return
            except REDIS_FAILURES as exc:
                log.warning("announcing a job event failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(_RETRY_S)
        log.error("the %s event of %s's job was not announced", announcement.kind, announcement.transcript_id)

    async def deliver_forever(self, notify: Callable[[str, JobEvent], None]) -> None:
        """Hand every event announced from now on to `notify(transcript_id, event)`, until cancelled."""
        last_id: Any = b"$"
        while True:
            try:
                reply: Any = await self._redis.xread({JOB_EVENTS_KEY: last_id}, block=_BLOCK_MS, count=100)
            except REDIS_FAILURES as exc:
                log.warning("reading job events failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(_RETRY_S)
                continue
            for entry_id, fields in reply[0][1] if reply else []:
                last_id = entry_id
                try:
                    announcement = _decoder.decode(fields[b"json"])
                    notify(announcement.transcript_id, _event(announcement))
                except Exception:  # one bad entry or listener must not stop the delivery
                    log.exception("delivering the job event %r failed", entry_id)

    async def close(self) -> None:
        """Wait a little for the announcements still being sent, then give them up."""
        if self._sending:
            _done, late = await asyncio.wait(self._sending, timeout=_CLOSE_TIMEOUT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


def _announcement(transcript_id: str, event: JobEvent) -> _Announcement:
    match event:
        case JobProgress(progress):
            return _Announcement(transcript_id, "progress", progress=progress)
        case JobDone(version):
            return _Announcement(transcript_id, "done", version=version)
        case JobFailed(message):
            return _Announcement(transcript_id, "failed", message=message)


def _event(announcement: _Announcement) -> JobEvent:
    if announcement.kind == "done":
        return JobDone(announcement.version)
    if announcement.kind == "failed":
        return JobFailed(announcement.message)
    return JobProgress(announcement.progress)
