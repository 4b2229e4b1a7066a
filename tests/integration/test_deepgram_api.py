"""The official deepgram-sdk (7.x), unchanged and pointed at a real server through its
environment alone, on real speech: GET /v1/listen streams (interim and final Results,
SpeechStarted, UtteranceEnd, Finalize, KeepAlive, CloseStream and Metadata, Deepgram's refusals
and closes), POST /v1/listen transcribes a file in Deepgram's prerecorded shape, and a server
with API keys takes the SDK's."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import numpy as np
import pytest
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.api_error import ApiError
from deepgram.errors import BadRequestError
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from deepgram.listen.v1.types import (
    ListenV1Error,
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from deepgram.types import ListenV1Response, ListenV1ResponseResultsChannelsItemAlternativesItem
from scipy.signal import resample_poly
from websockets.exceptions import ConnectionClosedError

from streamscribe.asr.engine import Engine
from streamscribe.audio import SAMPLE_RATE, to_pcm_s16le
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings

from ..conftest import create_key, librispeech_utterance, start_keyed_server, start_server
from ..unit.test_pcm_converter import mulaw_encode

pytestmark = pytest.mark.model

_FRAME_BYTES = SAMPLE_RATE // 10 * 2
"""100 ms of 16 kHz linear16."""
_RAW = {"encoding": "linear16", "sample_rate": 16000}
_WAIT_S = 60.0
"""The longest any answer may take (the model decodes on a CPU)."""


def sdk_client(base_url: str, api_key: str = "not-checked") -> AsyncDeepgramClient:
    """The SDK pointed at our server (no other setting changed)."""
    socket_url = base_url.replace("http://", "ws://")
    environment = DeepgramClientEnvironment(
        base=base_url, production=socket_url, agent=socket_url, agent_rest=base_url
    )
    return AsyncDeepgramClient(api_key=api_key, environment=environment, timeout=120)


@pytest.fixture(scope="module")
async def live_url(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """Audio is taken at 4x real time whatever the client sends: decodes keep up, so partials
    come (the client itself sends everything at once)."""
    paced = msgspec.structs.replace(
        settings, data_dir=tmp_path_factory.mktemp("deepgram-live"), max_stream_speed=4.0, stream_burst_s=1.0
    )
    runner, url = await start_server(paced, engine)
    yield url
    await runner.cleanup()


@pytest.fixture(scope="module")
async def file_url(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """With the second pass (tiny.en, so that it is quick): files are answered with its version."""
    finalize_on = msgspec.structs.replace(
        settings,
        data_dir=tmp_path_factory.mktemp("deepgram-files"),
        finalize=msgspec.structs.replace(settings.finalize, enabled=True, model="tiny.en"),
    )
    runner, url = await start_server(finalize_on, engine)
    yield url
    await runner.cleanup()


async def send_audio(socket: AsyncV1SocketClient, pcm: bytes) -> None:
    for offset in range(0, len(pcm), _FRAME_BYTES):
        await socket.send_media(pcm[offset : offset + _FRAME_BYTES])


async def until_closed(socket: AsyncV1SocketClient) -> list[Any]:
    """Every message until the server closes the stream normally."""
    async with asyncio.timeout(_WAIT_S):
        return [message async for message in socket]


def final_results(messages: list[Any]) -> list[ListenV1Results]:
    return [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]


def best_alternative(answer: object) -> ListenV1ResponseResultsChannelsItemAlternativesItem:
    """The one alternative of the one channel of a prerecorded answer."""
    assert isinstance(answer, ListenV1Response), answer
    [channel] = answer.results.channels
    assert channel.alternatives is not None
    return channel.alternatives[0]


def final_text(messages: list[Any]) -> str:
    return " ".join(r.channel.alternatives[0].transcript for r in final_results(messages)).strip()


async def test_a_live_stream_of_real_speech_gives_deepgrams_messages(
    live_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    audio, reference = jfk
    pcm = to_pcm_s16le(audio)
    async with sdk_client(live_url).listen.v1.connect(
        model="nova-3",
        **_RAW,
        interim_results="true",
        vad_events="true",
        utterance_end_ms="1000",
        punctuate="true",
        numerals="true",  # a Deepgram option this server has no use for: ignored
        keyterm=["Kennedy"],
    ) as socket:
        await send_audio(socket, pcm)
        await socket.send_close_stream()
        messages = await until_closed(socket)

    assert isinstance(messages[-1], ListenV1Metadata), messages[-1]
    metadata = messages[-1]
    assert metadata.duration == pytest.approx(audio.size / SAMPLE_RATE, abs=0.05)
    assert metadata.sha256 == hashlib.sha256(pcm).hexdigest() and metadata.channels == 1
    assert isinstance(messages[0], ListenV1SpeechStarted)
    interim = [m for m in messages if isinstance(m, ListenV1Results) and not m.is_final]
    finals = final_results(messages)
    assert interim and finals, [type(m).__name__ for m in messages]
    assert any(isinstance(m, ListenV1UtteranceEnd) for m in messages)
    assert finals[-1].speech_final, "the last final ends the last utterance"
    assert {r.metadata.request_id for r in interim + finals} == {metadata.request_id}
    text = final_text(messages)
    assert word_error_rate(reference, text) < 0.15, text
    assert any(mark in text for mark in ",.") and text[0].isupper(), "punctuate=true keeps Whisper's text"
    words = [w for r in finals for w in r.channel.alternatives[0].words]
    assert all(w.word == w.word.lower() and w.word.strip(",.?!") == w.word for w in words)
    assert all(a.start <= b.start and 0 <= a.start <= a.end <= 11.05 for a, b in itertools.pairwise(words))
    for earlier, later in itertools.pairwise(finals):  # finals tile the stream
        assert later.start == pytest.approx(earlier.start + earlier.duration, abs=0.002)
    for end in (m for m in messages if isinstance(m, ListenV1UtteranceEnd)):
        assert 0 < end.last_word_end <= 11.05


async def test_a_phone_call_in_8_khz_mulaw_is_transcribed(live_url: str, jfk: tuple[np.ndarray, str]) -> None:
    """Telephony's encoding (what a Twilio media stream carries), decoded by G.711's table."""
    audio, reference = jfk
    narrowband = resample_poly(audio, 1, 2).astype(np.float32)
    codes = mulaw_encode(narrowband)
    async with sdk_client(live_url).listen.v1.connect(
        model="nova-2-phonecall", encoding="mulaw", sample_rate=8000
    ) as socket:
        for offset in range(0, len(codes), 800):  # 100 ms of 8 kHz mu-law
            await socket.send_media(codes[offset : offset + 800])
        await socket.send_close_stream()
        messages = await until_closed(socket)
    assert isinstance(messages[-1], ListenV1Metadata)
    assert word_error_rate(reference, final_text(messages)) < 0.2


async def test_finalize_answers_with_from_finalize_then_the_stream_goes_on(live_url: str) -> None:
    audio, reference = librispeech_utterance("1272-135031-0000")
    pcm = to_pcm_s16le(audio)
    half = len(pcm) // 2 // _FRAME_BYTES * _FRAME_BYTES
    async with sdk_client(live_url).listen.v1.connect(model="nova-2", **_RAW) as socket:
        await send_audio(socket, pcm[:half])
        await socket.send_finalize()
        before: list[Any] = []
        async with asyncio.timeout(_WAIT_S):
            while not any(r.from_finalize for r in final_results(before)):
                before.append(await socket.recv())
        await socket.send_keep_alive()
        await send_audio(socket, pcm[half:])
        await socket.send_close_stream()
        after = await until_closed(socket)
    answer = next(r for r in final_results(before) if r.from_finalize)
    assert answer.channel.alternatives[0].words, "the finalize committed what was heard"
    assert answer.start + answer.duration <= half / 2 / SAMPLE_RATE + 0.05
    assert not any(r.from_finalize for r in final_results(after))
    assert isinstance(after[-1], ListenV1Metadata)
    text = final_text(before + after)
    assert text == text.lower() and not any(mark in text for mark in ",.?!"), "punctuate is off"
    assert word_error_rate(reference, text) < 0.35, text


async def test_keepalive_holds_a_quiet_stream_and_silence_ends_one_with_net_0001(
    settings: ServerSettings,
    engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
    jfk: tuple[np.ndarray, str],
) -> None:
    impatient = msgspec.structs.replace(
        settings, data_dir=tmp_path_factory.mktemp("deepgram-idle"), stream_idle_timeout_s=1.0
    )
    runner, url = await start_server(impatient, engine)
    try:
        async with sdk_client(url).listen.v1.connect(model="nova-3", **_RAW) as socket:
            for _ in range(4):  # 2 s of KeepAlive, twice the idle timeout: nothing comes, no close
                await socket.send_keep_alive()
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(socket.recv(), timeout=0.5)
            await send_audio(socket, to_pcm_s16le(jfk[0][: 2 * SAMPLE_RATE]))
            await socket.send_close_stream()
            assert isinstance((await until_closed(socket))[-1], ListenV1Metadata)

        async with sdk_client(url).listen.v1.connect(model="nova-3", **_RAW) as socket:
            received: list[Any] = []
            with pytest.raises(ConnectionClosedError) as closed:
                async with asyncio.timeout(_WAIT_S):
                    async for message in socket:
                        received.append(message)
    finally:
        await runner.cleanup()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert closed.value.rcvd.reason.startswith("NET-0001")
    assert [(m.variant, m.code) for m in received if isinstance(m, ListenV1Error)] == [
        ("idle_timeout", "NET-0001")
    ]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"encoding": "nonsense", "sample_rate": 16000}, "encoding"),
        ({"encoding": "linear16", "sample_rate": "abc"}, "sample_rate"),
        ({"encoding": "linear16", "sample_rate": 16000, "interim_results": "sometimes"}, "interim_results"),
        ({}, "encoding and sample_rate are needed"),
        ({"model": "gpt-5", **_RAW}, "No such model"),
        ({"language": "xx-YY", **_RAW}, "language"),
    ],
)
async def test_bad_parameters_are_refused_before_the_upgrade_as_deepgram_refuses_them(
    live_url: str, options: dict[str, Any], named: str
) -> None:
    connect_options = {"model": "nova-3", **options}
    with pytest.raises(ApiError) as refused:
        async with sdk_client(live_url).listen.v1.connect(**connect_options):
            pass
    assert refused.value.status_code == 400
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live_url}/v1/listen", params=connect_options, headers=upgrade) as response:
            body = await response.json()
            assert response.status == 400 and response.headers["dg-request-id"] == body["request_id"]
    assert body["err_code"] == "Bad Request" and named in body["err_msg"], body


async def test_a_plain_get_is_told_that_the_stream_is_a_websocket(live_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live_url}/v1/listen", params=_RAW) as response:
            body = await response.json()
            assert response.status == 400 and response.headers["dg-error"].startswith("GET /v1/listen is")
    assert body["err_code"] == "Bad Request" and "WebSocket" in body["err_msg"]


async def test_a_key_protected_server_takes_the_sdks_api_key(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path]
) -> None:
    data_dir = tmp_path_factory.mktemp("deepgram-keys")
    runner, url, key = await start_keyed_server(settings, engine, data_dir, "carol")
    try:
        audio, _reference = librispeech_utterance("84-121550-0000")
        async with sdk_client(url, api_key=key).listen.v1.connect(model="nova-3", **_RAW) as socket:
            await send_audio(socket, to_pcm_s16le(audio))
            await socket.send_close_stream()
            messages = await until_closed(socket)
        assert isinstance(messages[-1], ListenV1Metadata) and final_text(messages)
        with pytest.raises(ApiError) as refused:
            async with sdk_client(url, api_key="sk-ss-wrong").listen.v1.connect(model="nova-3", **_RAW):
                pass
        assert refused.value.status_code == 401
        solo = sdk_client(url, api_key=create_key(data_dir, "solo", "--max-streams", "1"))
        async with solo.listen.v1.connect(model="nova-3", **_RAW):  # admitted at the upgrade
            with pytest.raises(ApiError) as overloaded:
                async with solo.listen.v1.connect(model="nova-3", **_RAW):
                    pass
        assert overloaded.value.status_code == 429
        answer = await sdk_client(url, api_key=key).listen.v1.media.transcribe_file(
            request=media["jfk.mp3"].read_bytes()
        )
        assert "country" in (best_alternative(answer).transcript or "")
        with pytest.raises(ApiError) as wrong:
            await sdk_client(url, api_key="sk-ss-wrong").listen.v1.media.transcribe_file(request=b"RIFF")
    finally:
        await runner.cleanup()
    body: dict[str, str] = wrong.value.body
    assert wrong.value.status_code == 401 and body["err_code"] == "INVALID_AUTH"


async def test_a_file_is_answered_in_deepgrams_prerecorded_shape(
    file_url: str, media: dict[str, Path], jfk: tuple[np.ndarray, str]
) -> None:
    file = media["jfk.mp3"].read_bytes()
    client = sdk_client(file_url)
    raw = await client.listen.v1.media.with_raw_response.transcribe_file(
        request=file, model="nova-3", smart_format=True, utterances=True, keyterm=["Kennedy"]
    )
    answer = raw.data
    assert isinstance(answer, ListenV1Response)
    ListenV1Response.model_validate(answer.dict())  # every field the SDK names, of its type
    assert raw.headers["x-transcript-version"] == "2", "the second pass's version"
    metadata = answer.metadata
    assert metadata.sha256 == hashlib.sha256(file).hexdigest()
    assert metadata.duration == pytest.approx(11.0, abs=0.1) and metadata.models[0] in metadata.model_info
    best = best_alternative(answer)
    assert best.transcript is not None and word_error_rate(jfk[1], best.transcript) < 0.1, best.transcript
    words = best.words or []
    assert words and all(
        w.start is not None and w.end is not None and 0 <= w.start <= w.end <= 11.05 for w in words
    )
    starts = [w.start or 0.0 for w in words]
    assert starts == sorted(starts)
    assert all(w.speaker is None for w in words), "diarize was not asked for"
    assert best.paragraphs is not None and best.paragraphs.paragraphs, "smart_format gives paragraphs"
    assert answer.results.utterances, "utterances=true"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{file_url}/v1/transcripts/{metadata.request_id}") as response:
            assert (await response.json())["info"]["settings"]["prompt"] == "Kennedy"


def two_speakers(folder: Path) -> tuple[Path, float]:
    """Two LibriSpeech readers one after the other, a second of silence between: the file and
    where the second begins."""
    first, _ = librispeech_utterance("1272-135031-0000")
    second, _ = librispeech_utterance("84-121550-0000")
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    path = folder / "two-speakers.wav"
    with wave.open(str(path), "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(SAMPLE_RATE)
        recording.writeframes(to_pcm_s16le(np.concatenate([first, pause, second])))
    return path, (first.size + pause.size) / SAMPLE_RATE


async def test_diarize_labels_each_word_with_its_speaker(
    file_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path, second_starts_s = two_speakers(tmp_path_factory.mktemp("two-speakers"))
    answer = await sdk_client(file_url).listen.v1.media.transcribe_file(
        request=path.read_bytes(), diarize=True, punctuate=True
    )
    words = best_alternative(answer).words or []
    assert {w.speaker for w in words} == {0, 1}
    first = [w.speaker for w in words if w.start is not None and w.start < second_starts_s]
    second = [w.speaker for w in words if w.start is not None and w.start >= second_starts_s]
    assert first.count(0) > 0.9 * len(first) and second.count(1) > 0.9 * len(second)


async def test_a_url_to_fetch_is_refused(file_url: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        await sdk_client(file_url).listen.v1.media.transcribe_url(
            url="http://169.254.169.254/latest/meta-data/"
        )
    body: dict[str, str] = refused.value.body
    assert refused.value.status_code == 400 and body["err_code"] == "Bad Request" and "URL" in body["err_msg"]
