"""Python clients of the server: /v1/stream over `websockets` (independent of the server's
aiohttp), and file uploads with their events over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .audio import SAMPLE_RATE, Samples, to_pcm_s16le
from .errors import EventsExpired, StreamscribeError, error_for
from .wire import Closed, Final, ServerMessage, Start, Stop, Word, decode_server, encode


@dataclass(frozen=True, slots=True)
class TimedEvent:
    arrived_s: float
    """Wall time since the first audio sample was sent."""
    event: ServerMessage


@dataclass(slots=True)
class StreamResult:
    events: list[TimedEvent] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    @property
    def finals(self) -> list[Word]:
        return [word for timed in self.events if isinstance(timed.event, Final) for word in timed.event.words]


async def stream_samples(
    url: str,
    samples: Samples,
    *,
    speed: float = 1.0,
    chunk_ms: int = 100,
    start: Start | None = None,
    on_event: Callable[[TimedEvent], None] | None = None,
) -> StreamResult:
    """Stream 16 kHz mono audio as pcm_s16le at `speed` x real time (0 = as fast as the server
    reads), send `stop`, and collect every event until the server closes the socket.
    """
    result = StreamResult()
    chunk_samples = SAMPLE_RATE * chunk_ms // 1000
    async with connect(url, max_size=None, open_timeout=30) as ws:
        await ws.send(encode(start or Start()).decode())
        began = time.monotonic()

        async def send_audio() -> None:
            for offset in range(0, samples.size, chunk_samples):
                if speed > 0:
                    await asyncio.sleep(max(0.0, began + offset / SAMPLE_RATE / speed - time.monotonic()))
                await ws.send(to_pcm_s16le(samples[offset : offset + chunk_samples]))
            await ws.send(encode(Stop()).decode())

        sender = asyncio.create_task(send_audio())
        try:
            async for message in ws:
                timed = TimedEvent(time.monotonic() - began, decode_server(message))
                result.events.append(timed)
                if on_event is not None:
                    on_event(timed)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    return result


# ---- files: POST /v1/transcriptions, then follow /v1/sessions/{id}/events (over aiohttp) ----------


async def upload_file(base_url: str, path: Path, options: dict[str, str]) -> dict[str, Any]:
    """Upload a file as the raw request body (streamed from disk) with `options` as query
    parameters; the server's 202 answer (session_id, transcript_id, file, ...).
    Raises StreamscribeError with the server's code and reason if it refuses the file."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        with path.open("rb") as body:
            headers = {"Content-Disposition": f'attachment; filename="{path.name}"'}
            url = f"{base_url}/v1/transcriptions"
            async with http.post(url, params=options, data=body, headers=headers) as response:
                answer = await response.read()
                if response.status != 202:
                    raise _refusal(answer)
    accepted: dict[str, Any] = msgspec.json.decode(answer)
    return accepted


async def follow_session(
    base_url: str, session_id: str, on_event: Callable[[ServerMessage], None], retries: int = 5
) -> None:
    """Every event of a session until `closed`, over Server-Sent Events; a dropped connection is
    resumed from the last seq seen (Last-Event-ID), up to `retries` times in a row."""
    import aiohttp

    last_seq, failures = 0, 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as http:
        while True:
            try:
                headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last_seq)}
                async with http.get(f"{base_url}/v1/sessions/{session_id}/events", headers=headers) as response:
                    if response.status == 204:
                        return
                    if response.status != 200:
                        raise _refusal(await response.read())
                    kind = ""
                    async for line in response.content:
                        if line.startswith(b"event: "):
                            kind = line[7:].strip().decode()
                        if not line.startswith(b"data: {"):
                            continue
                        if kind == EventsExpired.code:  # fell behind what the server keeps
                            raise _refusal(b'{"error": %s}' % line[6:].strip())
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
    base_url: str, transcript_id: str, format: str = "json", version: int | None = None
) -> bytes:
    """A version of a transcript (the newest by default) in json, txt, srt or vtt."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        url = f"{base_url}/v1/transcripts/{transcript_id}"
        if version is not None:
            url += f"/versions/{version}"
        async with http.get(url, params={"format": format}) as response:
            body = await response.read()
            if response.status != 200:
                raise _refusal(body)
    return body


def _refusal(body: bytes) -> StreamscribeError:
    """The server's `{"error": {"code", "message"}}` as the matching error."""
    error = msgspec.json.decode(body)["error"]
    return error_for(error["code"], error["message"])
