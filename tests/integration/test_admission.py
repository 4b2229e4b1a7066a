"""Admission by measured load, on a real server and model: with a decode-wait limit no decode can
meet, the running stream keeps going and a new live stream is refused with `overloaded`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import numpy as np
import pytest
from websockets.asyncio.client import connect

from streamscribe.asr.engine import Engine
from streamscribe.client.stream import TimedEvent, stream_samples
from streamscribe.config import ServerSettings
from streamscribe.wire import Error, Health, Partial, Start, decode_server, encode

from ..conftest import start_server
from .streams import assert_well_formed


@pytest.fixture
async def strict_server(settings: ServerSettings, engine: Engine) -> AsyncIterator[str]:
    runner, url = await start_server(msgspec.structs.replace(settings, max_decode_wait_s=0.001), engine)
    yield url
    await runner.cleanup()


async def test_a_stream_that_would_overload_the_decoder_is_refused_and_the_running_one_is_kept(
    strict_server: str, jfk: tuple[np.ndarray, str]
) -> None:
    audio, _ = jfk
    decoded = asyncio.Event()

    def on_event(timed: TimedEvent) -> None:
        if isinstance(timed.event, Partial):
            decoded.set()

    ws_url = strict_server.replace("http", "ws") + "/v1/stream"
    running = asyncio.create_task(
        stream_samples(ws_url, audio, speed=2.0, start=Start(language="en"), on_event=on_event)
    )
    await asyncio.wait_for(decoded.wait(), 60)

    async with connect(ws_url) as ws:  # admitted (or refused) on its `start`
        await ws.send(encode(Start()).decode())
        refusal = decode_server(await asyncio.wait_for(ws.recv(), 30))
        await ws.wait_closed()
    assert isinstance(refusal, Error) and refusal.code == "overloaded" and refusal.retry_after_s == 10
    assert ws.close_code == 1013, "WebSocket's 'try again later'"
    client_view = await stream_samples(ws_url, audio[:16000], speed=0, start=Start(language="en"))
    assert client_view.refused and client_view.close_code == 1013 and not client_view.completed

    async with aiohttp.ClientSession() as http:
        offer = {"type": "offer", "sdp": "v=0\r\n"}
        async with http.post(f"{strict_server}/v1/webrtc/offer", json=offer) as response:
            assert response.status == 429 and response.headers["Retry-After"] == "10"
            body = await response.json()
            assert body["error"]["code"] == "overloaded" and "at capacity" in body["error"]["message"]
        async with http.get(f"{strict_server}/healthz") as response:
            health = msgspec.json.decode(await response.read(), type=Health)
            assert health.decode_wait_p95_s is not None and health.decode_wait_p95_s > 0.001

    result = await asyncio.wait_for(running, 120)
    assert_well_formed(result, audio.size / 16000)
    assert "country" in " ".join(word.text for word in result.finals).lower()
