"""The live WebSocket under generated frames: any sequence of text and binary frames, with or
without a valid start, each answered with documented codes and closed in time; and speech sent
before the garbage is still delivered as finals."""

from __future__ import annotations

import asyncio
import contextlib
import json

import msgspec
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streamscribe.audio import to_pcm_s16le
from streamscribe.errors import ERROR_CODES
from streamscribe.wire import Error, Final, ServerMessage, ServerUnion

from .conftest import ANSWER_TIMEOUT_S, FuzzServer, fuzz_settings, sessions_after
from .strategies import binary_frames, header_text, start_messages, text_frames

CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013}
_events = msgspec.json.Decoder(ServerUnion)
frames = st.lists(text_frames | binary_frames, max_size=8)


async def exchange(
    server: FuzzServer, sent: list[str | bytes], headers: dict[str, str]
) -> tuple[list[ServerMessage], int | None]:
    """Send the frames and a stop; read every event until the server closes, in time."""
    events: list[ServerMessage] = []
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        async with connect(server.url.replace("http", "ws") + "/v1/stream", additional_headers=headers,
                           max_size=None) as ws:  # fmt: skip
            with contextlib.suppress(ConnectionClosed):
                for frame in [*sent, '{"type":"stop","wait_for_transcript":false}']:
                    await ws.send(frame)
            events = await read_all(ws)
        return events, ws.close_code


async def read_all(ws: ClientConnection) -> list[ServerMessage]:
    events = []
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            assert isinstance(message, str), "the server sends text frames only"
            events.append(_events.decode(message))
    return events


def check(events: list[ServerMessage], close_code: int | None, sent: object) -> None:
    assert close_code in CLOSE_CODES, (close_code, sent)
    for event in events:
        if isinstance(event, Error):
            assert event.code in ERROR_CODES, (event, sent)
    seqs = [event.seq for event in events]
    assert seqs == list(range(1, len(seqs) + 1)), ("seq counts up from 1", seqs, sent)


@fuzz_settings(400)
@given(sent=frames)
def test_any_frames_are_answered_with_documented_codes_and_closed(
    fuzz_server: FuzzServer, sent: list[str | bytes]
) -> None:
    events, close_code = asyncio.run(exchange(fuzz_server, sent, fuzz_server.auth))
    check(events, close_code, sent)


@fuzz_settings(300)
@given(start=start_messages, audio=st.lists(binary_frames, max_size=4), tail=frames)
def test_a_started_stream_takes_any_audio_and_messages(
    fuzz_server: FuzzServer, start: dict, audio: list[bytes], tail: list[str | bytes]
) -> None:
    sent = [json.dumps(start), *audio, *tail]
    events, close_code = asyncio.run(exchange(fuzz_server, sent, fuzz_server.auth))
    check(events, close_code, sent)


@fuzz_settings(60)
@given(authorization=header_text)
def test_a_wrong_credential_is_refused_before_the_upgrade(
    fuzz_server: FuzzServer, authorization: str
) -> None:
    from websockets.exceptions import InvalidStatus

    async def attempt() -> int:
        try:
            await exchange(fuzz_server, ['{"type":"start"}'], {"Authorization": authorization})
        except InvalidStatus as refused:
            assert json.loads(refused.response.body)["error"]["code"] == "unauthorized"
            return refused.response.status_code
        return 101

    assert asyncio.run(attempt()) == 401


@fuzz_settings(8)
@given(garbage=st.lists(text_frames | binary_frames, min_size=1, max_size=4))
def test_speech_sent_before_garbage_is_still_delivered(
    fuzz_server: FuzzServer, jfk: tuple[np.ndarray, str], garbage: list[str | bytes]
) -> None:
    asyncio.run(sessions_after(fuzz_server.url, lambda held: held < 8))  # room for it to be admitted
    pcm = to_pcm_s16le(jfk[0])
    speech = [pcm[offset : offset + 32000] for offset in range(0, len(pcm), 32000)]
    events, close_code = asyncio.run(
        exchange(fuzz_server, ['{"type":"start"}', *speech, *garbage], fuzz_server.auth)
    )
    check(events, close_code, garbage)
    finals = " ".join(word.text for event in events if isinstance(event, Final) for word in event.words)
    assert "country" in finals.lower(), (finals, events[:3], garbage)
