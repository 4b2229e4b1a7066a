"""REST for stored transcripts: /v1/transcripts (the caller's, newest first) and
/v1/transcripts/{id}[/versions[/{n}]], finalize, audio, delete. A transcript of another key is
answered 404, as if it did not exist."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..errors import AudioNotRetained, FinalizeFailed, InvalidRequest, TranscriptNotFound
from ..exports import FORMATS, render
from ..finalize.service import FinalizeService
from ..store.base import TranscriptRecord, can_see
from ..store.failures import STORAGE_FAILURES, storage_error
from ..store.handover import JobDone, JobEvent, JobFailed
from ..transcript import Transcript, TranscriptList, VersionList
from ..wire import FinalizeAnswer
from .auth import caller
from .limits import json_body
from .responses import struct_response
from .state import SERVER_STATE

_WAIT_TIMEOUT_S = 3600.0
_PAGE = 20
_MAX_PAGE = 100


def _finalizer(request: web.Request) -> FinalizeService:
    return request.app[SERVER_STATE].finalizer


async def _owned(request: web.Request) -> TranscriptRecord:
    """The transcript of the route's id, if the caller may see it; raises TranscriptNotFound."""
    transcript_id = request.match_info["transcript_id"]
    record = await asyncio.to_thread(_finalizer(request).store.get, transcript_id)
    if record is None or not can_see(caller(request), record.owner):
        raise TranscriptNotFound(f"no transcript {transcript_id}")
    return record


def _respond(transcript: Transcript | None, request: web.Request) -> web.Response:
    if transcript is None:
        raise TranscriptNotFound(f"no such transcript or version: {request.path}")
    return transcript_response(transcript, request.query.get("format", "json"))


def transcript_response(transcript: Transcript, format: str) -> web.Response:
    """One version in `format` (json, txt, srt, vtt); raises InvalidRequest for another format."""
    if format not in FORMATS:
        raise InvalidRequest(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    body, content_type = render(transcript, format)
    response = web.Response(body=body, headers={"Content-Type": content_type})
    if format != "json":
        response.headers["Content-Disposition"] = (
            f'inline; filename="{transcript.id}.v{transcript.version}.{format}"'
        )
    return response


async def listing(request: web.Request) -> web.Response:
    """GET /v1/transcripts?limit=N&before=T: the caller's transcripts (an admin key's: all),
    newest first; `next_before` pages on."""
    try:
        limit = int(request.query.get("limit", _PAGE))
        before = float(request.query["before"]) if "before" in request.query else None
    except ValueError as exc:
        raise InvalidRequest("limit is a whole number and before a time (next_before of a page)") from exc
    if not 1 <= limit <= _MAX_PAGE:
        raise InvalidRequest(f"limit is 1-{_MAX_PAGE}")
    key = caller(request)
    owner = None if key is None or key.admin else key.name
    page = await asyncio.to_thread(_finalizer(request).store.listing, owner, limit, before)
    next_before = page[-1].created_at if len(page) == limit else None
    return struct_response(TranscriptList(transcripts=page, next_before=next_before))


async def latest(request: web.Request) -> web.Response:
    record = await _owned(request)
    return _respond(await asyncio.to_thread(_finalizer(request).store.version, record.id), request)


async def one_version(request: web.Request) -> web.Response:
    try:
        number = int(request.match_info["version"])
    except ValueError as exc:
        raise InvalidRequest("a version is a whole number") from exc
    record = await _owned(request)
    if not 1 <= number < 2**31:
        raise TranscriptNotFound(f"no such transcript or version: {request.path}")
    return _respond(await asyncio.to_thread(_finalizer(request).store.version, record.id, number), request)


async def versions(request: web.Request) -> web.Response:
    store = _finalizer(request).store
    record = await _owned(request)
    transcript_id = record.id
    summaries = await asyncio.to_thread(store.versions, transcript_id)
    body = VersionList(
        transcript_id=transcript_id,
        state=record.state,
        error=record.error,
        audio_kept=record.audio_path is not None,
        versions=summaries,
    )
    return struct_response(body)


async def finalize(request: web.Request) -> web.Response:
    """Queue a re-run with new settings (JSON body: FinalizeSettings fields). 202 at once, or with
    ?wait=1 the new version's number once it is stored."""
    finalizer = _finalizer(request)
    transcript_id = request.match_info["transcript_id"]
    wait = request.query.get("wait", "0") not in ("0", "false", "")
    done: asyncio.Future[JobDone | JobFailed] = asyncio.get_running_loop().create_future()

    def settle(event: JobEvent) -> None:
        if isinstance(event, JobDone | JobFailed) and not done.done():
            done.set_result(event)

    await _owned(request)
    if wait:
        finalizer.listen(transcript_id, settle)
    try:
        await finalizer.request(transcript_id, await json_body(request))
        if not wait:
            queued = FinalizeAnswer(transcript_id=transcript_id, state="queued")
            return struct_response(queued, 202, {"Location": f"/v1/transcripts/{transcript_id}/versions"})
        event = await asyncio.wait_for(done, _WAIT_TIMEOUT_S)
    finally:
        if wait:
            finalizer.unlisten(transcript_id, settle)
    if isinstance(event, JobFailed):
        raise FinalizeFailed(f"the second pass failed: {event.message}")
    return struct_response(FinalizeAnswer(transcript_id=transcript_id, state="done", version=event.version))


async def audio(request: web.Request) -> web.StreamResponse:
    """The recorded audio (16 kHz WAV): a local file with Range support so players can seek, one
    in an object store streamed a piece at a time; 409 once the retention period has removed it."""
    record = await _owned(request)
    gone = AudioNotRetained(f"the audio of {record.id} is no longer kept")
    if record.audio_path is None:
        raise gone
    audio_store = _finalizer(request).audio
    local = audio_store.local_file(record.audio_path)
    if local is not None:
        if not await asyncio.to_thread(local.is_file):
            raise gone
        return web.FileResponse(local, headers={"Content-Type": "audio/wav"})
    try:
        chunks = await asyncio.to_thread(audio_store.wav_chunks, record.audio_path)
        header = await asyncio.to_thread(next, chunks, b"")
    except AudioNotRetained:
        raise gone from None
    except STORAGE_FAILURES as exc:
        raise storage_error(exc, "reading the recording") from exc
    response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
    response.content_length = 8 + int.from_bytes(header[4:8], "little")  # the RIFF chunk's size
    await response.prepare(request)
    await response.write(header)
    while piece := await asyncio.to_thread(next, chunks, b""):  # a failure now cuts the body short
        await response.write(piece)
    await response.write_eof()
    return response


async def delete(request: web.Request) -> web.Response:
    """Removes the audio, every version and the session's kept events."""
    record = await _owned(request)
    await _finalizer(request).delete(record.id)
    await request.app[SERVER_STATE].sessions.event_bus.forget(record.id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/transcripts", listing)
    base = "/v1/transcripts/{transcript_id}"
    app.router.add_get(base, latest)
    app.router.add_delete(base, delete)
    app.router.add_get(base + "/versions", versions)
    app.router.add_get(base + "/versions/{version}", one_version)
    app.router.add_post(base + "/finalize", finalize)
    app.router.add_get(base + "/audio", audio)
