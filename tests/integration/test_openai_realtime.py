"""The official openai SDK, unchanged, against GET /v1/realtime?intent=transcription on a real
server: GA and beta session updates, server VAD and manual commits, clear, errors, keys, and the
transcript the session leaves."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import numpy as np
import openai
import pytest
from scipy.signal import resample_poly
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from streamscribe.asr.engine import Engine
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings

from ..conftest import create_key, librispeech_utterance, start_server

pytestmark = pytest.mark.model

CHUNK_BYTES = 4800
"""100 ms of 24 kHz 16-bit mono: what a microphone client appends at a time."""
GA_VAD_SESSION = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": ""},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
            },
            "noise_reduction": {"type": "near_field"},
        }
    },
}
GA_MANUAL_SESSION = {
    "type": "transcription",
    "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}, "turn_detection": None}},
}


def pcm24k(samples: np.ndarray, silence_s: float = 0.0) -> bytes:
    """16 kHz float speech as a Realtime client sends it: 24 kHz 16-bit PCM, then some silence."""
    resampled = resample_poly(samples, 3, 2)
    padded = np.concatenate([resampled, np.zeros(int(silence_s * 24000))])
    return (np.clip(padded, -1.0, 1.0) * 32767).astype("<i2").tobytes()


async def append_all(connection: Any, audio: bytes) -> None:
    """Append as fast as the connection takes it (faster than real time)."""
    for offset in range(0, len(audio), CHUNK_BYTES):
        chunk = base64.b64encode(audio[offset : offset + CHUNK_BYTES]).decode()
        await connection.input_audio_buffer.append(audio=chunk)


async def receive_until(
    connection: Any, done: Callable[[list[Any]], bool], timeout_s: float = 120.0
) -> list[Any]:
    """Every event until `done` says the list holds what the test waits for."""
    received: list[Any] = []
    async with asyncio.timeout(timeout_s):
        while not done(received):
            received.append(await connection.recv())
    return received


def of_type(events: list[Any], kind: str) -> list[Any]:
    return [event for event in events if event.type == kind]


def completed_transcripts(events: list[Any]) -> list[str]:
    return [
        event.transcript for event in of_type(events, "conversation.item.input_audio_transcription.completed")
    ]


def item_events(events: list[Any], item_id: str) -> list[Any]:
    return [event for event in events if getattr(event, "item_id", None) == item_id]


def deltas_of(events: list[Any], item_id: str) -> str:
    return "".join(e.delta for e in item_events(events, item_id) if e.type.endswith("transcription.delta"))


def completed_count(count: int) -> Callable[[list[Any]], bool]:
    return lambda events: len(completed_transcripts(events)) >= count


@pytest.fixture(scope="module")
async def server_url(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    runner, url = await start_server(
        msgspec.structs.replace(settings, data_dir=tmp_path_factory.mktemp("realtime")), engine
    )
    yield url
    await runner.cleanup()


@pytest.fixture
def client(server_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server_url + "/v1", api_key="not-checked", max_retries=0)


async def stored_text(server_url: str, transcript_id: str) -> str:
    """The stored transcript's words, once the session that made it has handed it over."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(60):
        while True:
            async with http.get(f"{server_url}/v1/transcripts/{transcript_id}") as response:
                if response.status == 200:
                    stored = await response.json()
                    segments = stored["segments"]
                    return " ".join(w["text"] for s in segments for line in s["lines"] for w in line["words"])
                assert response.status == 404, await response.text()
            await asyncio.sleep(0.05)  # polled: the hand-over writes it right after the socket closes


async def test_server_vad_items_stream_final_words_as_deltas_and_complete_each_utterance(
    client: openai.AsyncOpenAI, server_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    samples, reference = jfk
    speech_end_ms = 1000 * samples.size / 16000 - 1000  # the last utterance ends after this
    async with client.realtime.connect(
        model="gpt-4o-transcribe", extra_query={"intent": "transcription"}
    ) as conn:
        created = await conn.recv()
        assert created.type == "session.created" and created.session.type == "transcription"
        session_id = created.session.id
        assert created.session.audio.input.format.rate == 24000
        assert created.session.audio.input.turn_detection.type == "server_vad"
        await conn.session.update(session=GA_VAD_SESSION)
        updated = await conn.recv()
        assert updated.type == "session.updated", updated
        transcription = updated.session.audio.input.transcription
        assert (transcription.model, transcription.language) == ("gpt-4o-transcribe", "en")
        sender = asyncio.create_task(append_all(conn, pcm24k(samples, silence_s=3.0)))

        def last_utterance_completed(events: list[Any]) -> bool:
            stopped = of_type(events, "input_audio_buffer.speech_stopped")
            if not stopped or stopped[-1].audio_end_ms < speech_end_ms:
                return False
            return events[-1].type.endswith(".completed") and events[-1].item_id == stopped[-1].item_id

        events = await receive_until(conn, last_utterance_completed)
        await sender
    assert not of_type(events, "error"), of_type(events, "error")
    started = of_type(events, "input_audio_buffer.speech_started")
    assert started and [e.item_id for e in of_type(events, "input_audio_buffer.committed")] == [
        e.item_id for e in started
    ], "every utterance is one item, committed in order"
    previous: str | None = None
    for item in started:
        own = item_events(events, item.item_id)
        kinds = [e.type for e in own]
        assert kinds[0] == "input_audio_buffer.speech_started"
        assert kinds[-3:] == [
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.completed",
        ], kinds
        assert set(kinds[1:-3]) <= {"conversation.item.input_audio_transcription.delta"}
        completed = own[-1]
        assert completed.transcript == deltas_of(events, item.item_id) and completed.content_index == 0
        assert completed.usage.type == "duration" and completed.usage.seconds > 0
        assert own[-2].previous_item_id == previous
        previous = item.item_id
        assert own[0].audio_start_ms < own[-3].audio_end_ms
    transcript = " ".join(completed_transcripts(events))
    assert word_error_rate(reference, transcript) <= 0.2, transcript
    event_ids = [event.event_id for event in events]
    assert len(set(event_ids)) == len(event_ids) and all(event_ids)
    stored = await stored_text(server_url, session_id)
    assert word_error_rate(reference, stored) <= 0.2, "the session's transcript is stored under its id"


async def test_with_turn_detection_off_each_commit_is_one_item_holding_exactly_its_audio(
    client: openai.AsyncOpenAI,
) -> None:
    (first, first_text), (second, second_text) = (
        librispeech_utterance("1272-135031-0000"),
        librispeech_utterance("1272-135031-0001"),
    )
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(session=GA_MANUAL_SESSION)
        updated = await conn.recv()
        assert updated.type == "session.updated" and updated.session.audio.input.turn_detection is None
        for samples in (first, second):
            await append_all(conn, pcm24k(samples, silence_s=0.3))
            await conn.input_audio_buffer.commit()
        events = await receive_until(conn, completed_count(2))
    assert not of_type(events, "error") and not of_type(events, "input_audio_buffer.speech_started")
    committed = of_type(events, "input_audio_buffer.committed")
    assert [e.previous_item_id for e in committed] == [None, committed[0].item_id]
    completed = of_type(events, "conversation.item.input_audio_transcription.completed")
    assert [e.item_id for e in completed] == [e.item_id for e in committed]
    for event in completed:
        assert event.transcript == deltas_of(events, event.item_id)
    assert word_error_rate(first_text, completed[0].transcript) <= 0.25, completed[0].transcript
    assert word_error_rate(second_text, completed[1].transcript) <= 0.25, completed[1].transcript


async def test_clear_drops_the_item_in_progress_and_the_next_commit_holds_only_later_audio(
    client: openai.AsyncOpenAI,
) -> None:
    (dropped, _), (kept, kept_text) = (
        librispeech_utterance("1988-147956-0009"),
        librispeech_utterance("777-126732-0002"),
    )
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.session.update(session=GA_MANUAL_SESSION)
        await append_all(conn, pcm24k(dropped, silence_s=0.3))
        await conn.input_audio_buffer.clear()
        await append_all(conn, pcm24k(kept, silence_s=1.0))
        await conn.input_audio_buffer.commit()
        events = await receive_until(conn, completed_count(1))
    assert [e.type for e in events[:2]] == ["session.created", "session.updated"]
    assert len(of_type(events, "input_audio_buffer.cleared")) == 1 and not of_type(events, "error")
    (committed,) = of_type(events, "input_audio_buffer.committed")
    (completed,) = of_type(events, "conversation.item.input_audio_transcription.completed")
    assert completed.item_id == committed.item_id and committed.previous_item_id is None
    assert word_error_rate(kept_text, completed.transcript) <= 0.25, completed.transcript


async def test_a_commit_right_after_speech_with_server_vad_is_one_item_and_leaves_no_empty_one(
    client: openai.AsyncOpenAI,
) -> None:
    (first, first_text), (second, second_text) = (
        librispeech_utterance("1272-135031-0000"),
        librispeech_utterance("1272-135031-0001"),
    )
    first_ms = 1000 * first.size / 16000
    second_from_ms = first_ms + 2000
    second_end_ms = second_from_ms + 1000 * second.size / 16000
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert (await conn.recv()).type == "session.created"  # server_vad is on
        await append_all(conn, pcm24k(first))
        await conn.input_audio_buffer.commit()  # push-to-talk: let go right after the last word
        # The microphone stays open: the VAD's late end of the first speech comes in the silence.
        await append_all(conn, pcm24k(np.zeros(32000), silence_s=0.0) + pcm24k(second, silence_s=3.0))

        def second_completed(events: list[Any]) -> bool:
            stopped = of_type(events, "input_audio_buffer.speech_stopped")
            if not stopped or stopped[-1].audio_end_ms < second_end_ms - 1500:
                return False
            return events[-1].type.endswith(".completed") and events[-1].item_id == stopped[-1].item_id

        events = await receive_until(conn, second_completed)
    assert not of_type(events, "error"), of_type(events, "error")
    started = of_type(events, "input_audio_buffer.speech_started")
    completed = of_type(events, "conversation.item.input_audio_transcription.completed")
    assert [e.item_id for e in completed] == [e.item_id for e in started], "every item is completed"
    assert all(e.transcript.strip() for e in completed), [e.transcript for e in completed]
    first_item, *second_items = started
    (first_stopped,) = of_type(item_events(events, first_item.item_id), "input_audio_buffer.speech_stopped")
    assert abs(first_stopped.audio_end_ms - first_ms) <= 50, "the first item ends at the commit"
    assert all(item.audio_start_ms >= second_from_ms - 500 for item in second_items), (
        "no item between the commit and the second speech"
    )
    assert word_error_rate(first_text, completed[0].transcript) <= 0.25, completed[0].transcript
    second_transcript = " ".join(e.transcript for e in completed[1:])
    assert word_error_rate(second_text, second_transcript) <= 0.25, second_transcript


async def test_a_quiet_client_is_not_cut_off_but_one_quiet_for_a_whole_session_is(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    quick = msgspec.structs.replace(
        settings,
        data_dir=tmp_path_factory.mktemp("realtime-quiet"),
        stream_idle_timeout_s=0.5,  # /v1/stream's: no bound here
        stream=msgspec.structs.replace(settings.stream, max_session_s=4.0),
    )
    runner, url = await start_server(quick, engine)
    try:
        quiet = openai.AsyncOpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
        async with quiet.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            assert (await conn.recv()).type == "session.created"
            await asyncio.sleep(2.0)  # a push-to-talk client between two turns
            async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
                figures = await response.text()
            assert 'streamscribe_live_sessions{transport="openai-realtime"} 1.0' in figures, (
                "named as `streamscribe bench --transport` names it"
            )
            await conn.session.update(session=GA_MANUAL_SESSION)
            assert (await conn.recv()).type == "session.updated", "the quiet session goes on"
            quiet_from = time.monotonic()
            abandoned = await asyncio.wait_for(conn.recv(), 30)
            assert abandoned.type == "error" and abandoned.error.code == "idle_timeout", abandoned
            assert time.monotonic() - quiet_from >= 3.5, "quiet for max_session_s: taken as abandoned"
            with pytest.raises(ConnectionClosedError) as closed:
                await conn.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        await runner.cleanup()


async def test_the_beta_transcription_session_update_is_answered_in_its_own_shape(server_url: str) -> None:
    ws_url = server_url.replace("http://", "ws://") + "/v1"  # the beta client assumes wss:// otherwise
    client = openai.AsyncOpenAI(
        base_url=server_url + "/v1", websocket_base_url=ws_url, api_key="-", max_retries=0
    )
    samples, reference = librispeech_utterance("84-121550-0000")
    session = {
        "input_audio_format": "pcm16",
        "input_audio_transcription": {"model": "gpt-4o-mini-transcribe", "language": "en", "prompt": "Dante"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        "input_audio_noise_reduction": {"type": "far_field"},
    }
    async with client.beta.realtime.connect(
        model="gpt-4o-mini-transcribe", extra_query={"intent": "transcription"}
    ) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.transcription_session.update(session=session)
        updated = await conn.recv()
        assert updated.type == "transcription_session.updated", updated
        assert updated.session.input_audio_format == "pcm16"
        transcription = updated.session.input_audio_transcription
        assert (transcription.model, transcription.language, transcription.prompt) == (
            "gpt-4o-mini-transcribe",
            "en",
            "Dante",
        )
        assert updated.session.turn_detection.type == "server_vad"
        sender = asyncio.create_task(append_all(conn, pcm24k(samples, silence_s=3.0)))
        events = await receive_until(conn, completed_count(1))
        await sender
    (started,) = of_type(events, "input_audio_buffer.speech_started")
    (completed,) = of_type(events, "conversation.item.input_audio_transcription.completed")
    assert completed.item_id == started.item_id
    assert word_error_rate(reference, completed.transcript) <= 0.25, completed.transcript


async def test_bad_events_are_answered_with_errors_and_the_session_goes_on(
    client: openai.AsyncOpenAI,
) -> None:
    samples, reference = librispeech_utterance("1272-135031-0000")

    def update(audio_input: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "session.update",
            "event_id": "evt_update",
            "session": {"type": "transcription", "audio": {"input": audio_input}},
        }

    bad_events: list[tuple[str, str, str | None]] = [  # (event, code, param)
        ("not json", "bad_message", None),
        ('{"type": "nonsense.event", "event_id": "evt_1"}', "bad_message", "type"),
        ('{"type": "response.create"}', "protocol_violation", "type"),
        ('{"type": "input_audio_buffer.append", "audio": "***"}', "bad_message", "audio"),
        ('{"type": "input_audio_buffer.append", "audio": "AAAA", "pitch": 3}', "bad_message", None),
        (msgspec.json.encode(update({"format": {"type": "audio/pcmu"}})).decode(), "unsupported_audio",
         "session.audio.input.format.type"),
        (msgspec.json.encode(update({"format": {"type": "audio/pcm", "rate": 16000}})).decode(), "unsupported_audio",
         "session.audio.input.format.rate"),
        (msgspec.json.encode(update({"transcription": {"model": "gpt-realtime"}})).decode(), "unknown_model",
         "session.audio.input.transcription.model"),
        ('{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty", None),
    ]  # fmt: skip
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert (await conn.recv()).type == "session.created"
        for raw, _, _ in bad_events:
            await conn.send_raw(raw)
        errors = await receive_until(conn, lambda events: len(events) == len(bad_events))
        assert [(e.type, e.error.code, e.error.param) for e in errors] == [
            ("error", code, param) for _, code, param in bad_events
        ]
        assert errors[1].error.event_id == "evt_1" and errors[5].error.event_id == "evt_update"
        assert all(e.error.type == "invalid_request_error" and e.error.message for e in errors)
        await conn.session.update(session=GA_MANUAL_SESSION)
        assert (await conn.recv()).type == "session.updated"
        await append_all(conn, pcm24k(samples))
        await conn.input_audio_buffer.commit()
        events = await receive_until(conn, completed_count(1))
    assert word_error_rate(reference, completed_transcripts(events)[0]) <= 0.25


async def test_a_conversation_session_is_refused_with_an_error_then_closed(
    client: openai.AsyncOpenAI,
) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        refusal = await conn.recv()
        assert refusal.type == "error" and refusal.error.code == "protocol_violation"
        assert "intent=transcription" in refusal.error.message
        with pytest.raises(ConnectionClosedError) as closed:
            await conn.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002


async def test_a_key_protected_server_takes_the_sdk_key_and_refuses_a_bad_one(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp("realtime-keys")
    key = create_key(data_dir, "realtime-user")
    runner, url = await start_server(msgspec.structs.replace(settings, data_dir=data_dir), engine)
    try:
        good = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        async with good.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            created = await conn.recv()
            assert created.type == "session.created"
        bad = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-ss-not-a-key", max_retries=0)
        with pytest.raises(InvalidStatus) as refused:
            async with bad.realtime.connect(extra_query={"intent": "transcription"}):
                pytest.fail("a bad key was let in")
        assert refused.value.response.status_code == 401, "refused before the upgrade"
        assert b"unauthorized" in refused.value.response.body
    finally:
        await runner.cleanup()
