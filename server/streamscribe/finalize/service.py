"""Runs second passes for the server: records each stream, stores v1 when it ends, queues the job
and works the queue one job at a time in a daemon thread, off the event loop.

The queue lives in the store, so a restart (or a crash mid-job) loses nothing: v1 is stored
before the job is queued, and a job that was running is queued again at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..asr.models import EMBEDDED
from ..config import FinalizeSettings, ServerSettings
from ..errors import AudioNotRetained, InvalidRequest, TranscriptBusy, TranscriptNotFound, UnknownModel
from ..store.base import TranscriptStore
from ..store.recording import AudioRecorder, read_recording, recording_duration_s
from ..transcript import Transcript
from ..wire import Word
from .pipeline import SecondPass, first_version

log = logging.getLogger(__name__)

OPERATOR_ONLY_SETTINGS = frozenset(
    {"enabled", "pyannote_checkpoint", "rewrite_url", "rewrite_model", "rewrite_timeout_s"}
)
"""Not accepted from POST .../finalize: a checkpoint path is code the server would load, and a
URL is a place the server would send the transcript."""
_PROGRESS_STEP = 0.05
_RETENTION_SWEEP_S = 600.0
ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class JobProgress:
    progress: float


@dataclass(frozen=True, slots=True)
class JobDone:
    version: int


@dataclass(frozen=True, slots=True)
class JobFailed:
    message: str


JobEvent = JobProgress | JobDone | JobFailed
Listener = Callable[[JobEvent], None]


@dataclass(frozen=True, slots=True)
class LiveEnd:
    """What a live session hands over when its last final has been sent."""

    transcript_id: str
    finals: list[Word]
    language: str | None
    duration_s: float
    live_model: str
    recorder: AudioRecorder
    finalize_overrides: bytes = b"{}"
    """FinalizeSettings fields (JSON) the stream asked for; already checked by `check_overrides`."""


class FinalizeService:
    """`start()` in the running loop; `open_recording` per stream, `live_ended` at its end,
    `request` for a re-run; `listen` for job events; `close()` at shutdown."""

    def __init__(self, store: TranscriptStore, settings: ServerSettings, second_pass: SecondPass) -> None:
        self.store = store
        self._settings = settings
        self._second_pass = second_pass
        self._listeners: dict[str, list[Listener]] = {}
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def defaults(self) -> FinalizeSettings:
        return self._settings.finalize

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for transcript_id in await asyncio.to_thread(self.store.recover):
            log.warning("stream %s was cut off by a restart; its second pass is queued", transcript_id)
            await self._store_missing_first_version(transcript_id)
        self._spawn(self._work())
        self._spawn(self._sweep_audio_forever())

    async def close(self) -> None:
        """Stop working; a running job stays 'running' in the store and is redone at the next start."""
        pending = [task for task in self._tasks if task.get_name() == "live-ended"]
        await asyncio.gather(*pending, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.store.close)

    async def open_recording(
        self, transcript_id: str, language: str | None, live_model: str
    ) -> AudioRecorder:
        path = self._settings.data_dir / "audio" / f"{transcript_id}.wav"
        recorder = await asyncio.to_thread(AudioRecorder, path)
        await asyncio.to_thread(self.store.create, transcript_id, language, live_model, str(path))
        return recorder

    def live_ended(self, end: LiveEnd, listener: Listener | None) -> None:
        """Store v1 and queue the second pass (in a task); `listener` hears how the job goes."""
        if listener is not None:
            self.listen(end.transcript_id, listener)
        self._spawn(self._store_live(end), name="live-ended")

    async def request(self, transcript_id: str, overrides: bytes) -> None:
        """Queue a re-run with these FinalizeSettings overrides (JSON object, see `check_overrides`)."""
        self.check_overrides(overrides)
        record = await asyncio.to_thread(self.store.get, transcript_id)
        if record is None:
            raise TranscriptNotFound(f"no transcript {transcript_id}")
        if record.audio_path is None:
            raise AudioNotRetained(f"the audio of {transcript_id} is no longer kept; it cannot be re-run")
        if record.state in ("live", "queued", "running"):
            raise TranscriptBusy(f"{transcript_id} is {record.state}; ask again once its second pass is done")
        if not await asyncio.to_thread(self.store.enqueue, transcript_id, overrides or b"{}"):
            raise TranscriptBusy(f"a second pass of {transcript_id} is already queued or running")
        self._wakeup.set()

    def check_overrides(self, overrides: bytes) -> FinalizeSettings:
        """A client's FinalizeSettings overrides, checked: settings that name files or endpoints on
        the server's side are the operator's, and a model must be one the server offers."""
        try:
            settings = self.settings_for(overrides)
            fields = set(msgspec.json.decode(overrides or b"{}", type=dict[str, Any]))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidRequest(f"bad finalize settings: {exc}") from exc
        if fields & OPERATOR_ONLY_SETTINGS:
            names = ", ".join(sorted(fields & OPERATOR_ONLY_SETTINGS))
            raise InvalidRequest(f"{names} can only be set by the server's operator")
        offered = self.offered_models
        if "model" in fields and settings.model not in offered:
            raise UnknownModel(
                f"model {settings.model!r} is not offered here; choose one of {', '.join(offered)}"
            )
        return settings

    @property
    def offered_models(self) -> tuple[str, ...]:
        """Second-pass models a client may ask for: embedded, the server's own, and allowed ones."""
        names = (*EMBEDDED, self._settings.model, self.defaults.model, *self._settings.allowed_models)
        return tuple(dict.fromkeys(names))

    def settings_for(self, overrides: bytes | None) -> FinalizeSettings:
        """The server defaults with a job's overrides applied; raises on unknown or bad fields."""
        values = msgspec.structs.asdict(self.defaults)
        values.update(msgspec.json.decode(overrides or b"{}", type=dict[str, Any]))
        return msgspec.convert(values, FinalizeSettings)

    def listen(self, transcript_id: str, listener: Listener) -> None:
        self._listeners.setdefault(transcript_id, []).append(listener)

    def unlisten(self, transcript_id: str, listener: Listener) -> None:
        listeners = self._listeners.get(transcript_id, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._listeners.pop(transcript_id, None)

    async def delete(self, transcript_id: str) -> None:
        record = await asyncio.to_thread(self.store.delete, transcript_id)
        if record is None:
            raise TranscriptNotFound(f"no transcript {transcript_id}")
        if record.audio_path:
            await asyncio.to_thread(Path(record.audio_path).unlink, missing_ok=True)

    # ---- internals ------------------------------------------------------------------------------

    def _spawn(self, work: Any, name: str | None = None) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self, transcript_id: str, event: JobEvent) -> None:
        for listener in list(self._listeners.get(transcript_id, [])):
            listener(event)
        if not isinstance(event, JobProgress):
            self._listeners.pop(transcript_id, None)

    async def _store_live(self, end: LiveEnd) -> None:
        end.recorder.close()
        first = first_version(
            end.transcript_id,
            end.finals,
            language=end.language,
            duration_s=end.duration_s,
            live_model=end.live_model,
            settings=self.settings_for(end.finalize_overrides),
        )
        try:
            await asyncio.to_thread(self.store.add_version, first)
            if self.defaults.enabled:
                await asyncio.to_thread(self.store.enqueue, end.transcript_id, end.finalize_overrides)
                self._wakeup.set()
            else:
                await asyncio.to_thread(self.store.finish_job, end.transcript_id, None)
                self._notify(end.transcript_id, JobDone(1))
        except Exception as exc:  # e.g. deleted while it streamed
            log.exception("storing the live transcript %s failed", end.transcript_id)
            self._notify(end.transcript_id, JobFailed(f"storing the live transcript failed: {exc}"))

    async def _store_missing_first_version(self, transcript_id: str) -> None:
        """A stream cut off by a crash has audio but no v1: store an empty one that says so."""
        record = await asyncio.to_thread(self.store.get, transcript_id)
        if record is None or await asyncio.to_thread(self.store.version, transcript_id, 1) is not None:
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
            settings=self.defaults,
            warnings=["the server stopped during the live stream; its live words were not kept"],
        )
        await asyncio.to_thread(self.store.add_version, first)

    async def _work(self) -> None:
        while True:
            job = await asyncio.to_thread(self.store.claim_next_job)
            if job is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            error: str | None = None
            try:
                stored = await self._run_job(job.id, job.audio_path, job.job_settings)
            except Exception as exc:  # the job fails; the versions already stored stay
                log.exception("second pass of %s failed", job.id)
                error = f"{type(exc).__name__}: {exc}"
            await asyncio.to_thread(self.store.finish_job, job.id, error)
            await self._sweep_audio()  # before announcing: with retention 0 the audio is gone by then
            self._notify(job.id, JobFailed(error) if error else JobDone(stored.version))

    async def _run_job(
        self, transcript_id: str, audio_path: str | None, overrides: bytes | None
    ) -> Transcript:
        if audio_path is None:
            raise AudioNotRetained("the audio is no longer kept")
        settings = self.settings_for(overrides)
        parent = await asyncio.to_thread(self.store.version, transcript_id)
        if parent is None:
            raise TranscriptNotFound(f"no version of {transcript_id} to start from")
        self._notify(transcript_id, JobProgress(0.0))
        audio = await asyncio.to_thread(read_recording, Path(audio_path))
        progress = _ThrottledProgress(
            self._loop_or_raise(), lambda p: self._notify(transcript_id, JobProgress(p))
        )
        result = await _in_daemon_thread(self._second_pass.run, audio, parent, settings, progress)
        return await asyncio.to_thread(self.store.add_version, result)

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("FinalizeService.start() was not called")
        return self._loop

    async def _sweep_audio_forever(self) -> None:
        while True:
            await self._sweep_audio()
            await asyncio.sleep(_RETENTION_SWEEP_S)

    async def _sweep_audio(self) -> None:
        retention_s = self._settings.audio_retention_h * 3600
        if math.isinf(retention_s):
            return
        for record in await asyncio.to_thread(self.store.audio_expired, time.time() - retention_s):
            if record.audio_path:
                await asyncio.to_thread(Path(record.audio_path).unlink, missing_ok=True)
            await asyncio.to_thread(self.store.forget_audio, record.id)


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


async def _in_daemon_thread(function: Callable[..., ResultT], *args: Any) -> ResultT:
    """Run in a daemon thread, so a long job never holds up the process exit (it is redone later)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ResultT] = loop.create_future()

    def settle(result: ResultT | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = function(*args)
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name="finalize", daemon=True).start()
    return await future
