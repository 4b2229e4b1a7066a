"""The live WebSocket under generated frames: any sequence of text and binary frames, with or
without a valid start, each answered with documented codes and closed in time; and speech sent
before the garbage is still delivered as finals."""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import urlencode

import msgspec
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamscribe.audio import to_pcm_s16le
from streamscribe.client.webrtc import WebRtcPeer
from streamscribe.errors import ERROR_CODES
from streamscribe.wire import Error, Final, ServerMessage, ServerUnion

from .conftest import ANSWER_TIMEOUT_S, FuzzServer, fuzz_settings, sessions_after
from .strategies import binary_frames, header_text, short_text, start_messages, text_frames

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


@fuzz_settings(150)
@given(
    after=st.integers(-(2**70), 2**70).map(str) | short_text,
    last_event_id=st.none() | header_text,
    sent=st.lists(text_frames | binary_frames, max_size=3),
)
def test_following_a_session_takes_any_position_and_frames(
    fuzz_server: FuzzServer, after: str, last_event_id: str | None, sent: list[str | bytes]
) -> None:
    url = f"{fuzz_server.url.replace('http', 'ws')}/v1/sessions/{fuzz_server.transcript_id}/events"
    headers = fuzz_server.auth | ({} if last_event_id is None else {"Last-Event-ID": last_event_id})

    async def follow() -> int | None:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            try:
                async with connect(url + "?" + urlencode({"after": after}), additional_headers=headers) as ws:
                    with contextlib.suppress(ConnectionClosed):
                        for frame in sent:
                            await ws.send(frame)
                    events = await read_all(ws)
                    position = last_event_id or after  # the header wins, as EventSource's resume
                    first = int(position) + 1  # a position the server cannot read is refused above
                    assert [event.seq for event in events] == list(
                        range(max(first, 1), max(first, 1) + len(events))
                    )
                    return ws.close_code
            except InvalidStatus as refused:
                assert json.loads(refused.response.body)["error"]["code"] in ERROR_CODES
                return refused.response.status_code

    assert asyncio.run(follow()) in {1000, 1008, 400, 404, 410}


@fuzz_settings(12)
@given(sent=st.lists(text_frames | binary_frames, min_size=1, max_size=4))
def test_a_webrtc_data_channel_takes_any_message(
    fuzz_server: FuzzServer, jfk: tuple[np.ndarray, str], sent: list[str | bytes]
) -> None:
    """A real peer streams a second of speech as its track, then sends the generated messages on
    its data channel and a stop: the events come back on the channel, with documented codes."""

    async def exchange_over_webrtc() -> list[ServerMessage]:
        peer = WebRtcPeer(jfk[0][:16000], speed=4.0)
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await peer.offer(fuzz_server.url, api_key=fuzz_server.key)
                await peer.track.finished.wait()
                for message in [*sent, '{"type":"stop","wait_for_transcript":false}']:
                    if peer.channel.readyState == "open":
                        peer.channel.send(message)
                await peer.closed.wait()
        finally:
            await peer.pc.close()
        return [timed.event for timed in peer.result.events]

    asyncio.run(sessions_after(fuzz_server.url, lambda held: held < 8))
    events = asyncio.run(exchange_over_webrtc())
    assert [event.seq for event in events] == list(range(1, len(events) + 1)), events
    assert all(event.code in ERROR_CODES for event in events if isinstance(event, Error)), events
