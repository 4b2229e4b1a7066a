"""A real server decoding with whisper.cpp: the same /v1/stream, the same events, another engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import numpy as np
import pytest
from aiohttp import ClientSession

from streamscribe.asr.models import load_engine
from streamscribe.audio import SAMPLE_RATE
from streamscribe.bench.metrics import word_error_rate
from streamscribe.client.stream import stream_samples
from streamscribe.config import ServerSettings
from streamscribe.wire import Final, Partial, SpeechStarted, UtteranceEnd

from ..conftest import librispeech_utterance, start_server
from .streams import assert_well_formed


@pytest.fixture(scope="module")
async def whisper_cpp_url(
    settings: ServerSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A second server beside the session's, on its own data directory (one server a directory)."""
    data_dir = tmp_path_factory.mktemp("whisper-cpp-data")
    whisper_cpp = msgspec.structs.replace(settings, engine="whisper.cpp", data_dir=data_dir)
    runner, url = await start_server(whisper_cpp, load_engine(whisper_cpp))
    yield url
    await runner.cleanup()


def text_of(words: list) -> str:
    return " ".join(word.text for word in words)


async def test_healthz_names_the_engine(whisper_cpp_url: str) -> None:
    async with ClientSession() as http, http.get(f"{whisper_cpp_url}/healthz") as response:
        health = await response.json()
    assert response.status == 200
    assert (health["engine"], health["device"], health["model"]) == ("whisper.cpp", "cpu", "tiny.en")


async def test_a_live_stream_gets_partial_and_final_words(
    whisper_cpp_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    audio, reference = jfk
    url = whisper_cpp_url.replace("http://", "ws://") + "/v1/stream"
    result = await stream_samples(url, audio, speed=3)  # paced, so partials have time to show
    assert_well_formed(result, audio.size / SAMPLE_RATE)
    kinds = {type(timed.event) for timed in result.events}
    assert {SpeechStarted, Partial, Final, UtteranceEnd} <= kinds
    assert word_error_rate(reference, text_of(result.finals)) < 0.1, text_of(result.finals)


async def test_streams_at_once_are_decoded_apart(whisper_cpp_url: str) -> None:
    """Two streams at once on one engine: each gets its own words, none of the other's."""
    utterances = [librispeech_utterance(u) for u in ("1272-135031-0000", "84-121550-0000")]
    url = whisper_cpp_url.replace("http://", "ws://") + "/v1/stream"
    results = await asyncio.gather(*(stream_samples(url, audio, speed=0) for audio, _ in utterances))
    for result, (audio, reference) in zip(results, utterances, strict=True):
        assert_well_formed(result, audio.size / SAMPLE_RATE)
        assert word_error_rate(reference, text_of(result.finals)) < 0.3, (reference, text_of(result.finals))
