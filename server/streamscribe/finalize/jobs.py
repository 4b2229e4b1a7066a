"""The second-pass job runner: works the JobQueue one job at a time in a daemon thread, off the
event loop, and tells listeners how each job goes; and recovery after a restart.

A job that was running when the process stopped is queued again at the next start (`recover`),
so a restart or a crash loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import ServerSettings
from ..errors import AudioNotRetained, TranscriptNotFound, client_reason
from ..store.base import JobQueue, TranscriptStore
from ..store.handover import JobDone, JobEvent, JobFailed, JobListener, JobProgress
from ..store.recording import RecordedSamples, recording_duration_s
from ..transcript import Transcript
from .overrides import apply_overrides
from .pipeline import SecondPass, first_version
from .retention import sweep_expired_audio

log = logging.getLogger(__name__)

_PROGRESS_STEP = 0.05
ResultT = TypeVar("ResultT")


class JobListeners:
    """Who wants to hear about a transcript's job: `listen`, `unlisten`; `notify` delivers (on the
    loop) and forgets a transcript's listeners once its job is done or failed."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[JobListener]] = {}

    def listen(self, transcript_id: str, listener: JobListener) -> None:
        self._listeners.setdefault(transcript_id, []).append(listener)

    def unlisten(self, transcript_id: str, listener: JobListener) -> None:
        listeners = self._listeners.get(transcript_id, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._listeners.pop(transcript_id, None)

    def notify(self, transcript_id: str, event: JobEvent) -> None:
        for listener in list(self._listeners.get(transcript_id, [])):
            listener(event)
        if not isinstance(event, JobProgress):
            self._listeners.pop(transcript_id, None)


class JobRunner:
    """`recover()` once at start, then `work_forever()` in a task; `wake()` after enqueuing."""

    def __init__(
        self,
        store: TranscriptStore,
        jobs: JobQueue,
        settings: ServerSettings,
        second_pass: SecondPass,
        listeners: JobListeners,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._settings = settings
        self._second_pass = second_pass
        self._listeners = listeners
        self._wakeup = asyncio.Event()
        self._threads: set[threading.Thread] = set()

    def native_work_running(self) -> bool:
        """A second pass still runs in its daemon thread (after `work_forever` was cancelled, say)."""
        return any(thread.is_alive() for thread in self._threads)

    def wake(self) -> None:
        self._wakeup.set()

    async def recover(self) -> None:
        """Requeue what a stopped process left running; streams cut off mid-stream get a v1."""
        for transcript_id in await asyncio.to_thread(self._jobs.recover):
            log.warning("stream %s was cut off by a restart; its second pass is queued", transcript_id)
            await self._store_missing_first_version(transcript_id)

    async def work_forever(self) -> None:
        while True:
            job = await asyncio.to_thread(self._jobs.claim_next_job)
            if job is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            error: str | None = None
            began = time.monotonic()
            log.info("second pass started", extra={"fields": {"event": "job_start", "transcript_id": job.id}})
            try:
                stored = await self._run_job(job.id, job.audio_path, job.job_settings)
            except Exception as exc:  # the job fails; the versions already stored stay
                log.exception("second pass of %s failed", job.id)
                error = f"the second pass failed ({client_reason(exc)})"
            await asyncio.to_thread(self._jobs.finish_job, job.id, error)
            fields = {
                "event": "job_end",
                "transcript_id": job.id,
                "seconds": round(time.monotonic() - began, 1),
            }
            outcome = {"outcome": "failed"} if error else {"outcome": "ok", "version": stored.version}
            log.info("second pass ended", extra={"fields": {**fields, **outcome}})
            # before announcing: with retention 0 the audio is gone by then
            await sweep_expired_audio(self._store, self._settings.audio_retention_h)
            self._listeners.notify(job.id, JobFailed(error) if error else JobDone(stored.version))

    async def _run_job(
        self, transcript_id: str, audio_path: str | None, overrides: bytes | None
    ) -> Transcript:
        if audio_path is None:
            raise AudioNotRetained("the audio is no longer kept")
        settings = apply_overrides(self._settings.finalize, overrides)
        parent = await asyncio.to_thread(self._store.version, transcript_id)
        if parent is None:
            raise TranscriptNotFound(f"no version of {transcript_id} to start from")
        self._listeners.notify(transcript_id, JobProgress(0.0))
        audio = await asyncio.to_thread(RecordedSamples, Path(audio_path))
        progress = _ThrottledProgress(
            asyncio.get_running_loop(), lambda done: self._listeners.notify(transcript_id, JobProgress(done))
        )
        result = await _in_daemon_thread(
            self._threads, self._second_pass.run, audio, parent, settings, progress
        )
        return await asyncio.to_thread(self._store.add_version, result)

    async def _store_missing_first_version(self, transcript_id: str) -> None:
        """A stream cut off by a crash has audio but no v1: store an empty one that says so."""
        record = await asyncio.to_thread(self._store.get, transcript_id)
        if record is None or await asyncio.to_thread(self._store.version, transcript_id, 1) is not None:
            return
        duration_s = 0.0
        if record.audio_path:
            duration_s = await asyncio.to_thread(recording_duration_s, Path(record.audio_path))
        first = first_version(
            transcript_id,
            [],
            language=record.language,
            duration_s=duration_s,
            live_model=record.live_model,
            settings=self._settings.finalize,
            warnings=["the server stopped during the live stream; its live words were not kept"],
        )
        await asyncio.to_thread(self._store.add_version, first)


class _ThrottledProgress:
    """Called from the worker thread; forwards to the loop at most every 5 %."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[float], None]) -> None:
        self._loop = loop
        self._deliver = deliver
        self._last = -1.0

    def __call__(self, progress: float) -> None:
        if progress - self._last >= _PROGRESS_STEP or (progress >= 1.0 > self._last):
            self._last = progress
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
                self._loop.call_soon_threadsafe(self._deliver, round(float(progress), 3))


async def _in_daemon_thread(
    threads: set[threading.Thread], function: Callable[..., ResultT], *args: Any
) -> ResultT:
    """Run in a daemon thread, kept in `threads` while it runs, so that a long job never holds up
    shutdown (it is redone at the next start); see `JobRunner.native_work_running`."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ResultT] = loop.create_future()

    def settle_result(result: ResultT) -> None:
        if not future.done():
            future.set_result(result)

    def settle_error(error: BaseException) -> None:
        if not future.done():
            future.set_exception(error)

    def target() -> None:
        try:
            result = function(*args)
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle_error, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle_result, result)
        finally:
            threads.discard(threading.current_thread())

    thread = threading.Thread(target=target, name="finalize", daemon=True)
    threads.add(thread)
    thread.start()
    return await future
