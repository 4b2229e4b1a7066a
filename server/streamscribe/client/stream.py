"""The measuring /v1/stream client of the benchmarks and tests, over `websockets` (independent of
the server's aiohttp): any ws:// URL as given, when each event arrived, how long pings waited, the
close code, a refusal as its event. It never resumes: a dropped connection is what it reports.
Applications use `Client.stream` (resume.py), which resumes by itself."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ..audio import SAMPLE_RATE, Samples, to_pcm_s16le
from ..wire import Closed, Error, Final, Partial, ServerMessage, Start, Stop, Word, decode_server, encode
from .http import auth_headers


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
    sent_s: float = 0.0
    """Seconds of audio handed to the connection."""
    ping_waits_s: list[float] = field(default_factory=list)
    """How long each measuring ping waited for its pong (see `ping_every_s`)."""

    @property
    def completed(self) -> bool:
        """The server closed the stream (`closed`); False when the connection was lost before."""
        return any(isinstance(timed.event, Closed) for timed in self.events)

    @property
    def refused(self) -> bool:
        """The server refused the stream for load (`overloaded` before any word)."""
        return any(
            isinstance(timed.event, Error) and timed.event.code == "overloaded" for timed in self.events
        ) and not any(isinstance(timed.event, (Final, Partial)) for timed in self.events)

    @property
    def finals(self) -> list[Word]:
        return [word for timed in self.events if isinstance(timed.event, Final) for word in timed.event.words]


async def keep_pace(began: float, audio_s: float, speed: float) -> None:
    """Wait until `audio_s` seconds of audio sent since `began` (monotonic) keeps to `speed` x
    real time; at once for speed 0 (as fast as the connection takes it)."""
    if speed > 0:
        await asyncio.sleep(max(0.0, began + audio_s / speed - time.monotonic()))


async def stream_samples(
    url: str,
    samples: Samples,
    *,
    speed: float = 1.0,
    chunk_ms: int = 100,
    start: Start | None = None,
    on_event: Callable[[TimedEvent], None] | None = None,
    ping_every_s: float | None = None,
    api_key: str | None = None,
    stop: Stop | None = None,
) -> StreamResult:
    """Stream 16 kHz mono audio as pcm_s16le at `speed` x real time (0 = as fast as the server
    reads), send `stop`, and collect every event until the server closes the socket. With
    `ping_every_s`, a ping is also sent that often and its wait for the pong measured; `stop`
    ends the stream (default: Stop(), which waits for the second pass's version). Check
    `completed`: a connection lost mid-stream ends the result early, without raising.
    """
    result = StreamResult()
    chunk_samples = SAMPLE_RATE * chunk_ms // 1000
    async with connect(url, max_size=None, open_timeout=30, additional_headers=auth_headers(api_key)) as ws:
        began = time.monotonic()
        with contextlib.suppress(ConnectionClosed):  # refused as it connects: the events say why
            await ws.send(encode(start or Start()).decode())

        async def send_audio() -> None:
            for offset in range(0, samples.size, chunk_samples):
                await keep_pace(began, offset / SAMPLE_RATE, speed)
                chunk = samples[offset : offset + chunk_samples]
                await ws.send(to_pcm_s16le(chunk))
                result.sent_s += chunk.size / SAMPLE_RATE
            await ws.send(encode(stop or Stop()).decode())

        async def measure_pings(every_s: float) -> None:
            while True:
                sent = time.monotonic()
                await (await ws.ping())
                result.ping_waits_s.append(time.monotonic() - sent)
                await asyncio.sleep(every_s)

        sender = asyncio.create_task(send_audio())
        helpers = (
            [sender] if ping_every_s is None else [sender, asyncio.create_task(measure_pings(ping_every_s))]
        )
        try:
            async for message in ws:
                timed = TimedEvent(time.monotonic() - began, decode_server(message))
                result.events.append(timed)
                if on_event is not None:
                    on_event(timed)
        except ConnectionClosed:
            pass
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    return result
