"""The second pass as the server sees it: records each stream, stores v1 when it ends, queues its
job, re-runs on request, deletes; behind it the job runner (jobs.py), the override checks
(overrides.py) and the retention sweep (retention.py).

The queue lives in the store, so a restart (or a crash mid-job) loses nothing: v1 is stored
before the job is queued, and a job that was running is queued again at the next start.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
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
from ..store.base import JobQueue, TranscriptStore
from ..store.failures import STORAGE_FAILURES, ensure_room, storage_error
from ..store.handover import JobDone, JobFailed, JobListener, LiveEnd
from ..store.recording import AudioRecorder
from .jobs import JobListeners, JobRunner
from .overrides import apply_overrides, check_overrides
from .pipeline import SecondPass, first_version
from .retention import sweep_expired_audio, sweep_forever

log = logging.getLogger(__name__)


class FinalizeService:
    """`start()` in the running loop; `open_recording` per stream, `live_ended` at its end (the
    TranscriptKeeper of live sessions), `request` for a re-run, `listen` for job events; `close()`
    at shutdown."""

    def __init__(
        self, store: TranscriptStore, jobs: JobQueue, settings: ServerSettings, second_pass: SecondPass
    ) -> None:
        self.store = store
        self._jobs = jobs
        self._settings = settings
        self._listeners = JobListeners()
        self._runner = JobRunner(store, jobs, settings, second_pass, self._listeners)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        await asyncio.to_thread((self._settings.data_dir / "audio").mkdir, exist_ok=True)
        await self._runner.recover()
        self._spawn(self._runner.work_forever())
        self._spawn(sweep_forever(self.store, self._settings.audio_retention_h))

    def native_work_running(self) -> bool:
        """After `close`: a second pass is still inside native code in its daemon thread. The
        process must then leave without finalising the interpreter under it (see app.serve)."""
        return self._runner.native_work_running()

    async def close(self) -> None:
        """Stop working; a running job stays 'running' in the store and is redone at the next start."""
        pending = [task for task in self._tasks if task.get_name() == "live-ended"]
        await asyncio.gather(*pending, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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
    ) -> AudioRecorder:
        """The transcript's row and its recorder; raises QuotaExceeded, StorageFull or
        StorageUnavailable when they cannot be written."""
        path = self._settings.data_dir / "audio" / f"{transcript_id}.wav"
        await self.check_quota(owner, audio_quota_mb)
        try:
            await asyncio.to_thread(ensure_room, self._settings.data_dir, self._settings.min_free_disk_mb)
            recorder = await asyncio.to_thread(AudioRecorder, path)
            await asyncio.to_thread(
                self.store.create,
                transcript_id,
                language=language,
                live_model=live_model,
                audio_path=str(path),
                owner=owner,
                audio_retention_h=audio_retention_h,
            )
        except STORAGE_FAILURES as exc:
            raise storage_error(exc, "opening the stream's recording") from exc
        return recorder

    async def check_quota(self, owner: str | None, audio_quota_mb: float | None) -> None:
        """Raise QuotaExceeded when `owner`'s kept recordings take `audio_quota_mb` or more."""
        if audio_quota_mb is None:
            return
        used_mb = await asyncio.to_thread(self._audio_mb, owner)
        if used_mb >= audio_quota_mb:
            raise QuotaExceeded(
                f"the recordings this key keeps take {used_mb:.0f} MB, its quota of {audio_quota_mb:g} MB: "
                "delete transcripts, or wait for their audio to expire"
            )

    def _audio_mb(self, owner: str | None) -> float:
        return sum(_size(Path(path)) for path in self.store.audio_paths(owner)) / 2**20

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
        if not await asyncio.to_thread(self._jobs.enqueue, transcript_id, overrides or b"{}"):
            raise TranscriptBusy(f"a second pass of {transcript_id} is already queued or running")
        self._runner.wake()

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
            await asyncio.to_thread(Path(record.audio_path).unlink, missing_ok=True)
        if await asyncio.to_thread(self.store.delete, transcript_id) is None:
            raise TranscriptNotFound(f"no transcript {transcript_id}")

    # ---- internals ------------------------------------------------------------------------------

    def _spawn(self, work: Any, name: str | None = None) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                await asyncio.to_thread(self._jobs.enqueue, end.transcript_id, end.finalize_overrides)
                self._runner.wake()
            else:
                await asyncio.to_thread(self._jobs.finish_job, end.transcript_id, None)
                await sweep_expired_audio(self.store, self._settings.audio_retention_h)
                self._listeners.notify(end.transcript_id, JobDone(1))
        except Exception as exc:  # e.g. deleted while it streamed
            log.exception("storing the live transcript %s failed", end.transcript_id)
            self._listeners.notify(
                end.transcript_id, JobFailed(f"storing the live transcript failed ({client_reason(exc)})")
            )


def _size(path: Path) -> int:
    """Bytes of a recording; 0 for one deleted meanwhile."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
