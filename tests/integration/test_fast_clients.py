"""Clients that send faster than real time are served, not dropped, and a stream cut short is
never passed off as whole: the stored version says so, and the command line exits non-zero."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest
from websockets.asyncio.client import connect

from streamscribe.asr.engine import Engine
from streamscribe.audio import SAMPLE_RATE, read_file, to_pcm_s16le
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings

from ..conftest import conversation_reference, speech_file, start_server
from .test_cli import CLI
from .test_dropped_clients import wait_for_no_sessions
from .test_stream import ws_url

FRAME_SAMPLES = SAMPLE_RATE // 10


async def test_a_stock_websockets_client_sending_three_minutes_at_full_speed_is_served(
    server_url: str,
) -> None:
    """The `websockets` library at its default settings (a keepalive ping every 20 s, dropped
    after 20 s without a pong) sends a 189 s conversation as fast as the socket takes it."""
    audio = read_file(speech_file("conversations/conv2spk_1272_84.wav"))
    events: list[dict] = []
    async with connect(ws_url(server_url)) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en"}))
        for offset in range(0, audio.size, FRAME_SAMPLES):
            await ws.send(to_pcm_s16le(audio[offset : offset + FRAME_SAMPLES]))
        await ws.send(json.dumps({"type": "stop"}))
        async for message in ws:
            events.append(json.loads(message))
    assert ws.close_code == 1000, f"closed with {ws.close_code} {ws.close_reason}"
    closed = events[-1]
    assert closed["type"] == "closed" and closed["audio_s"] == pytest.approx(
        audio.size / SAMPLE_RATE, abs=0.05
    )
    finals = [word for event in events if event["type"] == "final" for word in event["words"]]
    assert finals[-1]["end"] > 180.0, "the words reach the end of the file"
    wer = word_error_rate(conversation_reference(), " ".join(word["text"] for word in finals))
    assert wer < 0.2, f"WER {wer:.1%}: audio was lost or badly decoded"


async def test_a_lost_connection_is_stored_as_a_cut_stream(server_url: str) -> None:
    audio = read_file(speech_file("jfk/jfk.wav"))[: 4 * SAMPLE_RATE]
    ws = await connect(ws_url(server_url))
    await ws.send(json.dumps({"type": "start", "language": "en"}))
    transcript_id = json.loads(await ws.recv())["transcript_id"]
    for offset in range(0, audio.size, FRAME_SAMPLES):
        await ws.send(to_pcm_s16le(audio[offset : offset + FRAME_SAMPLES]))
    async with asyncio.timeout(60):
        await ws.recv()  # the server has taken audio (speech started)
    ws.transport.abort()  # a reset, as when a phone loses its network
    await wait_for_no_sessions(server_url)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server_url}/v1/transcripts/{transcript_id}") as response:
            assert response.status == 200
            version = await response.json()
    warnings = version["info"]["warnings"]
    assert len(warnings) == 1 and re.fullmatch(
        r"the stream was cut after [0-9.]+ s of audio: the connection was lost before the client sent "
        r"stop; the transcript holds what was received",
        warnings[0],
    ), warnings


async def test_the_stream_command_says_when_the_connection_is_lost(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    env = os.environ | {
        "STREAMSCRIBE_MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
        "STREAMSCRIBE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }
    server = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", "0", "--no-second-pass", stdout=asyncio.subprocess.PIPE, env=env
    )
    assert server.stdout is not None
    try:
        async with asyncio.timeout(60):
            listening = (await server.stdout.readline()).decode()
        url = re.search(r"listening on http(://\S+)", listening)
        assert url, listening
        wav = str(speech_file("jfk/jfk.wav"))
        streaming = await asyncio.create_subprocess_exec(
            *CLI, "stream", wav, "--url", f"ws{url.group(1)}/v1/stream", "--speed", "1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert streaming.stderr is not None
        async with asyncio.timeout(60):
            said = (await streaming.stderr.readline()).decode()
        assert said.startswith("transcript "), said  # connected and streaming, at real-time pace
        server.send_signal(signal.SIGKILL)  # the server is gone mid-stream
        async with asyncio.timeout(60):
            _, stderr = await streaming.communicate()
        assert streaming.returncode == 1
        assert re.search(
            r"error: the connection was lost after [0-9.]+ s of audio were sent", stderr.decode()
        )
        assert "Traceback" not in stderr.decode()
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()


async def test_a_flood_of_silence_is_taken_at_the_streams_pace_and_health_still_answers(
    settings: ServerSettings, engine: Engine, tmp_path: Path
) -> None:
    """Four clients send 1 MiB frames of silence (33 s each) as fast as they can: each is read at
    max_stream_speed once its burst is in, and the server keeps answering meanwhile."""
    speed, burst_s, frames = 40.0, 2.0, 3
    paced = msgspec.structs.replace(
        settings, data_dir=tmp_path, max_stream_speed=speed, stream_burst_s=burst_s, max_sessions=8
    )
    frame = bytes(1 << 20)
    runner, url = await start_server(paced, engine)

    async def flood() -> tuple[float, dict]:
        began = time.monotonic()
        async with connect(ws_url(url), max_size=None) as ws:
            await ws.send('{"type":"start"}')
            for _ in range(frames):
                await ws.send(frame)
            await ws.send('{"type":"stop","wait_for_transcript":false}')
            events = [json.loads(message) async for message in ws]
        return time.monotonic() - began, events[-1]

    try:
        floods = [asyncio.create_task(flood()) for _ in range(4)]
        async with aiohttp.ClientSession() as http:
            while not all(task.done() for task in floods):
                async with http.get(url + "/healthz") as response:
                    assert response.status == 200
                await asyncio.wait(floods, timeout=0.2)
        audio_s = frames * len(frame) / 2 / SAMPLE_RATE
        for elapsed_s, closed in [task.result() for task in floods]:
            assert closed["type"] == "closed" and closed["audio_s"] == pytest.approx(audio_s, abs=0.1)
            assert elapsed_s >= (audio_s - burst_s) / speed * 0.9, "no faster than the pace"
    finally:
        await runner.cleanup()
