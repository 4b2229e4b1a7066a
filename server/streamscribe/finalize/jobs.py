"""The second-pass job runner: works the JobQueue, each job in a daemon thread off the event loop,
tells listeners how each job goes, and recovers the streams of servers that stopped.

A job that was running when its process stopped is taken again: by the next start (embedded), or
by another worker once its heartbeats stop (Redis). A stream cut off with its server gets a v1
and a second pass from whichever process notices first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from ..config import ServerSettings
from ..errors import AudioNotRetained, TranscriptNotFound, client_reason
from ..metrics import Metrics
from ..store.base import ClaimedJob, JobBackends, NodeDirectory
from ..store.handover import JobDone, JobEvent, JobFailed, JobListener, JobProgress
from ..transcript import Transcript
from .overrides import apply_overrides
from .pipeline import SecondPass, first_version
from .retention import sweep_expired_audio

log = logging.getLogger(__name__)

_PROGRESS_STEP = 0.05
_RETRY_S = 1.0
_CLOCK_SKEW_S = 2.0
"""How far apart the clocks of nodes may be (their streams' creation times are compared)."""
_CUT_OFF_JOB = "cut-off"
"""The job id of the v1 stored for a cut-off stream (so that two recovering nodes store one)."""
ResultT = TypeVar("ResultT")


def recovery_horizon() -> float:
    """Now, less the clock skew allowed between nodes: see JobRunner.recover_cut_off_streams."""
    return time.time() - _CLOCK_SKEW_S


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
    """`recover()` once at start, then `work_forever(worker, second_pass)` in one task per
    concurrent second pass, each with its own models; `enqueue` a job. Every job event goes to
    `announce` (this process's listeners, or every node's through Redis); jobs are counted in
    `metrics`."""

    def __init__(
        self,
        backends: JobBackends,
        settings: ServerSettings,
        announce: Callable[[str, JobEvent], None],
        metrics: Metrics,
    ) -> None:
        self._store = backends.store
        self._metrics = metrics
        self._jobs = backends.jobs
        self._audio = backends.audio
        self._settings = settings
        self._announce = announce
        self._wakeup = asyncio.Event()
        self._threads: set[threading.Thread] = set()

    def native_work_running(self) -> bool:
        """A second pass still runs in its daemon thread (after `work_forever` was cancelled, say)."""
        return any(thread.is_alive() for thread in self._threads)

    async def enqueue(self, transcript_id: str, job_settings: bytes) -> bool:
        """Queue a second pass of `transcript_id` and wake the workers; False (nothing queued)
        when one is already queued or running."""
        if not await asyncio.to_thread(self._jobs.enqueue, transcript_id, job_settings):
            return False
        self._metrics.second_pass_jobs.labels(state="queued").inc()
        self._wakeup.set()
        return True

    async def recover(self, live_nodes: Collection[str], created_before: float) -> None:
        """At start: requeue what a stopped process of this queue left running, then recover the
        streams cut off with their node (see `recover_cut_off_streams`)."""
        await asyncio.to_thread(self._jobs.recover)
        await self.recover_cut_off_streams(live_nodes, created_before)

    async def recover_cut_off_streams(self, live_nodes: Collection[str], created_before: float) -> None:
        """Streams still live, created before `created_before`, whose node is not in `live_nodes`
        get a v1 (if they had none) and a second pass. Safe to run on every node at once: one of
        them queues each job. Pass `recovery_horizon()` taken just before `live_nodes` was read: a
        stream of a node that started after the read is never taken for cut off."""
        orphans = await asyncio.to_thread(self._store.orphaned_streams, live_nodes, created_before)
        for transcript_id in orphans:
            try:
                await self._store_missing_first_version(transcript_id)
                if await self.enqueue(transcript_id, b"{}"):
                    log.warning(
                        "stream %s was cut off with its server; its second pass is queued", transcript_id
                    )
            except Exception:  # the next pass tries again; the other orphans go on
                log.exception("recovering the cut-off stream %s failed", transcript_id)

    async def watch_nodes(self, nodes: NodeDirectory) -> None:
        """Every lease period until cancelled: recover the streams of nodes whose lease expired,
        and queue again the jobs the queue lost (see JobQueue.requeue_lost)."""
        while True:
            await asyncio.sleep(self._settings.node_lease_s)
            try:
                created_before = recovery_horizon()
                await self.recover_cut_off_streams(await nodes.live_nodes(), created_before)
                if requeued := await asyncio.to_thread(self._jobs.requeue_lost):
                    log.warning(
                        "queued again the second passes of %s, lost by the queue", ", ".join(requeued)
                    )
            except Exception:
                log.exception(
                    "recovering cut-off streams failed; trying again in %g s", self._settings.node_lease_s
                )

    async def work_forever(self, worker: str, second_pass: SecondPass) -> None:
        """Take jobs as `worker` (a name unique among every runner on the queue) and run them with
        `second_pass` (this task's own models) until cancelled.
        A failure of the queue or the store is logged and waited out: the loop never ends by itself."""
        try:
            await self._take_jobs(worker, second_pass)
        finally:
            with contextlib.suppress(Exception):  # unreachable: the name stays, harmless
                await asyncio.to_thread(self._jobs.retire_worker, worker)

    async def _take_jobs(self, worker: str, second_pass: SecondPass) -> None:
        while True:
            self._wakeup.clear()
            try:
                job = await asyncio.to_thread(self._jobs.claim_next_job, worker)
                if job is not None:
                    await self._work(job, worker, second_pass)
            except Exception:  # the queue or the store is unreachable: a job in hand is handed out again
                log.exception("second-pass worker %s failed; retrying in %g s", worker, _RETRY_S)
                await asyncio.sleep(_RETRY_S)
                continue
            if job is not None:
                continue
            if self._jobs.poll_s is None:
                await self._wakeup.wait()
            else:
                await asyncio.sleep(self._jobs.poll_s)

    async def _work(self, job: ClaimedJob, worker: str, second_pass: SecondPass) -> None:
        """Run `job` and settle it with the queue; raises when the queue or the store fails."""
        transcript_id = job.record.id
        heartbeats = asyncio.create_task(self._beat(job, worker))
        error: str | None = None
        began = time.monotonic()
        log.info(
            "second pass started", extra={"fields": {"event": "job_start", "transcript_id": transcript_id}}
        )
        self._metrics.second_passes_running.inc()
        try:
            stored = await self._run_job(job, second_pass)
        except asyncio.CancelledError:  # shutting down: another worker (or the next start) redoes it
            heartbeats.cancel()
            with contextlib.suppress(Exception):  # unreachable: its timeout hands it out instead
                await asyncio.to_thread(self._jobs.release_job, job)
            raise
        except Exception as exc:  # the job fails; the versions already stored stay
            log.exception("second pass of %s failed", transcript_id)
            error = f"the second pass failed ({client_reason(exc)})"
        finally:
            heartbeats.cancel()
            self._metrics.second_passes_running.dec()
        await asyncio.to_thread(self._jobs.finish_job, job, error)
        state = "failed" if error else "done"
        self._metrics.second_pass_jobs.labels(state=state).inc()
        self._metrics.second_pass_duration.labels(state=state).observe(time.monotonic() - began)
        fields = {
            "event": "job_end",
            "transcript_id": transcript_id,
            "seconds": round(time.monotonic() - began, 1),
        }
        outcome = {"outcome": "failed"} if error else {"outcome": "ok", "version": stored.version}
        log.info("second pass ended", extra={"fields": {**fields, **outcome}})
        # before announcing: with retention 0 the audio is gone by then
        try:
            await sweep_expired_audio(self._store, self._audio, self._settings.audio_retention_h)
        finally:
            self._announce(transcript_id, JobFailed(error) if error else JobDone(stored.version))

    async def _beat(self, job: ClaimedJob, worker: str) -> None:
        """Tell the queue this worker is still on `job`, every third of the visibility timeout."""
        while True:
            await asyncio.sleep(self._settings.job_visibility_timeout_s / 3)
            try:
                await asyncio.to_thread(self._jobs.heartbeat, job, worker)
            except Exception as exc:
                log.warning("a heartbeat of the job of %s failed (%s)", job.record.id, type(exc).__name__)

    async def _run_job(self, job: ClaimedJob, second_pass: SecondPass) -> Transcript:
        transcript_id, audio_path = job.record.id, job.record.audio_path
        if audio_path is None:
            raise AudioNotRetained("the audio is no longer kept")
        settings = apply_overrides(self._settings.finalize, job.record.job_settings)
        parent = await asyncio.to_thread(self._store.version, transcript_id)
        if parent is None:
            raise TranscriptNotFound(f"no version of {transcript_id} to start from")
        self._announce(transcript_id, JobProgress(0.0))
        audio = await asyncio.to_thread(self._audio.samples, audio_path)
        progress = _ThrottledProgress(
            asyncio.get_running_loop(), lambda done: self._announce(transcript_id, JobProgress(done))
        )
        result = await _in_daemon_thread(self._threads, second_pass.run, audio, parent, settings, progress)
        return await asyncio.to_thread(self._store.add_version, result, job.job_id)

    async def _store_missing_first_version(self, transcript_id: str) -> None:
        """A stream cut off by a crash has audio but no v1: store an empty one that says so."""
        record = await asyncio.to_thread(self._store.get, transcript_id)
        if record is None or await asyncio.to_thread(self._store.version, transcript_id, 1) is not None:
            return
        duration_s = 0.0
        if record.audio_path:
            duration_s = await asyncio.to_thread(self._audio.duration_s, record.audio_path)
        first = first_version(
            transcript_id,
            [],
            language=record.language,
            duration_s=duration_s,
            live_model=record.live_model,
            settings=self._settings.finalize,
            warnings=["the server stopped during the live stream; its live words were not kept"],
        )
        await asyncio.to_thread(self._store.add_version, first, _CUT_OFF_JOB)


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
