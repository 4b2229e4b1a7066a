"""Bad clients get an `error` with a code and a clean close; the server keeps serving others."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from aiohttp import ClientSession
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from streamscribe.audio import SAMPLE_RATE, to_pcm_s16le
from streamscribe.bench.metrics import word_error_rate
from streamscribe.client.stream import stream_samples
from streamscribe.wire import MAX_FRAME_BYTES, Closed, Error, Final, Ready, ServerMessage, decode_server

from .streams import assert_well_formed
from .test_stream import text_of, ws_url


async def exchange(url: str, frames: list[str | bytes]) -> tuple[list[ServerMessage], int | None]:
    """Send the frames, then read every event until the server closes."""
    events: list[ServerMessage] = []
    async with connect(url, max_size=None) as ws:
        with contextlib.suppress(ConnectionClosedError):  # the server may close before all is sent
            for frame in frames:
                await ws.send(frame)
        with contextlib.suppress(ConnectionClosedError):
            async for message in ws:
                events.append(decode_server(message))
    return events, ws.close_code


START = '{"type":"start"}'

BEFORE_START = {
    "malformed JSON": (["{not json"], "bad_message", 1007),
    "unknown type": (['{"type":"pause"}'], "bad_message", 1007),
    "unknown field": (['{"type":"start","volume":11}'], "bad_message", 1007),
    "binary before start": ([b"\x00\x01" * 100], "protocol_violation", 1002),
    "finalize before start": (['{"type":"finalize"}'], "protocol_violation", 1002),
    "unsupported encoding": (['{"type":"start","encoding":"opus"}'], "unsupported_audio", 1003),
    "unsupported rate": (['{"type":"start","sample_rate":96000}'], "unsupported_audio", 1003),
    "unsupported channels": (['{"type":"start","channels":6}'], "unsupported_audio", 1003),
    "another model": (['{"type":"start","model":"large-v3"}'], "unknown_model", 1008),
    "another language": (['{"type":"start","language":"de"}'], "unsupported_language", 1003),
}


@pytest.mark.parametrize("case", sorted(BEFORE_START))
async def test_bad_opening_is_refused_with_a_code(server_url: str, case: str) -> None:
    frames, code, close_code = BEFORE_START[case]
    events, received_close = await exchange(ws_url(server_url), frames)
    assert len(events) == 1 and isinstance(events[0], Error), events
    assert events[0].code == code and events[0].message and events[0].seq == 1
    assert received_close == close_code


MID_STREAM = {
    "frame over 1 MiB": (b"\x00" * (MAX_FRAME_BYTES + 2), "frame_too_large", 1009),
    "malformed JSON": ("{oops", "bad_message", 1007),
    "second start": (START, "protocol_violation", 1002),
}


@pytest.mark.parametrize("case", sorted(MID_STREAM))
async def test_bad_frame_mid_stream_keeps_what_was_heard(
    server_url: str, jfk: tuple[np.ndarray, str], case: str
) -> None:
    audio, _ = jfk
    bad, code, close_code = MID_STREAM[case]
    heard = to_pcm_s16le(audio[: 3 * SAMPLE_RATE])
    events, received_close = await exchange(ws_url(server_url), [START, heard, bad])
    errors = [event for event in events if isinstance(event, Error)]
    assert [error.code for error in errors] == [code]
    assert isinstance(events[-1], Closed), "the session is closed cleanly after the error"
    finals = [word for event in events if isinstance(event, Final) for word in event.words]
    assert "fellow" in text_of(finals).lower(), "speech heard before the bad frame is still transcribed"
    assert received_close == close_code
    assert [event.seq for event in events] == list(range(1, len(events) + 1))


async def test_a_vanished_client_is_cleaned_up_while_others_are_served(
    server_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    audio, reference = jfk
    good = asyncio.create_task(stream_samples(ws_url(server_url), audio, speed=4))
    ws = await connect(ws_url(server_url))
    await ws.send(START)
    await ws.send(to_pcm_s16le(audio[: 4 * SAMPLE_RATE]))
    ws.transport.abort()  # vanish without a close frame
    result = await good
    assert_well_formed(result, audio.size / SAMPLE_RATE)
    assert word_error_rate(reference, text_of(result.finals)) < 0.1
    async with ClientSession() as http:
        for _ in range(100):
            async with http.get(f"{server_url}/healthz") as response:
                health = await response.json()
            if health["sessions"] == 0:
                break
            await asyncio.sleep(0.1)
    assert health == health | {"status": "ok", "sessions": 0}


async def test_sessions_over_the_limit_are_refused_as_overloaded(server_url: str) -> None:
    holders = [await connect(ws_url(server_url)) for _ in range(4)]  # the test server allows 4
    try:
        for holder in holders:
            await holder.send(START)
            assert isinstance(decode_server(await holder.recv()), Ready)
        events, close_code = await exchange(ws_url(server_url), [START])
        assert isinstance(events[0], Error) and events[0].code == "overloaded" and close_code == 1013
    finally:
        for holder in holders:
            await holder.close()
