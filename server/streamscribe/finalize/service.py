"""The second pass as the server sees it: records each stream, stores v1 when it ends, queues its
job, re-runs on request, deletes; behind it the job runner (jobs.py), the override checks
(overrides.py) and the retention sweep (retention.py).

v1 is stored before the job is queued, and the queue keeps a job until a worker finishes it (the
store's job table embedded, Redis scaled out), so a restart or a crash mid-job loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

from ..config import ServerSettings
from ..errors import (
    AudioNotRetained,
    QuotaExceeded,
    TranscriptBusy,
    TranscriptNotFound,
    VersionLimit,
    client_reason,
)
from ..metrics import Metrics
from ..store.base import AudioRecording, Cluster, JobBackends
from ..store.failures import STORAGE_FAILURES, storage_error
from ..store.handover import JobDone, JobFailed, JobListener, LiveEnd
from .jobs import JobListeners, JobRunner, recovery_horizon
from .overrides import apply_overrides, check_overrides
from .pipeline import SecondPass, first_version
from .retention import sweep_expired_audio, sweep_forever

log = logging.getLogger(__name__)


class FinalizeService:
    """`start()` in the running loop; `open_recording` per stream, `live_ended` at its end (the
    TranscriptKeeper of live sessions), `request` for a re-run, `listen` for job events; `close()`
    at shutdown. A `streamscribe worker` is this service with no sessions."""

    def __init__(
        self,
        backends: JobBackends,
        settings: ServerSettings,
        make_second_pass: Callable[[], SecondPass],
        cluster: Cluster | None = None,
        *,
        metrics: Metrics,
    ) -> None:
        """`make_second_pass` gives each of the second_pass_workers its own models, so that they
        run at once (one model shared by threads would take them one at a time). Jobs are
        counted in `metrics`."""
        self.store = backends.store
        self.audio = backends.audio
        self._settings = settings
        self._cluster = cluster
        self._listeners = JobListeners()
        announce = self._listeners.notify if cluster is None else cluster.job_events.announce
        self._make_second_pass = make_second_pass
        self._runner = JobRunner(backends, settings, announce, metrics)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Recover what stopped processes left, then take jobs (second_pass_workers at once),
        deliver job events, watch other nodes' leases and sweep expired audio, until `close`."""
        cluster = self._cluster
        if cluster is None:  # the data directory's lock: every live stream is one this process left
            await self._runner.recover((), math.inf)
        else:
            created_before = recovery_horizon()
            others = await cluster.nodes.live_nodes() - {cluster.node_id}  # our own streams died with us
            await self._runner.recover(others, created_before)
            self._spawn(cluster.job_events.deliver_forever(self._listeners.notify))
            self._spawn(self._runner.watch_nodes(cluster.nodes))
        worker = "local" if cluster is None else cluster.node_id
        for index in range(self._settings.second_pass_workers):
            self._spawn(self._runner.work_forever(f"{worker}/{index}", self._make_second_pass()))
        self._spawn(sweep_forever(self.store, self.audio, self._settings.audio_retention_h))

    def native_work_running(self) -> bool:
        """After `close`: a second pass is still inside native code in its daemon thread. The
        process must then leave without finalising the interpreter under it (see app.serve)."""
        return self._runner.native_work_running()

    async def close(self) -> None:
        """Stop working: a running job goes back to the queue (Redis: another worker takes it
        now; embedded: it stays 'running' and is redone at the next start)."""
        pending = [task for task in self._tasks if task.get_name() == "live-ended"]
        await asyncio.gather(*pending, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._cluster is not None:
            await self._cluster.job_events.close()
        await asyncio.to_thread(self.store.close)

    async def open_recording(
        self,
        transcript_id: str,
        language: str | None,
        live_model: str,
        *,
        owner: str | None,
        audio_retention_h: float | None,
        audio_quota_mb: float | None,
    ) -> AudioRecording:
        """The transcript's row and its recording; raises QuotaExceeded, StorageFull or
        StorageUnavailable when they cannot be written."""
        await self.check_quota(owner, audio_quota_mb)
        try:
            recorder = await asyncio.to_thread(self.audio.record, transcript_id)
        except STORAGE_FAILURES as exc:
            raise storage_error(exc, "opening the stream's recording") from exc
        try:
            await asyncio.to_thread(
                self.store.create,
                transcript_id,
                language=language,
                live_model=live_model,
                audio_path=recorder.location,
                owner=owner,
                audio_retention_h=audio_retention_h,
                node=None if self._cluster is None else self._cluster.node_id,
            )
        except STORAGE_FAILURES as exc:
            await asyncio.to_thread(self._discard, recorder)  # no row would ever point to it
            raise storage_error(exc, "opening the stream's recording") from exc
        return recorder

    async def check_quota(self, owner: str | None, audio_quota_mb: float | None) -> None:
        """Raise QuotaExceeded when `owner`'s kept recordings take `audio_quota_mb` or more."""
        if audio_quota_mb is None:
            return
        try:
            used_mb = await asyncio.to_thread(self._audio_mb, owner)
        except STORAGE_FAILURES as exc:
            raise storage_error(exc, "checking the key's audio quota") from exc
        if used_mb >= audio_quota_mb:
            raise QuotaExceeded(
                f"the recordings this key keeps take {used_mb:.0f} MB, its quota of {audio_quota_mb:g} MB: "
                "delete transcripts, or wait for their audio to expire"
            )

    def _audio_mb(self, owner: str | None) -> float:
        return sum(self.audio.size_bytes(location) for location in self.store.audio_paths(owner)) / 2**20

    def _discard(self, recording: AudioRecording) -> None:
        recording.close()
        with contextlib.suppress(*STORAGE_FAILURES):
            self.audio.delete(recording.location)

    def check_storage(self) -> None:
        """Raises when the transcript store or the audio store cannot be used now (for /healthz)."""
        self.store.check()
        self.audio.check()

    def live_ended(self, end: LiveEnd, listener: JobListener | None) -> None:
        """Store v1 and queue the second pass (in a task); `listener` hears how the job goes.
        A stream that sent no audio is not kept: its row and recording are removed."""
        if end.duration_s == 0:
            self._spawn(self._discard_empty(end), name="live-ended")
            return
        if listener is not None:
            self.listen(end.transcript_id, listener)
        self._spawn(self._store_live(end), name="live-ended")

    def check_overrides(self, overrides: bytes) -> None:
        """Raises InvalidRequest / UnknownModel for overrides a client may not give."""
        check_overrides(self._settings, overrides)

    async def request(self, transcript_id: str, overrides: bytes) -> None:
        """Queue a re-run with these FinalizeSettings overrides (JSON object, see overrides.py)."""
        self.check_overrides(overrides)
        record = await asyncio.to_thread(self.store.get, transcript_id)
        if record is None:
            raise TranscriptNotFound(f"no transcript {transcript_id}")
        if record.audio_path is None:
            raise AudioNotRetained(f"the audio of {transcript_id} is no longer kept; it cannot be re-run")
        if record.state in ("live", "queued", "running"):
            raise TranscriptBusy(f"{transcript_id} is {record.state}; ask again once its second pass is done")
        kept = len(await asyncio.to_thread(self.store.versions, transcript_id))
        if kept >= self._settings.max_versions:
            raise VersionLimit(
                f"{transcript_id} has {kept} versions, as many as this server keeps; delete it and "
                "upload the file again to start over"
            )
        if not await self._runner.enqueue(transcript_id, overrides or b"{}"):
            raise TranscriptBusy(f"a second pass of {transcript_id} is already queued or running")

    def listen(self, transcript_id: str, listener: JobListener) -> None:
        self._listeners.listen(transcript_id, listener)

    def unlisten(self, transcript_id: str, listener: JobListener) -> None:
        self._listeners.unlisten(transcript_id, listener)

    async def delete(self, transcript_id: str) -> None:
        """The audio first: a disk that refuses to let it go leaves the transcript listed, so the
        delete can be retried, rather than a recording that nothing points to."""
        record = await asyncio.to_thread(self.store.get, transcript_id)
        if record is None:
            raise TranscriptNotFound(f"no transcript {transcript_id}")
        if record.audio_path:
            await asyncio.to_thread(self.audio.delete, record.audio_path)
        if await asyncio.to_thread(self.store.delete, transcript_id) is None:
            raise TranscriptNotFound(f"no transcript {transcript_id}")

    # ---- internals ------------------------------------------------------------------------------

    def _spawn(self, work: Any, name: str | None = None) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[Any]) -> None:
        """A task of this service ended: a failure is logged at once, never left to the collector."""
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s ended with %s", task.get_name(), type(error).__name__, exc_info=error)

    async def _discard_empty(self, end: LiveEnd) -> None:
        try:
            await asyncio.to_thread(end.recorder.close)
            await self.delete(end.transcript_id)
        except Exception:
            log.exception("removing the empty stream %s failed", end.transcript_id)

    async def _store_live(self, end: LiveEnd) -> None:
        try:
            first = first_version(
                end.transcript_id,
                end.finals,
                language=end.language,
                duration_s=end.duration_s,
                live_model=end.live_model,
                settings=apply_overrides(self._settings.finalize, end.finalize_overrides),
                warnings=list(end.warnings),
            )
            await asyncio.to_thread(end.recorder.close)
            await asyncio.to_thread(self.store.add_version, first)
            if self._settings.finalize.enabled:
                if not await self._runner.enqueue(end.transcript_id, end.finalize_overrides):
                    # recovered meanwhile, as if its node had died (its lease lapsed)
                    log.warning("the second pass of %s was queued already by its recovery", end.transcript_id)
            else:
                await asyncio.to_thread(self.store.end_job, end.transcript_id, None, None)
                await sweep_expired_audio(self.store, self.audio, self._settings.audio_retention_h)
                self._listeners.notify(end.transcript_id, JobDone(1))
        except Exception as exc:  # e.g. deleted while it streamed
            log.exception("storing the live transcript %s failed", end.transcript_id)
            self._listeners.notify(
                end.transcript_id, JobFailed(f"storing the live transcript failed ({client_reason(exc)})")
            )
