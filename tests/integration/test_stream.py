"""A real server on a free port, the real tiny.en model, real speech, streamed faster than real time."""

from __future__ import annotations

import asyncio

import numpy as np
from aiohttp import ClientSession
from websockets.asyncio.client import connect

from streamscribe.audio import SAMPLE_RATE, to_pcm_s16le
from streamscribe.bench.metrics import word_error_rate
from streamscribe.client.stream import stream_samples
from streamscribe.wire import Final, Partial, SpeechStarted, Start, UtteranceEnd, decode_server, encode

from ..conftest import librispeech_utterance
from .streams import assert_well_formed


def ws_url(server_url: str) -> str:
    return server_url.replace("http://", "ws://") + "/v1/stream"


def text_of(words: list) -> str:
    return " ".join(word.text for word in words)


async def test_jfk_streams_to_accurate_final_words(server_url: str, jfk: tuple[np.ndarray, str]) -> None:
    audio, reference = jfk
    result = await stream_samples(ws_url(server_url), audio, speed=3)  # paced, so partials have time to show
    assert_well_formed(result, audio.size / SAMPLE_RATE)
    kinds = {type(timed.event) for timed in result.events}
    assert {SpeechStarted, Partial, Final, UtteranceEnd} <= kinds
    assert word_error_rate(reference, text_of(result.finals)) < 0.1, text_of(result.finals)


async def test_concurrent_sessions_stay_isolated(server_url: str) -> None:
    utterances = [
        librispeech_utterance(u) for u in ("1272-135031-0000", "84-121550-0000", "1462-170142-0000")
    ]
    results = await asyncio.gather(
        *(stream_samples(ws_url(server_url), audio, speed=0) for audio, _ in utterances)
    )
    for index, (result, (audio, reference)) in enumerate(zip(results, utterances, strict=True)):
        assert_well_formed(result, audio.size / SAMPLE_RATE)
        own = word_error_rate(reference, text_of(result.finals))
        assert own < 0.3, (reference, text_of(result.finals))
        for other_index, (_, other) in enumerate(utterances):
            if other_index != index:
                assert word_error_rate(other, text_of(result.finals)) > own + 0.5


async def test_other_rates_and_channels_are_converted(server_url: str, jfk: tuple[np.ndarray, str]) -> None:
    audio, reference = jfk
    import av

    resampler = av.AudioResampler(format="flt", layout="stereo", rate=44100)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    stereo = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in resampler.resample(frame) + resampler.resample(None)]
    )
    payload = stereo.astype("<f4").tobytes()
    start = Start(sample_rate=44100, encoding="pcm_f32le", channels=2)
    finals: list = []
    async with connect(ws_url(server_url)) as ws:
        await ws.send(encode(start).decode())
        for offset in range(0, len(payload), 35280):  # 100 ms frames
            await ws.send(payload[offset : offset + 35280])
        await ws.send('{"type":"stop"}')
        async for message in ws:
            event = decode_server(message)
            if isinstance(event, Final):
                finals.extend(event.words)
    assert word_error_rate(reference, text_of(finals)) < 0.15, text_of(finals)


async def test_finalize_commits_without_waiting_for_silence(
    server_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    audio, _ = jfk
    async with connect(ws_url(server_url)) as ws:
        await ws.send(encode(Start()).decode())
        await ws.send(to_pcm_s16le(audio[: int(2.2 * SAMPLE_RATE)]))  # mid-sentence
        await ws.send('{"type":"finalize"}')
        final = None
        async with asyncio.timeout(30):
            async for message in ws:
                event = decode_server(message)
                if isinstance(event, Final):
                    final = event
                    break
        assert final is not None and "fellow" in text_of(final.words).lower()
        await ws.send('{"type":"stop"}')
        async for _ in ws:
            pass
        assert ws.close_code == 1000


async def test_silence_and_noise_are_not_transcribed(server_url: str) -> None:
    rng = np.random.default_rng(7)
    quiet = (rng.standard_normal(6 * SAMPLE_RATE) * 0.003).astype(np.float32)
    result = await stream_samples(ws_url(server_url), quiet, speed=0)
    assert_well_formed(result, 6.0)
    assert result.finals == []
    assert not any(isinstance(timed.event, SpeechStarted | Partial) for timed in result.events)


async def test_health_and_schema(server_url: str) -> None:
    async with ClientSession() as http:
        async with http.get(f"{server_url}/healthz") as response:
            health = await response.json()
        async with http.get(f"{server_url}/v1/schema") as response:
            schema = await response.json()
    assert health["status"] == "ok" and health["model"] == "tiny.en"
    assert "Final" in schema["$defs"] and schema["max_frame_bytes"] == 1 << 20
