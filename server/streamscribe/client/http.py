"""Files over HTTP: POST /v1/transcriptions, following /v1/sessions/{id}/events over Server-Sent
Events, and fetching transcripts. The server's bodies are decoded with its own wire types."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import msgspec

from ..errors import EventsExpired, StreamscribeError, error_for
from ..wire import Closed, ErrorBody, ErrorDetail, ServerMessage, UploadAccepted, decode_server


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The header that carries an API key (or a browser token), none without one."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def upload_file(
    base_url: str, path: Path, options: dict[str, str], api_key: str | None = None
) -> UploadAccepted:
    """Upload a file as the raw request body (streamed from disk) with `options` as query
    parameters; the server's 202 answer. Raises StreamscribeError with the server's code and
    reason if it refuses the file."""
    async with aiohttp.ClientSession(headers=auth_headers(api_key)) as http:
        with path.open("rb") as body:
            headers = {"Content-Disposition": f'attachment; filename="{path.name}"'}
            url = f"{base_url}/v1/transcriptions"
            async with http.post(url, params=options, data=body, headers=headers) as response:
                answer = await response.read()
                if response.status != 202:
                    raise refusal(response.status, answer)
    return msgspec.json.decode(answer, type=UploadAccepted)


async def follow_session(
    base_url: str,
    session_id: str,
    on_event: Callable[[ServerMessage], None],
    retries: int = 5,
    api_key: str | None = None,
) -> None:
    """Every event of a session until `closed`, over Server-Sent Events; a dropped connection is
    resumed from the last seq seen (Last-Event-ID), up to `retries` times in a row."""
    last_seq, failures = 0, 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout, headers=auth_headers(api_key)) as http:
        while True:
            try:
                headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last_seq)}
                async with http.get(
                    f"{base_url}/v1/sessions/{session_id}/events", headers=headers
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
                        if kind == EventsExpired.code:  # fell behind what the server keeps
                            detail = msgspec.json.decode(line[6:], type=ErrorDetail)
                            raise error_for(detail.code, detail.message)
                        event = decode_server(line[6:])
                        last_seq, failures = event.seq, 0
                        on_event(event)
                        if isinstance(event, Closed):
                            return
            except (aiohttp.ClientError, TimeoutError):
                failures += 1
                if failures > retries:
                    raise
                await asyncio.sleep(min(2.0**failures, 10.0))


async def fetch_transcript(
    base_url: str,
    transcript_id: str,
    format: str = "json",
    version: int | None = None,
    api_key: str | None = None,
) -> bytes:
    """A version of a transcript (the newest by default) in json, txt, srt or vtt."""
    async with aiohttp.ClientSession(headers=auth_headers(api_key)) as http:
        url = f"{base_url}/v1/transcripts/{transcript_id}"
        if version is not None:
            url += f"/versions/{version}"
        async with http.get(url, params={"format": format}) as response:
            body = await response.read()
            if response.status != 200:
                raise refusal(response.status, body)
    return body


def refusal(status: int, body: bytes) -> StreamscribeError:
    """The server's error body as the matching StreamscribeError; a body that is not one (a proxy's
    page, say) as the root error with the HTTP status and the start of the body."""
    try:
        detail = msgspec.json.decode(body, type=ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return StreamscribeError(f"HTTP {status}: {body[:200].decode(errors='replace').strip()}")
    return error_for(detail.code, detail.message)
