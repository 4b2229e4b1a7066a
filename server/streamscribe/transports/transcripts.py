"""REST for stored transcripts: /v1/transcripts/{id}[/versions[/{n}]], finalize, delete."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from ..errors import AudioNotRetained, FinalizeFailed, InvalidRequest, TranscriptNotFound
from ..exports import FORMATS, render
from ..finalize.service import FinalizeService
from ..store.handover import JobDone, JobEvent, JobFailed
from ..transcript import Transcript, VersionList
from ..wire import FinalizeAnswer
from .limits import json_body
from .responses import struct_response
from .state import SERVER_STATE

_WAIT_TIMEOUT_S = 3600.0


def _finalizer(request: web.Request) -> FinalizeService:
    return request.app[SERVER_STATE].finalizer


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


async def latest(request: web.Request) -> web.Response:
    store = _finalizer(request).store
    transcript_id = request.match_info["transcript_id"]
    return _respond(await asyncio.to_thread(store.version, transcript_id), request)


async def one_version(request: web.Request) -> web.Response:
    store = _finalizer(request).store
    try:
        number = int(request.match_info["version"])
    except ValueError as exc:
        raise InvalidRequest("a version is a whole number") from exc
    return _respond(
        await asyncio.to_thread(store.version, request.match_info["transcript_id"], number), request
    )


async def versions(request: web.Request) -> web.Response:
    store = _finalizer(request).store
    transcript_id = request.match_info["transcript_id"]
    record = await asyncio.to_thread(store.get, transcript_id)
    if record is None:
        raise TranscriptNotFound(f"no transcript {transcript_id}")
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


async def audio(request: web.Request) -> web.FileResponse:
    """The recorded audio (16 kHz WAV), with Range support so players can seek; 409 once the
    retention period has removed it."""
    transcript_id = request.match_info["transcript_id"]
    record = await asyncio.to_thread(_finalizer(request).store.get, transcript_id)
    if record is None:
        raise TranscriptNotFound(f"no transcript {transcript_id}")
    if record.audio_path is None or not await asyncio.to_thread(Path(record.audio_path).is_file):
        raise AudioNotRetained(f"the audio of {transcript_id} is no longer kept")
    return web.FileResponse(record.audio_path, headers={"Content-Type": "audio/wav"})


async def delete(request: web.Request) -> web.Response:
    await _finalizer(request).delete(request.match_info["transcript_id"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    base = "/v1/transcripts/{transcript_id}"
    app.router.add_get(base, latest)
    app.router.add_delete(base, delete)
    app.router.add_get(base + "/versions", versions)
    app.router.add_get(base + "/versions/{version}", one_version)
    app.router.add_post(base + "/finalize", finalize)
    app.router.add_get(base + "/audio", audio)
