"""The one path a session takes, whatever its transport: admission, its recording, its driver and
event stream, the pump that carries its events, and its release; and the drain at shutdown.

A transport calls `admit`, then `open` once it knows the stream's options (or both at once:
`open_new`), sets the slot's `attachment` (where its events go), then `run` (which returns after
`closed` and releases the slot). A slot whose session is never run is `release`d by the
transport. `drain` ends every session at shutdown, keeping what was heard.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from ..audio import SAMPLE_RATE
from ..config import ServerSettings, StreamSettings
from ..errors import Overloaded, ShuttingDown, SlowConsumer, UnsupportedLanguage
from ..languages import check_language
from ..metrics import Metrics
from ..store.backends import node_name
from ..store.base import ApiKey, EventBus, EventStream
from ..store.handover import LiveEnd, TranscriptKeeper
from ..transcript import stream_cut_warning
from ..wire import ServerMessage
from .driver import SessionDriver
from .meter import SessionMeter
from .pace import AudioPace
from .resume import Attachment, Resumable, Resumptions
from .scheduler import DecodeScheduler

_RETRY_AFTER_S = 10
"""What a live stream refused for load is told: the load measure looks back 20 s."""

log = logging.getLogger(__name__)


Transport = Literal["websocket", "webrtc", "upload", "deepgram", "openai-realtime"]
"""How a session came: the native WebSocket, WebRTC, a replayed upload, Deepgram's /v1/listen, or
OpenAI's Realtime transcription."""


@dataclass(slots=True, eq=False)
class Slot:
    """One admitted session, counted against the limits from admission until release."""

    session_id: str
    transport: Transport
    caller: ApiKey | None = None
    """The key that opened it (None on a server that checks no keys): its transcript's owner."""
    driver: SessionDriver | None = None
    events: EventStream | None = None
    attachment: Attachment | None = None
    """The connection its events go to (None while its client is away, or for none)."""
    resumable: Resumable | None = None
    """Set where its client may come back after a dropped connection (Resumptions.offer)."""
    released: bool = False
    """Released: its session closed after its last event was pumped, or it never opened."""

    @property
    def replays_file(self) -> bool:
        return self.transport == "upload"

    @property
    def owner(self) -> str | None:
        return None if self.caller is None else self.caller.name


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    """What a transport learned from its client before the session opens."""

    language: str | None
    stream: StreamSettings
    input_sample_rate: int = SAMPLE_RATE
    prompt: str | None = None
    finalize_overrides: bytes = b"{}"
    """FinalizeSettings fields (JSON) for this stream's second pass; checked by the caller."""
    file_total_s: float | None = None
    """A replayed file's declared length (None if it declares none)."""
    background: bool = False
    """Decode only when no live session waits (a file replayed at max speed)."""
    audio_retention_h: float | None = None
    """How long the client wants its audio kept (it can only shorten its key's or the server's)."""


@dataclass(slots=True)
class SessionHost:
    """Admission and the life of every session on this server (see the module for the order of
    calls); `drain` at shutdown."""

    settings: ServerSettings
    scheduler: DecodeScheduler
    event_bus: EventBus
    keeper: TranscriptKeeper
    slots: set[Slot] = field(default_factory=set)
    draining: bool = False
    metrics: Metrics = field(default_factory=Metrics)
    """Where its sessions count their audio, final words and lags, and the outcome of uploads."""
    resumptions: Resumptions = field(init=False)

    def __post_init__(self) -> None:
        node = node_name(self.settings) if self.settings.redis_url else None
        # Half an outbox of missed events at most: the comeback's outbox takes them and new ones.
        replayable = max(1, self.settings.outbox_max_messages // 2)
        self.resumptions = Resumptions(self.settings.resume_window_s, replayable, node)

    def live_language(self, requested: str | None) -> str | None:
        """The language a session asks for (or the server's default), if the live model serves it."""
        engine = self.scheduler.engine
        language = requested or self.settings.stream.language
        try:
            check_language(language)
        except ValueError as exc:
            raise UnsupportedLanguage(str(exc)) from exc
        if not engine.multilingual and language not in (None, "en"):
            raise UnsupportedLanguage(
                f"the live model {engine.name!r} is English-only; language {language!r} is not served "
                "(start the server with a multilingual --model)"
            )
        return language

    def admit(self, transport: Transport, caller: ApiKey | None) -> Slot:
        """Count a new session of `caller` in (its id is made here), or raise ShuttingDown /
        Overloaded (the server's limits, then the key's)."""
        if self.draining:
            raise ShuttingDown("the server is shutting down")
        if len(self.slots) >= self.settings.max_sessions:
            raise Overloaded(f"all {self.settings.max_sessions} sessions are in use; retry later")
        if transport != "upload" and not self.scheduler.admits_live_stream():
            raise Overloaded(
                f"the decoder is at capacity: one more live stream would delay the others' captions "
                f"past {self.settings.max_decode_wait_s:g} s; retry later",
                retry_after_s=_RETRY_AFTER_S,
            )
        replays = sum(1 for running in self.slots if running.replays_file)
        if transport == "upload" and replays >= self.settings.max_uploads:
            raise Overloaded(f"{self.settings.max_uploads} files are being transcribed already; retry later")
        if caller is not None:
            self._check_key_limits(transport, caller)
        slot = Slot(uuid.uuid4().hex, transport, caller)
        self.slots.add(slot)
        return slot

    def _check_key_limits(self, transport: Transport, caller: ApiKey) -> None:
        replays = transport == "upload"
        limit = caller.max_replays if replays else caller.max_streams
        running = sum(1 for slot in self.slots if slot.owner == caller.name and slot.replays_file == replays)
        if limit is not None and running >= limit:
            what = "files being transcribed" if replays else "live streams"
            raise Overloaded(f"key {caller.name!r} has {running} {what}, its limit; retry when one ends")

    def find(self, session_id: str, transport: Transport) -> Slot | None:
        """The running session with this id, if it came over `transport`."""
        return next((s for s in self.slots if s.session_id == session_id and s.transport == transport), None)

    def stalled(self) -> int:
        """Open sessions that made no progress (no audio taken, no decode, no state change) for
        `stall_after_s`, second passes not counted: slots held by nobody, for /healthz."""
        deadline = time.monotonic() - self.settings.stall_after_s
        drivers = [slot.driver for slot in self.slots if slot.driver is not None]
        return sum(
            1 for driver in drivers if not driver.session.live_finished and driver.last_progress_s < deadline
        )

    def release(self, slot: Slot) -> None:
        """The session is over (or never opened): free its place. Safe to call more than once."""
        if slot.replays_file and slot in self.slots:
            session = None if slot.driver is None else slot.driver.session
            outcome = "refused" if session is None else session.error_code or "ok"
            self.metrics.uploads.labels(outcome=outcome).inc()
        slot.released = True
        self.slots.discard(slot)

    async def open(self, slot: Slot, options: SessionOptions) -> SessionDriver:
        """Create the transcript and its recording, and the session's driver and event stream.
        Raises ShuttingDown if shutdown began meanwhile, or the keeper's error if storage fails."""
        if self.draining:
            raise ShuttingDown("the server is shutting down")
        engine_name = self.scheduler.engine.name
        recorder = await self.keeper.open_recording(
            slot.session_id,
            options.language,
            engine_name,
            owner=slot.owner,
            audio_retention_h=self._audio_retention_h(slot.caller, options.audio_retention_h),
            audio_quota_mb=None if slot.caller is None else slot.caller.max_audio_mb,
        )

        def hand_over(driver: SessionDriver) -> None:
            session = driver.session
            end_s = session.received_samples / SAMPLE_RATE
            end = LiveEnd(
                transcript_id=slot.session_id,
                finals=session.finals,
                language=session.language,
                duration_s=end_s,
                live_model=engine_name,
                recorder=recorder,
                finalize_overrides=options.finalize_overrides,
                warnings=() if session.cut_short is None else (stream_cut_warning(end_s, session.cut_short),),
            )
            self.keeper.live_ended(end, driver.receive_job_event)

        slot.driver = SessionDriver.open(
            self.scheduler,
            options.stream,
            language=options.language,
            input_sample_rate=options.input_sample_rate,
            session_id=slot.session_id,
            transcript_id=slot.session_id,
            prompt=options.prompt,
            file_total_s=options.file_total_s,
            replays_file=slot.replays_file,
            recorder=recorder,
            on_live_finished=hand_over,
            background=options.background,
            pace=None
            if slot.replays_file
            else AudioPace(self.settings.max_stream_speed, self.settings.stream_burst_s, time.monotonic()),
            meter=SessionMeter(self.metrics, slot.transport),
        )
        slot.events = self.event_bus.open(slot.session_id, slot.owner)
        fields = {
            "event": "session_start",
            "session_id": slot.session_id,
            "transport": slot.transport,
            "language": options.language,
        }
        log.info("session started", extra={"fields": fields})
        if self.draining:  # shutdown began while the recording was being opened
            self._end_for_shutdown(slot)
        return slot.driver

    async def open_new(
        self, transport: Transport, caller: ApiKey | None, options: SessionOptions
    ) -> tuple[Slot, SessionDriver]:
        """`admit` then `open`: raises as they do, with the slot released. Set the slot's
        `attachment`, then `run` it."""
        slot = self.admit(transport, caller)
        try:
            return slot, await self.open(slot, options)
        except BaseException:
            self.release(slot)
            raise

    def _audio_retention_h(self, caller: ApiKey | None, requested_h: float | None) -> float | None:
        """The shortest of the server's, the key's and the request's retention; None: the server's."""
        asked = [
            hours
            for hours in (None if caller is None else caller.audio_retention_h, requested_h)
            if hours is not None
        ]
        return min(self.settings.audio_retention_h, *asked) if asked else None

    async def run(self, slot: Slot) -> None:
        """Pump every event of the opened session, until `closed`, into its event stream (for
        followers) and the outbox of the connection attached to it (`slot.attachment`, set before
        the call, or None for none; see resume.py for how another takes over); then release the
        slot. A client that falls behind its outbox is dropped and its stream stopped (what was
        heard is kept, and its last events still reach followers) after the attachment's
        `on_slow_consumer` has told it why. The event stream stays readable afterwards."""
        driver, events = slot.driver, slot.events
        if driver is None or events is None:
            raise RuntimeError("run() needs a slot that open() has opened")
        try:
            async for event in driver.events():
                events.append(event)
                if slot.resumable is not None:
                    slot.resumable.recent.append(event)
                if slot.attachment is not None:
                    await _deliver(slot.attachment, event, slot, driver)
        finally:
            if slot.attachment is not None:
                slot.attachment.outbox.close()
            self.event_bus.finish(events)
            self.release(slot)
            self.resumptions.closed(slot)
            _log_end(slot, driver)

    async def drain(self) -> None:
        """Shutdown: admit no one; end every session (its client is told why, what it said is
        kept) and wait for them to close, at most `shutdown_timeout_s`."""
        self.draining = True
        for slot in list(self.slots):
            self._end_for_shutdown(slot)
        self.resumptions.give_up_all()
        closing = [slot.driver.wait_closed() for slot in self.slots if slot.driver is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*closing), self.settings.shutdown_timeout_s)
        except TimeoutError:
            log.warning("sessions still open after %.0f s of shutdown", self.settings.shutdown_timeout_s)

    def _end_for_shutdown(self, slot: Slot) -> None:
        if slot.driver is not None:
            what = "the file was not finished" if slot.replays_file else "the stream was ended"
            slot.driver.fail(ShuttingDown(f"the server is shutting down; {what}"))


async def _deliver(attachment: Attachment, event: ServerMessage, slot: Slot, driver: SessionDriver) -> None:
    """Queue `event` for the attached client; one that fell a whole outbox behind is detached
    and told why, and its stream is stopped (kept as a stream cut short, with its reason)."""
    try:
        attachment.outbox.push(event)
    except SlowConsumer as exc:
        slot.attachment = None
        attachment.outbox.close()
        driver.fail(exc)
        if attachment.on_slow_consumer is not None:
            await attachment.on_slow_consumer(exc)


def _log_end(slot: Slot, driver: SessionDriver) -> None:
    """One line per session: how long, how many words, how it ended (never what was said)."""
    session = driver.session
    fields = {
        "event": "session_end",
        "session_id": slot.session_id,
        "transport": slot.transport,
        "audio_s": round(session.received_samples / SAMPLE_RATE, 1),
        "words": len(session.finals),
        "outcome": session.error_code or "ok",
    }
    log.info("session ended", extra={"fields": fields})
