"""`Client`: the server's API from Python, on one aiohttp session: live streams that resume by
themselves, uploads with progress, following a session's events, transcripts and their exports.
Every refused request raises the server's own StreamscribeError (code and reason)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Literal, TypedDict, TypeVar, Unpack
from urllib.parse import urlsplit

import aiohttp
import msgspec

from ..errors import EventsExpired, error_for
from ..transcript import Transcript, TranscriptList, TranscriptListing
from ..wire import Closed, ErrorDetail, ServerMessage, Start, UploadAccepted, decode_server
from .http import auth_headers, refusal
from .resume import Stream
from .sources import Source, sample_rate_of

ProgressCallback = Callable[[int, int], None]
"""on_progress(sent_bytes, total_bytes) of an upload."""
_UPLOAD_PIECE_BYTES = 256 * 1024
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
"""No limit on a whole request (an upload of hours, a followed session); 60 s without a byte
is a dead connection (an event stream sends a keep-alive every 15 s)."""
BodyT = TypeVar("BodyT")


class UploadOptions(TypedDict, total=False):
    """The options of an upload (POST /v1/transcriptions), as README's Uploaded files has them."""

    speed: Literal["max", "realtime"]
    """max (default): as fast as the server's spare capacity allows; realtime: paced as spoken."""
    language: str
    model: str
    """The model of the final version (the second pass)."""
    prompt: str
    diarize: bool
    num_speakers: int
    min_speakers: int
    max_speakers: int
    audio_retention_h: float


class Client:
    """A server at `url` (http(s)://host:port), with an API key or a browser token where it asks
    for one. Use it as `async with Client(url, api_key=...) as client:`; the HTTP session inside
    is closed on exit."""

    def __init__(self, url: str, *, api_key: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{url} is not an http(s):// URL; give one like http://127.0.0.1:8000")
        self.url = url.rstrip("/")
        self._headers = auth_headers(api_key)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._http = aiohttp.ClientSession(headers=self._headers, timeout=_TIMEOUT)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()

    # ---- live ---------------------------------------------------------------------------------

    def stream(
        self,
        source: Source,
        *,
        language: str | None = None,
        prompt: str | None = None,
        model: str | None = None,
        audio_retention_h: float | None = None,
        speed: float = 0.0,
        chunk_ms: int = 100,
        wait_for_transcript: bool = True,
        resume_window_s: float = 30.0,
        resend_buffer_s: float = 60.0,
    ) -> Stream:
        """A live stream of `source` (a file path, chunks, or `microphone()`: see sources.py);
        use it as `async with client.stream(...) as stream:` and iterate its events.

        speed: x real time at most (1.0: as a microphone would; 0: as fast as the server takes
        it). wait_for_transcript: after the last final, wait for the stored version (the second
        pass) before `closed`. resume_window_s: how long a dropped connection is retried (0: no
        resume); resend_buffer_s: how much sent audio is kept to send again after a resume (at
        least what the server may have to get again: what was in flight when it dropped).
        """
        start = Start(
            sample_rate=sample_rate_of(source), language=language, model=model, prompt=prompt,
            audio_retention_h=audio_retention_h,
        )  # fmt: skip
        ws_url = "ws" + self.url.removeprefix("http") + "/v1/stream"
        return Stream(
            ws_url, self._headers, source, start, speed=speed, chunk_ms=chunk_ms,
            wait_for_transcript=wait_for_transcript, resume_window_s=resume_window_s,
            resend_buffer_s=resend_buffer_s,
        )  # fmt: skip

    # ---- files --------------------------------------------------------------------------------

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        on_progress: ProgressCallback | None = None,
        **options: Unpack[UploadOptions],
    ) -> UploadAccepted:
        """Upload a file (streamed from disk as the raw body) for transcription; the server's
        202 answer once it has the file and has checked it. Follow its events with
        `follow(accepted.session_id)`, or use `transcribe`. `on_progress(sent, total)` is called
        as the body goes out, up to total == the file's size."""
        file = Path(path)
        total = (await asyncio.to_thread(file.stat)).st_size
        headers = {
            "Content-Disposition": f'attachment; filename="{file.name}"',
            "Content-Length": str(total),
        }
        params = {name: _query_value(value) for name, value in options.items()}
        body = _file_body(file, total, on_progress)
        answer = await self._request(
            "POST", "/v1/transcriptions", 202, params=params, data=body, headers=headers
        )
        return msgspec.json.decode(answer, type=UploadAccepted)

    async def transcribe(
        self,
        path: str | os.PathLike[str],
        *,
        on_progress: ProgressCallback | None = None,
        **options: Unpack[UploadOptions],
    ) -> Transcript:
        """Upload a file, wait for the end of its session (the second pass too, where the server
        runs one) and return the newest version. A file damaged part-way still gets one: its
        `info.warnings` say where it stopped."""
        accepted = await self.upload(path, on_progress=on_progress, **options)
        async for _ in self.follow(accepted.session_id):
            pass
        return await self.transcript(accepted.transcript_id)

    async def follow(
        self, session_id: str, *, after: int = 0, retries: int = 5
    ) -> AsyncIterator[ServerMessage]:
        """Every event of a session (a live stream or an upload) after seq `after`, until
        `closed`, over Server-Sent Events; a dropped connection is resumed from the last seq
        seen, up to `retries` times in a row. Raises SessionNotFound for a session the server no
        longer follows (the transcript stays: `transcript`), EventsExpired for events it no
        longer keeps."""
        last_seq, failures = after, 0
        while True:
            try:
                async for event in self._events_once(session_id, last_seq):
                    last_seq, failures = event.seq, 0
                    yield event
                    if isinstance(event, Closed):
                        return
                return  # 204: nothing after last_seq in a finished session
            except (aiohttp.ClientError, TimeoutError, _EndedEarly):
                failures += 1
                if failures > retries:
                    raise
                await asyncio.sleep(min(2.0**failures, 10.0))

    async def _events_once(self, session_id: str, after: int) -> AsyncIterator[ServerMessage]:
        """One request's events; raises _EndedEarly if it ends before `closed`."""
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        async with self._session.get(
            f"{self.url}/v1/sessions/{session_id}/events", headers=headers
        ) as response:
            if response.status == 204:
                return
            if response.status != 200:
                raise refusal(response.status, await response.read())
            kind = ""
            async for line in response.content:
                if line.startswith(b"event: "):
                    kind = line[7:].strip().decode()
                if not line.startswith(b"data: {"):
                    continue
                if kind == EventsExpired.code:  # this follower fell behind what the server keeps
                    detail = msgspec.json.decode(line[6:], type=ErrorDetail)
                    raise error_for(detail.code, detail.message)
                event = decode_server(line[6:])
                yield event
                if isinstance(event, Closed):
                    return
        raise _EndedEarly

    # ---- transcripts --------------------------------------------------------------------------

    async def transcripts(self, *, page_size: int = 20) -> AsyncIterator[TranscriptListing]:
        """The transcripts this key made (an admin key: all), newest first, fetched a page at a
        time as the iteration goes."""
        params = {"limit": str(page_size)}
        while True:
            body = await self._request("GET", "/v1/transcripts", 200, params=params)
            page = msgspec.json.decode(body, type=TranscriptList)
            for listing in page.transcripts:
                yield listing
            if page.next_before is None:
                return
            params["before"] = str(page.next_before)

    async def transcript(self, transcript_id: str, version: int | None = None) -> Transcript:
        """A version of a transcript (the newest by default). Raises TranscriptNotFound."""
        body = await self.export(transcript_id, "json", version)
        return msgspec.json.decode(body, type=Transcript)

    async def export(self, transcript_id: str, format: str = "srt", version: int | None = None) -> str:
        """A version (the newest by default) as json, txt, srt or vtt (another format is refused
        with InvalidRequest)."""
        path = f"/v1/transcripts/{transcript_id}"
        if version is not None:
            path += f"/versions/{version}"
        body = await self._request("GET", path, 200, params={"format": format})
        return body.decode()

    async def delete(self, transcript_id: str) -> None:
        """Delete a transcript: every version, the recorded audio and the session's kept events."""
        await self._request("DELETE", f"/v1/transcripts/{transcript_id}", 204)

    # ---- internals ----------------------------------------------------------------------------

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("use the client inside `async with Client(...) as client:`")
        return self._http

    async def _request(
        self,
        method: str,
        path: str,
        expected_status: int,
        *,
        params: dict[str, str] | None = None,
        data: AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The body of a request answered `expected_status`; raises the server's error if not."""
        url = self.url + path
        async with self._session.request(method, url, params=params, data=data, headers=headers) as response:
            body = await response.read()
            if response.status != expected_status:
                raise refusal(response.status, body)
        return body


class _EndedEarly(Exception):
    """An event stream ended before `closed` (a proxy's timeout, a restart): it is reopened."""


def _query_value(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


async def _file_body(path: Path, total: int, on_progress: ProgressCallback | None) -> AsyncIterator[bytes]:
    """The file a piece at a time, read in a worker thread; `on_progress` as each piece is taken."""
    sent = 0
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while piece := await asyncio.to_thread(handle.read, _UPLOAD_PIECE_BYTES):
            yield piece
            sent += len(piece)
            if on_progress is not None:
                on_progress(sent, total)
    finally:
        await asyncio.to_thread(handle.close)
