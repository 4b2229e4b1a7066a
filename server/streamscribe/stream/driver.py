"""Async glue around a LiveSession: feeds it with backpressure, lets the scheduler decode for it,
and hands its events out in order. Used by every transport and by in-process transcription.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..asr.engine import AsrWord
from ..audio import SAMPLE_RATE, Samples
from ..config import StreamSettings
from ..errors import StreamscribeError
from ..vad import SpeechGate, VoiceDetector
from ..wire import ServerMessage
from .session import FEED_SLICE_SAMPLES, DecodeRequest, LiveSession

if TYPE_CHECKING:
    from ..scheduler import DecodeScheduler


class SessionDriver:
    """Feed it (`feed_audio`, `finalize`, `stop`, `fail`) and iterate `events()` until closed."""

    def __init__(self, session: LiveSession, scheduler: DecodeScheduler) -> None:
        self.session = session
        self._scheduler = scheduler
        self._changed = asyncio.Event()

    @classmethod
    def open(
        cls,
        scheduler: DecodeScheduler,
        settings: StreamSettings,
        *,
        language: str | None,
        input_sample_rate: int = SAMPLE_RATE,
    ) -> SessionDriver:
        """A new session with its own VAD state; its `ready` event is already queued."""
        gate = SpeechGate(
            threshold=settings.vad_threshold,
            release=settings.vad_release,
            min_silence_samples=settings.min_silence_ms * SAMPLE_RATE // 1000,
            pad_samples=settings.speech_pad_ms * SAMPLE_RATE // 1000,
        )
        session = LiveSession(
            session_id=uuid.uuid4().hex,
            settings=settings,
            detector=VoiceDetector(gate),
            model_name=scheduler.engine.name,
            input_sample_rate=input_sample_rate,
            language=language,
        )
        return cls(session, scheduler)

    async def feed_audio(self, samples: Samples) -> None:
        """Feed converted audio; waits (so the caller stops reading) while decoding lags behind."""
        for offset in range(0, samples.size, FEED_SLICE_SAMPLES):
            while not self.session.can_accept_audio() and not self.session.ended:
                await self._changed.wait()
            if self.session.ended:
                return
            self.session.receive_audio(samples[offset : offset + FEED_SLICE_SAMPLES])
            self._touch()

    def finalize(self) -> None:
        self.session.receive_finalize()
        self._touch()

    def stop(self) -> None:
        self.session.receive_stop()
        self._touch()

    def fail(self, error: StreamscribeError) -> None:
        """Bad input: report it, then stop cleanly (what was heard is still flushed)."""
        self.session.receive_error(error.code, error.message)
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
        """Wake everyone waiting on this session."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _touch(self) -> None:
        """Wake the waiters and let the scheduler look for work."""
        self._wake()
        if self.session.closed:
            self._scheduler.forget(self)
        else:
            self._scheduler.poke(self)
