"""`streamscribe bench --transport deepgram | openai-realtime`: the same speech streamed in the
wire protocol of another vendor's SDK, over a plain WebSocket, timed as the native stream is.

Each vendor's events become the native ones the measures read: Deepgram's interim `Results` are
partials and its final ones finals; OpenAI Realtime's transcription deltas are finals (it sends
nothing that is later revised, and no word times), so it has no partial latency of its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.signal import resample_poly
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..audio import SAMPLE_RATE, Samples, to_pcm_s16le
from ..client.stream import StreamResult, TimedEvent, keep_pace
from ..wire import Closed, Final, Partial, ServerMessage, Word

_CHUNK_MS = 100
_REALTIME_RATE = 24000
"""OpenAI Realtime takes pcm16 at 24 kHz."""
_END_WAIT_S = 60.0
"""How long after its last audio a stream may take to send its last words."""


async def stream_deepgram(base_url: str, samples: Samples, speed: float) -> StreamResult:
    """Stream to /v1/listen (linear16, 16 kHz, interim results on), then CloseStream; every
    Results as a native partial or final, until the server closes."""
    url = base_url.replace("http", "ws", 1) + "/v1/listen"
    query = "?encoding=linear16&sample_rate=16000&channels=1&interim_results=true&punctuate=true&language=en"
    result = StreamResult()
    async with connect(url + query, max_size=None, open_timeout=30) as ws:
        began = time.monotonic()
        seq = 0

        def translate(message: dict[str, Any]) -> ServerMessage | None:
            nonlocal seq
            seq += 1
            if message.get("type") == "Metadata":
                return Closed(seq=seq, audio_s=message["duration"], words=len(result.finals))
            if message.get("type") != "Results":
                return None
            words = [
                Word(
                    text=word["punctuated_word"],
                    start=word["start"],
                    end=word["end"],
                    confidence=word["confidence"],
                )
                for word in message["channel"]["alternatives"][0]["words"]
            ]
            return Final(seq=seq, words=words) if message["is_final"] else Partial(seq=seq, words=words)

        sender = asyncio.create_task(
            _send_paced(ws, samples, SAMPLE_RATE, speed, began, json.dumps({"type": "CloseStream"}))
        )
        await _receive(ws, began, translate, result, lambda message: False, _limit_s(samples, speed))
        await _finish(sender)
        result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    return result


async def stream_openai_realtime(base_url: str, samples: Samples, speed: float) -> StreamResult:
    """Stream to /v1/realtime?intent=transcription with server VAD (pcm16 at 24 kHz) and 2 s of
    silence after the speech, as a live microphone would, and read until every item whose speech
    started is transcribed; every delta as a native final."""
    url = base_url.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    result = StreamResult()
    silence = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    audio = _resampled(np.concatenate([samples, silence]), _REALTIME_RATE)
    async with connect(url, max_size=None, open_timeout=30) as ws:
        update = {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": _REALTIME_RATE},
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": {"type": "server_vad"},
                    }
                },
            },
        }
        await ws.send(json.dumps(update))
        began = time.monotonic()
        seq = 0
        items = {"started": 0, "completed": 0}
        sent = asyncio.Event()

        def all_transcribed() -> bool:
            return sent.is_set() and items["completed"] == items["started"] > 0

        def closed() -> Closed:
            nonlocal seq
            seq += 1
            return Closed(seq=seq, audio_s=samples.size / SAMPLE_RATE, words=len(result.finals))

        def translate(message: dict[str, Any]) -> ServerMessage | None:
            nonlocal seq
            kind = message.get("type")
            seq += 1
            if kind == "input_audio_buffer.speech_started":
                items["started"] += 1
            elif kind == "conversation.item.input_audio_transcription.completed":
                items["completed"] += 1
            elif kind == "conversation.item.input_audio_transcription.delta" and message["delta"].strip():
                words = [
                    Word(text=text, start=0.0, end=0.0, confidence=1.0) for text in message["delta"].split()
                ]
                return Final(seq=seq, words=words)
            return closed() if all_transcribed() else None

        async def send_all() -> None:
            await _send_paced(ws, audio, _REALTIME_RATE, speed, began, None, _realtime_append)
            sent.set()
            if all_transcribed():  # the last item was done before the trailing silence was
                result.events.append(TimedEvent(time.monotonic() - began, closed()))
                await ws.close()

        sender = asyncio.create_task(send_all())
        await _receive(
            ws, began, translate, result, lambda message: all_transcribed(), _limit_s(samples, speed)
        )
        await _finish(sender)
        await ws.close()
        result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    return result


def _realtime_append(pcm: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})


async def _send_paced(
    ws: ClientConnection,
    samples: Samples,
    rate: int,
    speed: float,
    began: float,
    last: str | None,
    frame: Callable[[bytes], str | bytes] = lambda pcm: pcm,
) -> None:
    """`samples` (at `rate`) as pcm16 chunks at `speed` x real time, then `last` if given."""
    chunk = rate * _CHUNK_MS // 1000
    with contextlib.suppress(ConnectionClosed):
        for offset in range(0, samples.size, chunk):
            await keep_pace(began, offset / rate, speed)
            await ws.send(frame(to_pcm_s16le(samples[offset : offset + chunk])))
        if last is not None:
            await ws.send(last)


async def _receive(
    ws: ClientConnection,
    began: float,
    translate: Callable[[dict[str, Any]], ServerMessage | None],
    result: StreamResult,
    done: Callable[[dict[str, Any]], bool],
    limit_s: float,
) -> None:
    """Every message as it arrives, timed, until the server closes, `done` says so, or
    `limit_s` passed (the result then lacks `closed`)."""
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(limit_s):
            while True:
                message = json.loads(await ws.recv())
                event = translate(message)
                if event is not None:
                    result.events.append(TimedEvent(time.monotonic() - began, event))
                if done(message):
                    return


def _limit_s(samples: Samples, speed: float) -> float:
    return samples.size / SAMPLE_RATE / (speed or 1.0) + _END_WAIT_S


async def _finish(sender: asyncio.Task[None]) -> None:
    if not sender.done():
        sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)


def _resampled(samples: Samples, rate: int) -> Samples:
    """16 kHz audio at `rate`, as a client resamples its microphone's."""
    common = math.gcd(rate, SAMPLE_RATE)
    resampled: Samples = resample_poly(samples, rate // common, SAMPLE_RATE // common).astype(np.float32)
    return resampled
