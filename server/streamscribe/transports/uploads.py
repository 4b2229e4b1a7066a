"""POST /v1/transcriptions: an uploaded file replayed through the live session core.

The file is spooled to disk, checked (it opens, has audio, and its first second decodes), then
decoded as it is replayed; the answer comes at once with the session and transcript ids (or, with
`wait`, the final version). Its events are followed at /v1/sessions/{id}/events.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Iterator
from typing import Literal, Protocol, TypeVar

import msgspec
from aiohttp import web

from ..audio import SAMPLE_RATE, AudioFile, FileInfo, Samples
from ..errors import (
    InvalidRequest,
    NoAudioStream,
    SessionTooLong,
    StreamscribeError,
    UnsupportedAudio,
    error_for,
)
from ..live.driver import SessionDriver
from ..live.feeder import feed_file
from ..live.sessions import SessionOptions, Slot
from ..store.failures import ensure_room
from ..transcript import Transcript
from ..wire import Prompt, RetentionHours, UploadAccepted, UploadedFile
from .auth import caller
from .responses import struct_response
from .state import SERVER_STATE, ServerState
from .transcripts import transcript_response
from .upload_body import BodyLimits, Upload, discard, query_fields, receive_upload

log = logging.getLogger(__name__)
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

    @property
    def audio_retention_h(self) -> float | None: ...

    def finalize_overrides(self) -> bytes:
        """FinalizeSettings fields (JSON) for this file's second pass."""
        ...


OptionsT = TypeVar("OptionsT", bound=ReplayRequest)
T = TypeVar("T")


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
    audio_retention_h: RetentionHours | None = None

    def finalize_overrides(self) -> bytes:
        fields = ("model", "diarize", "num_speakers", "min_speakers", "max_speakers", "prompt")
        values = {name: getattr(self, name) for name in fields if getattr(self, name) is not None}
        return msgspec.json.encode(values)


class FileSession:
    """One replayed upload, admitted (and counted) from its first bytes."""

    def __init__(self, state: ServerState, slot: Slot) -> None:
        self._state = state
        self.slot = slot
        self.session_id = slot.session_id
        self.info: FileInfo | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, upload: Upload, options: ReplayRequest) -> None:
        """Check the options and the file, then start the replay in the background. Raises (and
        removes the spool file) when either is bad: nothing is stored for a refused upload."""
        state = self._state
        host = state.sessions
        stream_settings = state.settings.replay if options.speed == "max" else state.settings.stream
        audio: AudioFile | None = None
        try:
            language = check_options(state, options)
            overrides = options.finalize_overrides()
            audio = await _explained(upload, asyncio.to_thread(AudioFile, upload.path, upload.filename))
            declared_s = audio.info.duration_s
            if declared_s is not None and declared_s > stream_settings.max_session_s:
                raise SessionTooLong(
                    f"{upload.filename} lasts {declared_s / 3600:.1f} h; the limit is "
                    f"{stream_settings.max_session_s / 3600:.1f} h"
                )
            chunks = audio.chunks(_CHUNK_SAMPLES)
            first = await _explained(
                upload, asyncio.to_thread(next, chunks, None)
            )  # cannot decode: refused now
            if first is None:
                raise NoAudioStream(f"{upload.filename} holds no audio samples")
            session_options = SessionOptions(
                language=language,
                stream=stream_settings,
                prompt=options.prompt,
                finalize_overrides=overrides,
                file_total_s=declared_s,
                background=options.speed == "max",
                audio_retention_h=options.audio_retention_h,
            )
            driver = await host.open(self.slot, session_options)
        except BaseException:
            if audio is not None:
                await asyncio.to_thread(audio.close)
            discard(upload.path)
            raise
        self.info = audio.info
        file_fields = {
            "bytes": upload.size_bytes,
            "format": audio.info.format,
            "duration_s": audio.info.duration_s,
        }
        log.info(
            "upload accepted",
            extra={"fields": {"event": "upload", "session_id": self.session_id, **file_fields}},
        )
        self._tasks = [
            asyncio.create_task(
                self._replay(driver, audio, _then(first, chunks), upload, options.speed == "realtime")
            ),
            asyncio.create_task(host.run(self.slot)),
        ]

    async def transcript(self) -> Transcript:
        """Wait for the end and return the newest version. The session's input error, if any, is
        raised once its transcript (of what decoded) is stored."""
        driver = self.slot.driver
        assert driver is not None, "start() opened the session"
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
        self,
        driver: SessionDriver,
        audio: AudioFile,
        chunks: Iterator[Samples],
        upload: Upload,
        realtime: bool,
    ) -> None:
        try:
            await feed_file(driver, chunks, realtime)
        finally:
            await asyncio.to_thread(audio.close)
            discard(upload.path)


async def _explained(upload: Upload, decoding: Awaitable[T]) -> T:
    """A body labelled as a url-encoded form that is no media file either: say what went wrong."""
    try:
        return await decoding
    except UnsupportedAudio as exc:
        if not upload.labelled_form:
            raise
        raise UnsupportedAudio(
            "the body is labelled as a url-encoded form (curl's default for -d and --data-binary) and is not "
            "an audio or video file either: send the file itself (curl --data-binary @memo.mp3, or "
            "-F file=@memo.mp3 for a multipart form)"
        ) from exc


def check_options(state: ServerState, options: ReplayRequest) -> str | None:
    """Raises for a language the live model does not serve or second-pass settings a client may
    not give (naming the option); the language to use."""
    language = state.sessions.live_language(options.language)
    state.finalizer.check_overrides(options.finalize_overrides())
    return language


def _then(first: Samples, rest: Iterator[Samples]) -> Iterator[Samples]:
    yield first
    yield from rest


async def accept_upload(request: web.Request, parse: type[OptionsT]) -> tuple[FileSession, Upload, OptionsT]:
    """Admission, the upload and its options (a msgspec Struct of type `parse`, from its string
    fields), and the started replay. Raises a StreamscribeError and keeps nothing on bad input."""
    state = request.app[SERVER_STATE]
    settings = state.settings
    # A bad request is refused as such before admission, never as overloaded.
    check_options(state, parse_options(query_fields(request), parse))
    await asyncio.to_thread(ensure_room, settings.data_dir, settings.min_free_disk_mb)
    key = caller(request)
    if key is not None:  # before the body: a key past its quota spools nothing
        await state.finalizer.check_quota(key.name, key.max_audio_mb)
    slot: Slot | None = None

    def admit() -> None:  # as the file's first bytes arrive: a silent client holds no slot
        nonlocal slot
        slot = state.sessions.admit("upload", key)

    limits = BodyLimits(
        max_file_bytes=int(settings.max_upload_mb * 2**20),
        idle_timeout_s=settings.idle_timeout_s,
        min_bytes_per_s=settings.min_upload_kib_per_s * 1024,
    )
    try:
        spool = settings.data_dir / "uploads" / f"{uuid.uuid4().hex}.upload"
        upload = await receive_upload(request, spool, limits, admit)
        try:
            options = parse_options(upload.fields, parse)
        except InvalidRequest:
            discard(upload.path)
            raise
        assert slot is not None, "a file with bytes was admitted"
        session = FileSession(state, slot)
        await session.start(upload, options)
    except BaseException:
        if slot is not None:
            state.sessions.release(slot)
        raise
    return session, upload, options


def parse_options(fields: dict[str, list[str]], parse: type[OptionsT]) -> OptionsT:
    """Form fields or query parameters as `parse` (a msgspec Struct); fields it does not know are
    refused if it forbids them."""
    values = {name.removesuffix("[]"): values if name.endswith("[]") else values[-1]
              for name, values in fields.items()}  # fmt: skip
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
    body = UploadAccepted(
        session_id=session_id,
        transcript_id=session_id,
        events_url=f"/v1/sessions/{session_id}/events",
        transcript_url=f"/v1/transcripts/{session_id}",
        speed=options.speed,
        file=UploadedFile(
            name=upload.filename,
            bytes=upload.size_bytes,
            format=info.format,
            codec=info.codec,
            duration_s=None if info.duration_s is None else round(info.duration_s, 3),
        ),
    )
    return struct_response(body, 202, {"Location": f"/v1/transcripts/{session_id}"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/transcriptions", transcriptions)
