"""Clients that hold on without doing anything, on a real server with short timeouts: half-sent
request heads, idle connections past the limit, WebSockets that never `start` or go quiet after
it, and upload bodies that never come or trickle in. Each is closed with its code, holds no slot
while it waits, and a quiet stream keeps the words it had."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import numpy as np
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from streamscribe.asr.engine import Engine
from streamscribe.audio import to_pcm_s16le
from streamscribe.config import ServerSettings

from ..conftest import start_server
from .test_dropped_clients import health, wait_for_no_sessions
from .test_stream import ws_url

pytestmark = pytest.mark.model

GENEROUS_S = 60.0
MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
async def base_url(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    impatient = msgspec.structs.replace(
        settings,
        data_dir=tmp_path_factory.mktemp("slow"),
        idle_timeout_s=1.0,
        stream_idle_timeout_s=2.0,
        max_connections=MAX_CONNECTIONS,
    )
    runner, url = await start_server(impatient, engine)
    yield url
    await runner.cleanup()


async def raw_exchange(base_url: str, sent: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(sent)
    try:
        return await asyncio.wait_for(reader.read(), GENEROUS_S)
    finally:
        writer.close()


async def test_a_request_head_that_never_ends_is_closed(base_url: str) -> None:
    answer = await raw_exchange(base_url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    assert b"200 OK" not in answer  # closed after idle_timeout_s, the request never served


async def test_connections_past_the_limit_are_answered_503_and_closed(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    held = [await asyncio.open_connection(host, int(port)) for _ in range(MAX_CONNECTIONS)]
    try:
        answer = await raw_exchange(base_url, b"")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), head
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    finally:
        for _reader, writer in held:
            writer.close()
    deadline = time.monotonic() + GENEROUS_S
    while "error" in (status := await health(base_url)):  # 503 until the server notices the closes
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
    assert int(str(status["connections_refused"])) >= 1
    assert status["max_connections"] == MAX_CONNECTIONS


async def test_a_websocket_that_never_starts_is_closed_with_idle_timeout(base_url: str) -> None:
    async with connect(ws_url(base_url)) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), GENEROUS_S))
        assert error["type"] == "error" and error["code"] == "idle_timeout"
        await asyncio.wait_for(ws.wait_closed(), GENEROUS_S)
        assert ws.close_code == 1008


async def test_a_stream_that_goes_quiet_is_ended_with_its_words_kept(
    base_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    audio, _ = jfk
    pcm = to_pcm_s16le(audio)
    events = []
    async with connect(ws_url(base_url)) as ws:
        await ws.send('{"type":"start"}')
        for offset in range(0, len(pcm), 32000):
            await ws.send(pcm[offset : offset + 32000])
        async with asyncio.timeout(GENEROUS_S):  # then nothing: the server ends it
            with contextlib.suppress(ConnectionClosedError):
                async for message in ws:
                    events.append(json.loads(message))
        assert ws.close_code == 1008
    kinds = [event["type"] for event in events]
    assert "final" in kinds, kinds
    assert any(event["type"] == "error" and event["code"] == "idle_timeout" for event in events)
    assert kinds[-1] == "closed"
    finals = " ".join(word["text"] for event in events if event["type"] == "final" for word in event["words"])
    assert "country" in finals.lower()
    await wait_for_no_sessions(base_url)


async def test_an_upload_whose_body_never_comes_holds_no_slot_and_times_out(base_url: str) -> None:
    head = (
        b"POST /v1/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    try:
        assert (await health(base_url))["uploads"] == 0  # waiting for its bytes, not admitted
        answer = await asyncio.wait_for(reader.read(), GENEROUS_S)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:40]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "idle_timeout"


async def test_an_upload_trickled_in_is_cut_off_and_frees_its_slot(base_url: str) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(600):
            yield b"R"
            await asyncio.sleep(0.05)  # the attack's own pace: 20 bytes per second

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            base_url + "/v1/transcriptions", data=trickle(), headers={"Content-Type": "audio/wav"}
        ) as response,
    ):
        assert response.status == 408
        body = await response.json()
    assert body["error"]["code"] == "idle_timeout" and "KiB/s" in body["error"]["message"]
    await wait_for_no_sessions(base_url)


async def test_a_form_with_too_many_fields_is_refused(base_url: str) -> None:
    form = aiohttp.FormData()
    for index in range(100):
        form.add_field(f"field{index}", "x" * 1000)
    form.add_field("file", b"RIFF", filename="a.wav")
    async with (
        aiohttp.ClientSession() as http,
        http.post(base_url + "/v1/transcriptions", data=form) as response,
    ):
        assert response.status == 400
        assert "more than 64 fields" in (await response.json())["error"]["message"]


async def test_a_flood_of_idle_connections_is_refused_before_memory_grows(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """1,000 idle sockets against a limit of 100: 900 are answered 503 at once, and the process
    (server and clients both) grows by a few MB at most."""
    limited = msgspec.structs.replace(
        settings, data_dir=tmp_path_factory.mktemp("flood"), max_connections=100
    )
    runner, url = await start_server(limited, engine)
    host, port = url.removeprefix("http://").split(":")
    process = psutil.Process()
    before_mb = process.memory_info().rss / 2**20
    held = [await asyncio.open_connection(host, int(port)) for _ in range(1000)]
    try:
        answers = await asyncio.gather(
            *(asyncio.wait_for(reader.read(12), GENEROUS_S) for reader, _ in held[100:])
        )
        grown_mb = process.memory_info().rss / 2**20 - before_mb
        assert all(answer == b"HTTP/1.1 503" for answer in answers)
        assert grown_mb < 50, f"the process grew {grown_mb:.0f} MB"
    finally:
        for _reader, writer in held:
            writer.close()
        await runner.cleanup()


async def test_one_address_cannot_take_every_connection(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    limited = msgspec.structs.replace(
        settings, data_dir=tmp_path_factory.mktemp("per-address"), max_connections_per_address=5
    )
    runner, url = await start_server(limited, engine)
    host, port = url.removeprefix("http://").split(":")
    held = [await asyncio.open_connection(host, int(port)) for _ in range(5)]
    try:
        answer = await raw_exchange(url, b"")
        assert answer.startswith(b"HTTP/1.1 503") and b"too_many_connections" in answer
    finally:
        for _reader, writer in held:
            writer.close()
        await runner.cleanup()
