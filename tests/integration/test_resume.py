"""Resume after a dropped connection, on a real server with real speech: the TCP connection is cut
mid-stream (no close frame, as a phone changing networks), the client comes back with its
`resume_token` and the last seq it saw, and the stream goes on. Across both connections no final
is lost or repeated and seq is one sequence; the stored transcript holds exactly the finals sent."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import pytest
from aiohttp import ClientSession
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streamscribe.asr.engine import Engine
from streamscribe.audio import SAMPLE_RATE, to_pcm_s16le
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings
from streamscribe.transcript import Transcript
from streamscribe.wire import (
    Closed,
    Error,
    Final,
    Ready,
    Resumed,
    ServerMessage,
    Start,
    Stop,
    Word,
    decode_server,
    encode,
)

from ..conftest import librispeech_utterance, start_server
from ..cut_proxy import CutProxy
from .test_stream import ws_url

pytestmark = pytest.mark.model

_CHUNK_SAMPLES = SAMPLE_RATE // 10
_WAIT_S = 120.0
"""Generous: a loaded machine decodes slowly."""


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, str]:
    """Three LibriSpeech utterances with a pause between them: about 35 s, several finals."""
    parts = [librispeech_utterance(f"1272-135031-000{index}") for index in range(3)]
    pause = np.zeros(SAMPLE_RATE * 8 // 10, dtype=np.float32)
    audio = np.concatenate([piece for samples, _ in parts for piece in (samples, pause)])
    return audio, " ".join(text for _, text in parts)


@pytest.fixture(scope="module")
async def server_url(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A server with a resume window long enough for a loaded machine."""
    waiting = msgspec.structs.replace(
        settings, resume_window_s=60.0, data_dir=tmp_path_factory.mktemp("resume")
    )
    runner, url = await start_server(waiting, engine)
    yield url
    await runner.cleanup()


@dataclass
class Connection:
    """One WebSocket of a stream: what it received, and how it ended."""

    ws: ClientConnection
    events: list[ServerMessage] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive_all(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                self.events.append(decode_server(message))
                self.arrived.set()

    async def until(self, done: Callable[[list[ServerMessage]], bool]) -> None:
        async with asyncio.timeout(_WAIT_S):
            while True:
                if done(self.events):
                    return
                self.arrived.clear()
                await self.arrived.wait()

    @property
    def finals(self) -> list[Word]:
        return [word for event in self.events if isinstance(event, Final) for word in event.words]


async def send_audio(ws: ClientConnection, audio: np.ndarray, then_stop: bool) -> None:
    """As fast as the server takes it; a connection that is cut just stops the sending."""
    with contextlib.suppress(ConnectionClosed):
        for offset in range(0, audio.size, _CHUNK_SAMPLES):
            await ws.send(to_pcm_s16le(audio[offset : offset + _CHUNK_SAMPLES]))
        if then_stop:
            await ws.send(encode(Stop()).decode())


def finals_seen(count: int) -> Callable[[list[ServerMessage]], bool]:
    return lambda events: sum(isinstance(event, Final) for event in events) >= count


async def open_stream(url: str) -> tuple[Connection, asyncio.Task[None]]:
    """A new stream at `url` (started), with the task that receives its events."""
    connection = Connection(await connect(ws_url(url), max_size=None))
    receiving = asyncio.create_task(connection.receive_all())
    await connection.ws.send(encode(Start()).decode())
    return connection, receiving


async def comeback(url: str, ready: Ready, after_seq: int) -> tuple[Connection, asyncio.Task[None]]:
    assert ready.resume_token is not None, "ready carries a resume token"
    ws = await connect(f"{ws_url(url)}?resume={ready.resume_token}&after={after_seq}", max_size=None)
    connection = Connection(ws)
    return connection, asyncio.create_task(connection.receive_all())


async def resumed_on(connection: Connection) -> Resumed:
    """The first answer on a comeback, which must be `resumed`."""
    await connection.until(lambda events: bool(events))
    resumed = connection.events[0]
    assert isinstance(resumed, Resumed), f"the comeback starts with resumed, not {resumed!r}"
    return resumed


async def stored(url: str, transcript_id: str) -> Transcript:
    async with ClientSession() as http, http.get(f"{url}/v1/transcripts/{transcript_id}") as response:
        assert response.status == 200
        return msgspec.json.decode(await response.read(), type=Transcript)


async def stored_words(url: str, transcript_id: str) -> list[str]:
    return [word.text for word in (await stored(url, transcript_id)).words]


def assert_one_stream(first: list[ServerMessage], second: list[ServerMessage]) -> list[Word]:
    """Both connections' events as one stream: seq strictly increasing, no final twice, words in
    time order; the finals of both."""
    resumed, *rest = second
    assert isinstance(resumed, Resumed)
    seqs = [event.seq for event in first + rest]
    assert seqs == sorted(set(seqs)), f"seq repeated or out of order: {seqs}"
    assert resumed.seq >= first[-1].seq, "resumed names the newest event the server has"
    finals = [word for event in first + rest if isinstance(event, Final) for word in event.words]
    for earlier, later in itertools.pairwise(finals):
        assert earlier.end <= later.start + 1e-6, f"a final repeated or out of order: {earlier}, {later}"
    return finals


async def test_a_stream_cut_mid_way_resumes_with_every_final_once(
    server_url: str, speech: tuple[np.ndarray, str]
) -> None:
    audio, reference = speech
    async with CutProxy(server_url) as proxy:
        first, receiving = await open_stream(proxy.url)
        await send_audio(first.ws, audio[: audio.size // 2], then_stop=False)
        await first.until(finals_seen(1))
        proxy.cut()  # no close frame, no goodbye: both sides see the connection reset
        await receiving
    ready = first.events[0]
    assert isinstance(ready, Ready)
    assert not any(isinstance(event, Closed) for event in first.events), "cut before the end"

    second, receiving = await comeback(server_url, ready, first.events[-1].seq)
    resumed = await resumed_on(second)
    assert resumed.session_id == ready.session_id
    held = round(resumed.received_s * SAMPLE_RATE)
    assert 0 < held <= audio.size // 2
    await send_audio(second.ws, audio[held:], then_stop=True)
    await receiving
    assert second.ws.close_code == 1000

    finals = assert_one_stream(first.events, second.events)
    closed = second.events[-1]
    assert isinstance(closed, Closed)
    assert closed.words == len(finals), "the server sent exactly these finals"
    assert abs(closed.audio_s - audio.size / SAMPLE_RATE) < 0.05, "no audio lost or doubled at the seam"
    assert [word.text for word in finals] == await stored_words(server_url, ready.session_id)
    assert word_error_rate(reference, " ".join(word.text for word in finals)) < 0.2


async def test_a_comeback_takes_over_a_connection_the_server_still_holds(
    server_url: str, speech: tuple[np.ndarray, str]
) -> None:
    """The server has not noticed the drop (no reset reached it): the old connection is dropped."""
    audio, _ = speech
    first, receiving_first = await open_stream(server_url)
    await send_audio(first.ws, audio[: 12 * SAMPLE_RATE], then_stop=False)
    await first.until(finals_seen(1))
    ready = first.events[0]
    assert isinstance(ready, Ready)

    second, receiving = await comeback(server_url, ready, first.events[-1].seq)
    await receiving_first  # the server dropped the old connection
    resumed = await resumed_on(second)
    await send_audio(second.ws, audio[round(resumed.received_s * SAMPLE_RATE) :], then_stop=True)
    await receiving
    assert second.ws.close_code == 1000
    finals = assert_one_stream(first.events, second.events)
    assert [word.text for word in finals] == await stored_words(server_url, ready.session_id)


async def test_a_client_that_closes_for_a_ping_timeout_may_come_back(
    server_url: str, speech: tuple[np.ndarray, str]
) -> None:
    """websockets closes with 1011 when its keepalive ping gets no pong: that client will be back
    (1000 and 1001 are the goodbyes that end a stream at once)."""
    audio, _ = speech
    first, receiving = await open_stream(server_url)
    await send_audio(first.ws, audio[: 8 * SAMPLE_RATE], then_stop=False)
    await first.until(finals_seen(1))
    await first.ws.close(code=1011, reason="keepalive ping timeout")
    await receiving
    ready = first.events[0]
    assert isinstance(ready, Ready)
    second, receiving = await comeback(server_url, ready, first.events[-1].seq)
    resumed = await resumed_on(second)
    await send_audio(second.ws, audio[round(resumed.received_s * SAMPLE_RATE) :], then_stop=True)
    await receiving
    assert second.ws.close_code == 1000
    assert_one_stream(first.events, second.events)


async def test_a_client_cut_after_stop_gets_the_end_of_its_stream(
    server_url: str, speech: tuple[np.ndarray, str]
) -> None:
    audio, _ = speech
    async with CutProxy(server_url) as proxy:
        first, receiving = await open_stream(proxy.url)
        await send_audio(first.ws, audio[: 6 * SAMPLE_RATE], then_stop=True)
        await first.until(lambda events: bool(events))
        proxy.cut()
        await receiving
    ready = first.events[0]
    assert isinstance(ready, Ready)
    second, receiving = await comeback(server_url, ready, first.events[-1].seq)
    resumed = await resumed_on(second)
    # As the SDKs do: what the server may have missed again, stop included (a second stop, or
    # audio after the end, is ignored by a stream that has it already)
    await send_audio(
        second.ws, audio[round(resumed.received_s * SAMPLE_RATE) : 6 * SAMPLE_RATE], then_stop=True
    )
    await receiving
    assert isinstance(second.events[-1], Closed), "the end of the stream was replayed"
    assert second.ws.close_code == 1000
    finals = assert_one_stream(first.events, second.events)
    assert [word.text for word in finals] == await stored_words(server_url, ready.session_id)


async def test_after_the_window_the_stream_ends_and_its_token_is_refused(
    settings: ServerSettings, engine: Engine, speech: tuple[np.ndarray, str], tmp_path: Path
) -> None:
    audio, _ = speech
    short_window = msgspec.structs.replace(settings, resume_window_s=0.5, data_dir=tmp_path)
    runner, url = await start_server(short_window, engine)
    try:
        async with CutProxy(url) as proxy:
            first, receiving = await open_stream(proxy.url)
            await send_audio(first.ws, audio[: 12 * SAMPLE_RATE], then_stop=False)
            await first.until(finals_seen(1))
            proxy.cut()
            await receiving
        ready = first.events[0]
        assert isinstance(ready, Ready)
        await until_no_sessions(url)
        warnings = (await stored(url, ready.session_id)).info.warnings
        assert any("connection was lost" in warning for warning in warnings), warnings

        second, receiving = await comeback(url, ready, first.events[-1].seq)
        await receiving
        assert [type(event) for event in second.events] == [Error]
        assert isinstance(second.events[0], Error) and second.events[0].code == "resume_expired"
        assert second.ws.close_code == 1008
    finally:
        await runner.cleanup()


async def test_an_unknown_token_and_a_bad_after_are_refused(server_url: str) -> None:
    async with connect(f"{ws_url(server_url)}?resume=nonsense&after=3") as ws:
        error = decode_server(await ws.recv())
        assert isinstance(error, Error) and error.code == "resume_expired"
    async with (
        ClientSession() as http,
        http.get(f"{ws_url(server_url)}?resume=x&after=-1".replace("ws", "http", 1)) as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_request"


async def until_no_sessions(url: str) -> None:
    deadline = time.monotonic() + _WAIT_S
    async with ClientSession() as http:
        while True:
            async with http.get(f"{url}/healthz") as response:
                if (await response.json())["sessions"] == 0:
                    return
            assert time.monotonic() < deadline, "the stream did not end after its resume window"
            await asyncio.sleep(0.1)
