"""POST /v1/transcriptions: an uploaded file replayed through the live session core.

The file is spooled to disk, checked (it opens, has audio, and its first second decodes), then
decoded as it is replayed; the answer comes at once with the session and transcript ids (or, with
`wait`, the final version). Its events are followed at /v1/sessions/{id}/events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Literal, Protocol, TypeVar

import msgspec
from aiohttp import web

from ..audio import SAMPLE_RATE, AudioFile, FileInfo, Samples
from ..errors import (
    InvalidRequest,
    NoAudioStream,
    SessionTooLong,
    ShuttingDown,
    StreamscribeError,
    error_for,
)
from ..stream.driver import ReplayOptions, SessionDriver
from ..stream.event_log import EventLog
from ..stream.replay import replay
from ..transcript import Transcript
from ..wire import Prompt
from .outbox import pump_events
from .state import SERVER_STATE, ServerState
from .transcripts import transcript_response
from .upload_body import Upload, discard, receive_upload

_CHUNK_SAMPLES = 2 * SAMPLE_RATE
"""Decoded per step of a replay; the first is decoded before the upload is accepted."""


class ReplayRequest(Protocol):
    """What a replay needs from an upload's options, whichever API they came from."""

    @property
    def language(self) -> str | None: ...

    @property
    def prompt(self) -> str | None: ...

    @property
    def speed(self) -> Literal["max", "realtime"]: ...

    def finalize_overrides(self) -> bytes:
        """FinalizeSettings fields (JSON) for this file's second pass."""
        ...


OptionsT = TypeVar("OptionsT", bound=ReplayRequest)


class TranscriptionOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Form fields or query parameters of POST /v1/transcriptions."""

    language: str | None = None
    model: str | None = None
    """The model of the final version (the second pass); the live pass uses the server's model."""
    diarize: bool | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    prompt: Prompt | None = None
    speed: Literal["max", "realtime"] = "max"
    wait: bool = False
    """Answer with the final version instead of at once."""
    format: Literal["json", "txt", "srt", "vtt"] = "json"
    """The format of the version `wait` answers with."""

    def finalize_overrides(self) -> bytes:
        fields = ("model", "diarize", "num_speakers", "min_speakers", "max_speakers", "prompt")
        values = {name: getattr(self, name) for name in fields if getattr(self, name) is not None}
        return msgspec.json.encode(values)


class FileSession:
    """One replayed upload, counted by admission control from before its body is read."""

    replays_file = True

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self.session_id = uuid.uuid4().hex
        self.driver: SessionDriver | None = None
        self.info: FileInfo | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def drain(self) -> None:
        if self.driver is not None:
            self.driver.fail(ShuttingDown("the server is shutting down; the file was not finished"))

    async def start(self, upload: Upload, options: ReplayRequest) -> None:
        """Check the options and the file, then start the replay in the background. Raises (and
        removes the spool file) when either is bad: nothing is stored for a refused upload."""
        state = self._state
        stream_settings = state.settings.replay if options.speed == "max" else state.settings.stream
        audio: AudioFile | None = None
        try:
            language = state.live_language(options.language)
            overrides = options.finalize_overrides()
            state.finalizer.check_overrides(overrides)
            audio = await asyncio.to_thread(AudioFile, upload.path, upload.filename)
            declared_s = audio.info.duration_s
            if declared_s is not None and declared_s > stream_settings.max_session_s:
                raise SessionTooLong(
                    f"{upload.filename} lasts {declared_s / 3600:.1f} h; the limit is "
                    f"{stream_settings.max_session_s / 3600:.1f} h"
                )
            chunks = audio.chunks(_CHUNK_SAMPLES)
            first = await asyncio.to_thread(next, chunks, None)  # a file that cannot decode is refused now
            if first is None:
                raise NoAudioStream(f"{upload.filename} holds no audio samples")
            if state.draining:
                raise ShuttingDown("the server is shutting down")
            engine_name = state.scheduler.engine.name
            recorder = await state.finalizer.open_recording(self.session_id, language, engine_name)
        except BaseException:
            if audio is not None:
                await asyncio.to_thread(audio.close)
            discard(upload.path)
            raise
        self.info = audio.info
        self.driver = SessionDriver.open(
            state.scheduler,
            stream_settings,
            language=language,
            session_id=self.session_id,
            finalizer=state.finalizer,
            recorder=recorder,
            prompt=options.prompt,
            replay=ReplayOptions(audio.info.duration_s, overrides, background=options.speed == "max"),
        )
        event_log = state.event_logs.open(self.session_id)
        self._tasks = [
            asyncio.create_task(
                self._replay(audio, _then(first, chunks), upload, options.speed == "realtime")
            ),
            asyncio.create_task(self._publish(self.driver, event_log)),
        ]

    async def transcript(self) -> Transcript:
        """Wait for the end and return the newest version. The session's input error, if any, is
        raised once its transcript (of what decoded) is stored."""
        driver = self.driver
        assert driver is not None
        await driver.wait_closed()
        session = driver.session
        if session.error_code is not None:
            raise error_for(
                session.error_code,
                f"{session.error_message}; the transcript of what came before is at /v1/transcripts/{self.session_id}",
            )
        version = await asyncio.to_thread(self._state.finalizer.store.version, self.session_id)
        if version is None:
            raise StreamscribeError(session.transcript_failure or "the transcript was not stored")
        return version

    async def _replay(
        self, audio: AudioFile, chunks: Iterator[Samples], upload: Upload, realtime: bool
    ) -> None:
        assert self.driver is not None
        try:
            await replay(self.driver, chunks, realtime)
        finally:
            await asyncio.to_thread(audio.close)
            discard(upload.path)

    async def _publish(self, driver: SessionDriver, event_log: EventLog) -> None:
        try:
            await pump_events(driver, self._state.event_logs, event_log)
        finally:
            self._state.sessions.discard(self)


def _then(first: Samples, rest: Iterator[Samples]) -> Iterator[Samples]:
    yield first
    yield from rest


async def accept_upload(request: web.Request, parse: type[OptionsT]) -> tuple[FileSession, Upload, OptionsT]:
    """Admission, the upload and its options (a msgspec Struct of type `parse`, from its string
    fields), and the started replay. Raises a StreamscribeError and keeps nothing on bad input."""
    state = request.app[SERVER_STATE]
    session = FileSession(state)
    state.admit(session)
    try:
        spool = state.settings.data_dir / "uploads" / f"{session.session_id}.upload"
        max_bytes = int(state.settings.max_upload_mb * 2**20)
        upload = await receive_upload(request, spool, max_bytes)
        try:
            options = parse_options(upload, parse)
        except InvalidRequest:
            discard(upload.path)
            raise
        await session.start(upload, options)
    except BaseException:
        state.sessions.discard(session)
        raise
    return session, upload, options


def parse_options(upload: Upload, parse: type[OptionsT]) -> OptionsT:
    """Form fields as `parse` (a msgspec Struct); fields it does not know are refused if it forbids them."""
    values = {name.removesuffix("[]"): values if name.endswith("[]") else values[-1]
              for name, values in upload.fields.items()}  # fmt: skip
    try:
        return msgspec.convert(values, parse, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"bad option: {exc}") from exc


async def transcriptions(request: web.Request) -> web.StreamResponse:
    session, upload, options = await accept_upload(request, TranscriptionOptions)
    if options.wait:
        return transcript_response(await session.transcript(), options.format)
    info = session.info
    assert info is not None
    session_id = session.session_id
    body = {
        "session_id": session_id,
        "transcript_id": session_id,
        "events_url": f"/v1/sessions/{session_id}/events",
        "transcript_url": f"/v1/transcripts/{session_id}",
        "speed": options.speed,
        "file": {
            "name": upload.filename,
            "bytes": upload.size_bytes,
            "format": info.format,
            "codec": info.codec,
            "duration_s": None if info.duration_s is None else round(info.duration_s, 3),
        },
    }
    return web.json_response(body, status=202, headers={"Location": f"/v1/transcripts/{session_id}"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/transcriptions", transcriptions)
