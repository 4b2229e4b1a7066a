"""The official openai SDK, unchanged, against POST /v1/audio/transcriptions on a real server
with the second pass on: every format a user uploads, every response format, and its errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import openai
import pytest
import srt
import webvtt

from streamscribe.asr.engine import Engine
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings

from ..conftest import MEDIA_ENCODINGS, start_server

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
async def client(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[openai.AsyncOpenAI]:
    finalize_on = msgspec.structs.replace(
        settings,
        data_dir=tmp_path_factory.mktemp("openai"),
        finalize=msgspec.structs.replace(settings.finalize, enabled=True),
    )
    runner, url = await start_server(finalize_on, engine)
    yield openai.AsyncOpenAI(base_url=url + "/v1", api_key="not-checked", max_retries=0)
    await runner.cleanup()


@pytest.mark.parametrize("name", [*(f"jfk.{extension}" for extension in MEDIA_ENCODINGS), "jfk.mp4"])
async def test_the_sdk_transcribes_every_common_format(
    client: openai.AsyncOpenAI, media: dict[str, Path], jfk: tuple[object, str], name: str
) -> None:
    with media[name].open("rb") as file:
        result = await client.audio.transcriptions.create(file=file, model="whisper-1")
    assert word_error_rate(jfk[1], result.text) <= 0.1, result.text
    assert result.usage is not None and result.usage.type == "duration" and 11 <= result.usage.seconds <= 12


async def test_verbose_json_has_segments_and_words_in_time_order(
    client: openai.AsyncOpenAI, media: dict[str, Path], jfk: tuple[object, str]
) -> None:
    with media["jfk.mp3"].open("rb") as file:
        result = await client.audio.transcriptions.create(
            file=file,
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
            prompt="President Kennedy's inaugural address.",
        )
    assert result.language == "english" and result.duration == pytest.approx(11.0, abs=0.05)
    assert result.words and result.segments
    assert word_error_rate(jfk[1], " ".join(word.word for word in result.words)) <= 0.1
    starts = [word.start for word in result.words]
    assert starts == sorted(starts) and all(0 <= w.start <= w.end <= 11.05 for w in result.words)
    assert " ".join(segment.text.strip() for segment in result.segments) == result.text
    assert [segment.id for segment in result.segments] == list(range(len(result.segments)))


async def test_text_srt_vtt_and_diarized_json(client: openai.AsyncOpenAI, media: dict[str, Path]) -> None:
    async def create(response_format: str) -> object:
        with media["jfk.ogg"].open("rb") as file:
            return await client.audio.transcriptions.create(
                file=file,
                model="whisper-1",
                response_format=response_format,  # type: ignore[call-overload]
            )

    text, captions, web_captions, diarized = await asyncio.gather(
        create("text"), create("srt"), create("vtt"), create("diarized_json")
    )
    assert isinstance(text, str) and "ask not what your country can do for you" in text.lower()
    cues = list(srt.parse(captions))  # type: ignore[arg-type]
    assert cues and all(len(line) <= 42 for cue in cues for line in cue.content.split("\n"))
    assert len(webvtt.from_string(web_captions)) == len(cues)  # type: ignore[arg-type]
    assert {segment.speaker for segment in diarized.segments} == {"A"}  # type: ignore[attr-defined]
    assert diarized.segments[0].type == "transcript.text.segment"  # type: ignore[attr-defined]


async def test_the_sdk_raises_its_own_errors_with_our_codes(
    client: openai.AsyncOpenAI, media: dict[str, Path]
) -> None:
    with pytest.raises(openai.BadRequestError) as empty:
        await client.audio.transcriptions.create(file=("empty.mp3", b""), model="whisper-1")
    assert empty.value.code == "empty_upload"
    with pytest.raises(openai.UnprocessableEntityError) as silent:
        await client.audio.transcriptions.create(file=media["silent-video.mp4"], model="whisper-1")
    assert silent.value.code == "no_audio_stream" and "no audio stream" in silent.value.message
    with pytest.raises(openai.APIStatusError) as text:
        await client.audio.transcriptions.create(
            file=("notes.txt", b"not audio at all\n" * 50), model="whisper-1"
        )
    assert text.value.status_code == 415 and text.value.code == "unsupported_audio"
    with pytest.raises(openai.BadRequestError) as model:
        await client.audio.transcriptions.create(file=media["jfk.mp3"], model="large-v9")
    assert model.value.code == "unknown_model" and "base" in model.value.message


async def test_upload_options_reach_the_second_pass(
    client: openai.AsyncOpenAI, media: dict[str, Path]
) -> None:
    """POST /v1/transcriptions with wait: the final version comes from the second pass, run with
    the options the upload gave."""
    import aiohttp

    base_url = str(client.base_url).removesuffix("/v1/")
    params = {"wait": "true", "diarize": "false", "prompt": "Kennedy, 1961.", "model": "base"}
    async with aiohttp.ClientSession() as http:
        with media["jfk.webm"].open("rb") as body:
            async with http.post(base_url + "/v1/transcriptions", params=params, data=body) as response:
                assert response.status == 200, await response.text()
                final = await response.json()
    assert final["version"] == 2 and final["info"]["parent"] == 1
    assert (
        final["info"]["settings"]["diarize"] is False
        and final["info"]["settings"]["prompt"] == "Kennedy, 1961."
    )
    assert final["info"]["models"] == {"second_pass": "base", "diarizer": "none"}
    assert all(segment["speaker"] is None for segment in final["segments"])
