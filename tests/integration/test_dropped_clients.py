"""Whatever ends a stream's reader ends its session: clients that vanish mid-stream, frames that
cannot be parsed, a recording that cannot be written. The words heard are kept, the slot is freed
and the server keeps serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from aiohttp import ClientSession
from websockets.asyncio.client import connect

from streamscribe.asr.engine import Engine
from streamscribe.audio import SAMPLE_RATE, to_pcm_s16le
from streamscribe.client.stream import stream_samples
from streamscribe.config import ServerSettings
from streamscribe.wire import Closed, Error

from ..conftest import librispeech_utterance, start_server
from .test_bad_input import exchange
from .test_storage import tmpfs
from .test_stream import ws_url

START = '{"type":"start"}'


async def health(server_url: str) -> dict[str, object]:
    async with ClientSession() as http, http.get(server_url + "/healthz") as response:
        body: dict[str, object] = await response.json()
        return body


async def wait_for_no_sessions(server_url: str, timeout_s: float = 60.0) -> None:
    """Sessions end when the server notices; wait (generously) until none is left."""
    deadline = time.monotonic() + timeout_s
    while (await health(server_url))["sessions"] != 0:
        assert time.monotonic() < deadline, f"sessions still held: {await health(server_url)}"
        await asyncio.sleep(0.2)


async def test_clients_that_start_ping_and_drop_do_not_keep_their_sessions(
    server_url: str, jfk: tuple[object, str]
) -> None:
    max_sessions = (await health(server_url))["max_sessions"]
    for _ in range(2):  # each round takes every slot: a leaked one would lock the next round out
        for _ in range(int(max_sessions)):  # type: ignore[call-overload]
            ws = await connect(ws_url(server_url))
            await ws.send(START)
            await ws.send(to_pcm_s16le(np.zeros(SAMPLE_RATE // 10, dtype=np.float32)))
            await ws.ping()
            ws.transport.abort()  # a reset, not a close: the server's pong meets a dead socket
        await wait_for_no_sessions(server_url)
    audio, _ = jfk
    result = await stream_samples(ws_url(server_url), audio[: 3 * SAMPLE_RATE], speed=0)  # type: ignore[index]
    assert result.close_code == 1000, "the server still takes new streams"


async def test_a_deeply_nested_frame_is_a_bad_message(server_url: str) -> None:
    for frames in (['{"a":' * 20000], [START, '{"a":' * 20000]):
        events, close_code = await exchange(ws_url(server_url), frames)
        errors = [event for event in events if isinstance(event, Error)]
        assert [error.code for error in errors] == ["bad_message"], events
        assert "nested too deeply" in errors[0].message and close_code == 1007
    await wait_for_no_sessions(server_url)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 384 KiB file system (tmpfs): about ten seconds of recording fill it."""
    with tmpfs(tmp_path / "disk", "384k") as disk:
        yield disk


async def test_a_disk_that_fills_mid_stream_ends_it_with_an_error_and_frees_its_slot(
    settings: ServerSettings, engine: Engine, tiny_disk: Path
) -> None:
    audio, _ = librispeech_utterance("1272-135031-0000")
    speech = np.concatenate([audio] * 4)  # ~23 s: more than the disk holds
    runner, url = await start_server(
        msgspec.structs.replace(settings, data_dir=tiny_disk, min_free_disk_mb=0.0), engine
    )
    try:
        result = await stream_samples(ws_url(url), speech, speed=0)
        errors = [timed.event for timed in result.events if isinstance(timed.event, Error)]
        assert [error.code for error in errors] == ["storage_failed"], errors
        assert "could not record the stream" in errors[0].message
        assert result.close_code == 1011 and isinstance(result.events[-1].event, Closed)
        assert result.finals, "the words decoded before the disk filled were sent"
        await wait_for_no_sessions(url)
    finally:
        await runner.cleanup()
