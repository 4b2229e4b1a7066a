"""Async glue around a LiveSession: feeds it with backpressure, lets the scheduler decode for it,
and hands its events out in order. Used by every transport and by in-process transcription.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..asr.engine import AsrWord
from ..audio import SAMPLE_RATE, Samples
from ..config import StreamSettings
from ..errors import StreamscribeError
from ..finalize.service import FinalizeService, JobDone, JobEvent, JobProgress, LiveEnd
from ..store.recording import AudioRecorder
from ..vad import SpeechGate, VoiceDetector
from ..wire import ServerMessage
from .session import FEED_SLICE_SAMPLES, DecodeRequest, LiveSession

if TYPE_CHECKING:
    from ..scheduler import DecodeScheduler


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """A file replayed into a session: its length (if known), the second-pass settings it asked
    for (FinalizeSettings fields as JSON) and whether it yields the decoder to live sessions."""

    total_s: float | None
    finalize_overrides: bytes = b"{}"
    background: bool = False


class SessionDriver:
    """Feed it (`feed_audio`, `finalize`, `stop`, `fail`) and iterate `events()` until closed.

    With a FinalizeService the stream's audio is recorded, and once its last final is out the
    session is handed over for the second pass; `closed` then waits for the new version.
    """

    def __init__(
        self,
        session: LiveSession,
        scheduler: DecodeScheduler,
        finalizer: FinalizeService | None = None,
        recorder: AudioRecorder | None = None,
        replay: ReplayOptions | None = None,
    ) -> None:
        self.session = session
        self.background = replay is not None and replay.background
        """Decoded only when no foreground (live) session is waiting: a file replayed at max speed."""
        self._finalize_overrides = replay.finalize_overrides if replay else b"{}"
        self._scheduler = scheduler
        self._finalizer = finalizer
        self._recorder = recorder
        self._handed_over = False
        self._changed = asyncio.Event()

    @classmethod
    def open(
        cls,
        scheduler: DecodeScheduler,
        settings: StreamSettings,
        *,
        language: str | None,
        input_sample_rate: int = SAMPLE_RATE,
        session_id: str | None = None,
        finalizer: FinalizeService | None = None,
        recorder: AudioRecorder | None = None,
        prompt: str | None = None,
        replay: ReplayOptions | None = None,
    ) -> SessionDriver:
        """A new session with its own VAD state; its `ready` event is already queued.
        Pass a finalizer and the recorder it opened to keep the transcript (its id is session_id);
        `replay` for a file replayed into the session."""
        gate = SpeechGate(
            threshold=settings.vad_threshold,
            release=settings.vad_release,
            min_silence_samples=settings.min_silence_ms * SAMPLE_RATE // 1000,
            pad_samples=settings.speech_pad_ms * SAMPLE_RATE // 1000,
        )
        session_id = session_id or uuid.uuid4().hex
        session = LiveSession(
            session_id=session_id,
            settings=settings,
            detector=VoiceDetector(gate),
            model_name=scheduler.engine.name,
            input_sample_rate=input_sample_rate,
            language=language,
            transcript_id=session_id if finalizer is not None else None,
            prompt=prompt,
            progress_total_s=replay.total_s if replay else None,
            reports_progress=replay is not None,
        )
        return cls(session, scheduler, finalizer, recorder, replay)

    async def feed_audio(self, samples: Samples) -> None:
        """Feed converted audio; waits (so the caller stops reading) while decoding lags behind."""
        for offset in range(0, samples.size, FEED_SLICE_SAMPLES):
            while not self.session.can_accept_audio() and not self.session.ended:
                await self._changed.wait()
            if self.session.ended:
                return
            piece = samples[offset : offset + FEED_SLICE_SAMPLES]
            before = self.session.received_samples
            self.session.receive_audio(piece)
            if self._recorder is not None and self.session.received_samples > before:
                self._recorder.write(piece)
            self._touch()

    def finalize(self) -> None:
        self.session.receive_finalize()
        self._touch()

    def stop(self, wait_for_transcript: bool = True) -> None:
        self.session.receive_stop(wait_for_transcript)
        self._touch()

    def fail(self, error: StreamscribeError, wait_for_transcript: bool = False) -> None:
        """Bad input: report it, then stop cleanly (what was heard is still flushed)."""
        self.session.receive_error(error.code, error.message, wait_for_transcript)
        self._touch()

    async def events(self) -> AsyncIterator[ServerMessage]:
        """Every event in order, ending after `closed`."""
        while True:
            changed = self._changed
            for event in self.session.events_to_send():
                yield event
            if self.session.closed:
                return
            await changed.wait()

    async def wait_closed(self) -> None:
        while not self.session.closed:
            await self._changed.wait()

    def take_decode_request(self) -> DecodeRequest | None:
        request = self.session.take_decode_request()
        self._wake()  # taking a request may itself commit a short tail or close the session
        return request

    def deliver_result(self, request: DecodeRequest, words: list[AsrWord]) -> None:
        self.session.receive_decode_result(request, words)
        self._touch()

    def deliver_error(self, reason: str) -> None:
        """Decoding failed for this session: it ends with an error; sent finals stay valid."""
        self.session.receive_decode_error(reason)
        self._touch()

    def _wake(self) -> None:
        """Wake everyone waiting on this session; hand it over once its live part is done."""
        if self.session.live_finished and not self._handed_over:
            self._hand_over()
        self._changed.set()
        self._changed = asyncio.Event()

    def _hand_over(self) -> None:
        self._handed_over = True
        if self._finalizer is None or self._recorder is None:
            return
        self._finalizer.live_ended(
            LiveEnd(
                transcript_id=self.session.session_id,
                finals=self.session.finals,
                language=self.session.language,
                duration_s=self.session.received_samples / SAMPLE_RATE,
                live_model=self._scheduler.engine.name,
                recorder=self._recorder,
                finalize_overrides=self._finalize_overrides,
            ),
            self._on_job_event,
        )

    def _on_job_event(self, event: JobEvent) -> None:
        if isinstance(event, JobProgress):
            self.session.receive_transcript_progress(event.progress)
        elif isinstance(event, JobDone):
            self.session.receive_transcript_ready(event.version)
        else:
            self.session.receive_transcript_failed(event.message)
        self._touch()

    def _touch(self) -> None:
        """Wake the waiters and let the scheduler look for work."""
        self._wake()
        if self.session.closed:
            self._scheduler.forget(self)
        else:
            self._scheduler.poke(self)
