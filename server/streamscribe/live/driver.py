"""Async glue around a LiveSession: feeds it with backpressure, records what it takes, lets the
scheduler decode for it, and hands its events out in order. Used by every transport and by
in-process transcription."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import numpy as np

from ..asr.engine import AsrWord
from ..audio import SAMPLE_RATE, Samples
from ..config import StreamSettings
from ..errors import StorageFailed, StreamscribeError
from ..store.handover import AudioSink, JobDone, JobEvent, JobProgress
from ..stream.session import FEED_SLICE_SAMPLES, DecodeRequest, LiveSession
from ..vad import SpeechGate, VoiceDetector
from ..wire import Final, ServerMessage
from .meter import SessionMeter
from .pace import AudioPace
from .scheduler import DecodeScheduler

log = logging.getLogger(__name__)


class SessionDriver:
    """Feed it (`feed_audio`, `finalize`, `stop`, `fail`) and iterate `events()` until closed.

    With a recorder, the audio the session takes is written to it (off the event loop). Once the
    last final is out and that audio is written, `on_live_finished` is called once with the
    driver: the owner hands the stream over there and passes how the second pass goes back
    through `receive_job_event`.
    """

    def __init__(
        self,
        session: LiveSession,
        scheduler: DecodeScheduler,
        *,
        recorder: AudioSink | None = None,
        on_live_finished: Callable[[SessionDriver], None] | None = None,
        background: bool = False,
        pace: AudioPace | None = None,
        meter: SessionMeter | None = None,
    ) -> None:
        self.session = session
        self._pace = pace
        self._meter = meter
        self.recorder = recorder
        self.background = background
        """Decoded only when no foreground (live) session is waiting: a file replayed at max speed."""
        self._scheduler = scheduler
        self._on_live_finished = on_live_finished
        self._handed_over = False
        self.last_progress_s = time.monotonic()
        """When the session last took audio, had a decode, or changed state (monotonic clock)."""
        self._unrecorded: list[Samples] = []
        """Audio the session took that is not written yet: the hand-over waits for it."""
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
        transcript_id: str | None = None,
        prompt: str | None = None,
        file_total_s: float | None = None,
        replays_file: bool = False,
        recorder: AudioSink | None = None,
        on_live_finished: Callable[[SessionDriver], None] | None = None,
        background: bool = False,
        pace: AudioPace | None = None,
        meter: SessionMeter | None = None,
    ) -> SessionDriver:
        """A new session with its own VAD state; its `ready` event is already queued. With a
        `transcript_id`, `closed` waits for the stored transcript (see `receive_job_event`); a
        file replay (`replays_file`) reports `progress` against `file_total_s`. With a `pace`,
        audio is taken no faster than it allows; with a `meter`, what it takes and sends is counted."""
        gate = SpeechGate(
            threshold=settings.vad_threshold,
            release=settings.vad_release,
            min_silence_samples=settings.min_silence_ms * SAMPLE_RATE // 1000,
            pad_samples=settings.speech_pad_ms * SAMPLE_RATE // 1000,
        )
        session = LiveSession(
            session_id=session_id or uuid.uuid4().hex,
            settings=settings,
            detector=VoiceDetector(gate),
            model_name=scheduler.engine.name,
            input_sample_rate=input_sample_rate,
            language=language,
            transcript_id=transcript_id,
            prompt=prompt,
            progress_total_s=file_total_s,
            reports_progress=replays_file,
        )
        return cls(
            session,
            scheduler,
            recorder=recorder,
            on_live_finished=on_live_finished,
            background=background,
            pace=pace,
            meter=meter,
        )

    async def feed_audio(self, samples: Samples) -> None:
        """Feed converted audio; waits (so the caller stops reading) while decoding lags behind
        or the pace says so. Speech is detected off the event loop. What the session takes is
        recorded before this returns, and before any wait."""
        arrived_s = time.monotonic()
        try:
            for offset in range(0, samples.size, FEED_SLICE_SAMPLES):
                piece = samples[offset : offset + FEED_SLICE_SAMPLES]
                await self._keep_pace(piece.size / SAMPLE_RATE)
                while not self.session.can_accept_audio() and not self.session.ended:
                    if self._unrecorded:
                        await self._record()
                        continue  # the session may have moved on during the write
                    await self._changed.wait()
                if self.session.ended:
                    return
                speech = await asyncio.to_thread(self.session.detect_speech, piece)
                before = self.session.received_samples
                self.session.receive_audio(piece, speech)
                if self.recorder is not None and self.session.received_samples > before:
                    self._unrecorded.append(piece)
                if self._meter is not None and self.session.received_samples > before:
                    self._meter.took_audio(self.session.received_samples, arrived_s)
                self._touch()
        finally:
            await self._record()

    async def _keep_pace(self, audio_s: float) -> None:
        if self._pace is not None and (wait_s := self._pace.delay_s(audio_s, time.monotonic())) > 0:
            await self._record()
            await asyncio.sleep(wait_s)

    @property
    def speech_start_s(self) -> float | None:
        """Where the speech going on started (its `speech_started` at), or None in silence."""
        return self.session.speech_start_s

    def finalize(self) -> None:
        self.session.receive_finalize()
        self._touch()

    def cut(self) -> float | None:
        """End the utterance here (see LiveSession.receive_cut); returns the `at` of the
        `utterance_end` after which everything heard before the cut has been sent."""
        end_s = self.session.receive_cut()
        self._touch()
        return end_s

    def keep_waiting(self) -> None:
        """Its client is connected but quiet (an OpenAI Realtime client between turns): a session
        with nothing to decode until more audio comes is waiting, not stalled (SessionHost.stalled
        still counts one whose decodes make no progress)."""
        if self.session.waiting_for_audio:
            self.last_progress_s = time.monotonic()

    def update_decoding(self, language: str | None, prompt: str | None) -> None:
        """Decode with this (checked) language and prompt from now on."""
        self.session.receive_decode_settings(language, prompt)

    def stop(self, wait_for_transcript: bool = True) -> None:
        self.session.receive_stop(wait_for_transcript)
        self._touch()

    def disconnect(self) -> None:
        """The client went away without `stop`: flush and keep what it sent, marked as cut."""
        self.session.receive_disconnect()
        self._touch()

    def fail(self, error: StreamscribeError, wait_for_transcript: bool = False) -> None:
        """Bad input: report it, then stop cleanly (what was heard is still flushed)."""
        self.session.receive_error(error.code, error.message, wait_for_transcript)
        self._touch()

    def receive_job_event(self, event: JobEvent) -> None:
        """How the second pass of this stream goes (from the keeper it was handed over to)."""
        if isinstance(event, JobProgress):
            self.session.receive_transcript_progress(event.progress)
        elif isinstance(event, JobDone):
            self.session.receive_transcript_ready(event.version)
        else:
            self.session.receive_transcript_failed(event.message)
        self._touch()

    async def events(self) -> AsyncIterator[ServerMessage]:
        """Every event in order, ending after `closed`."""
        while True:
            changed = self._changed
            batch = self.session.events_to_send()
            for event in batch:
                if isinstance(event, Final) and self._meter is not None:
                    self._meter.sent_final(event.words, time.monotonic())
                yield event
            if batch:
                continue  # more may have come while the consumer handled these
            if self.session.closed:
                return
            await changed.wait()

    async def wait_closed(self) -> None:
        while not self.session.closed:
            await self._changed.wait()

    # ---- the scheduler's side (DecodeClient) -----------------------------------------------------

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

    # ---- internals ------------------------------------------------------------------------------

    def _wake(self) -> None:
        """Wake everyone waiting on this session; hand it over once its live part is done and
        the audio it took is recorded."""
        self.last_progress_s = time.monotonic()
        if self.session.live_finished and not self._handed_over and not self._unrecorded:
            self._handed_over = True
            if self._on_live_finished is not None:
                self._on_live_finished(self)
        self._changed.set()
        self._changed = asyncio.Event()

    async def _record(self) -> None:
        """Write the audio taken since the last write, off the event loop (one write per call)."""
        if self.recorder is None or not self._unrecorded:
            return
        audio = np.concatenate(self._unrecorded)
        try:
            await asyncio.to_thread(self.recorder.write, audio)
        except OSError as exc:  # a full disk ends the stream; the words sent so far stay valid
            log.error("recording session %s failed: %s", self.session.session_id, exc)
            reason = exc.strerror or type(exc).__name__
            self.fail(StorageFailed(f"the server could not record the stream ({reason}); it was ended"))
        finally:
            self._unrecorded = []
            self._wake()

    def _touch(self) -> None:
        """Wake the waiters and let the scheduler look for work."""
        self._wake()
        if self.session.closed:
            self._scheduler.forget(self)
        else:
            self._scheduler.poke(self)
