"""The Python SDK (streamscribe.client) against a real server with real speech: a file, async and
plain iterators of chunks, stop, uploads with progress, following, transcripts and exports, the
blocking SyncClient, a server with keys; and resume: the stream's TCP connection cut through
tests/cut_proxy.py (no close frame) mid-speech and while it waits for its transcript, after which
the SDK comes back by itself with one unbroken stream of events."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from streamscribe.asr.engine import Engine
from streamscribe.audio import SAMPLE_RATE, to_pcm_s16le
from streamscribe.bench.metrics import word_error_rate
from streamscribe.client import Client, ConnectionLost, Stream, SyncClient
from streamscribe.config import ServerSettings
from streamscribe.errors import InvalidRequest, ResumeExpired, TranscriptNotFound, Unauthorized
from streamscribe.transcript import Transcript
from streamscribe.wire import (
    Closed,
    Final,
    Finalizing,
    Ready,
    Resumed,
    ServerMessage,
    TranscriptReady,
    UtteranceEnd,
    Word,
)

from ..conftest import librispeech_utterance, speech_file, start_keyed_server, start_server
from ..cut_proxy import CutProxy

pytestmark = pytest.mark.model

WER_LIMIT = 0.2
"""tiny.en live finals of clean read speech."""
_WAIT_S = 120.0
"""Generous: a loaded machine decodes slowly."""


def jfk_wav() -> Path:
    return speech_file("jfk/jfk.wav")


def text_of(words: list[Word]) -> str:
    return " ".join(word.text for word in words)


def assert_one_stream(events: list[ServerMessage]) -> list[Word]:
    """The session's events (a Resumed is not one) as one stream: ready first, closed last, seq
    strictly increasing, each final word once and in time order. The finals."""
    session = [event for event in events if not isinstance(event, Resumed)]
    assert isinstance(session[0], Ready) and isinstance(session[-1], Closed)
    seqs = [event.seq for event in session]
    assert seqs == sorted(set(seqs)), f"seq repeated or out of order: {seqs}"
    finals = [word for event in session if isinstance(event, Final) for word in event.words]
    for earlier, later in itertools.pairwise(finals):
        assert earlier.end <= later.start + 1e-6, f"a final repeated or out of order: {earlier}, {later}"
    return finals


async def chunks_of(audio: np.ndarray, as_bytes: bool) -> AsyncIterator[bytes | np.ndarray]:
    for offset in range(0, audio.size, SAMPLE_RATE // 5):
        piece = audio[offset : offset + SAMPLE_RATE // 5]
        yield to_pcm_s16le(piece) if as_bytes else piece


async def test_a_file_streams_as_typed_events_and_sums_up(
    server_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    async with Client(server_url) as client, client.stream(jfk_wav(), language="en") as stream:
        events = [event async for event in stream]
        summary = await stream.result()
    finals = assert_one_stream(events)
    assert word_error_rate(jfk[1], text_of(finals)) < WER_LIMIT
    assert summary.finals == finals == stream.finals and summary.text == text_of(finals)
    assert summary.session_id == stream.session_id and summary.transcript_id == stream.session_id
    assert summary.resumes == 0 and summary.errors == []
    assert abs(summary.audio_s - jfk[0].size / SAMPLE_RATE) < 0.05, "every sample was sent once"


@pytest.mark.parametrize("as_bytes", [True, False], ids=["pcm-bytes", "float32-arrays"])
async def test_an_async_iterator_of_chunks_is_a_source(server_url: str, as_bytes: bool) -> None:
    audio, reference = librispeech_utterance("1272-135031-0000")
    async with Client(server_url) as client:
        summary = await client.stream(chunks_of(audio, as_bytes)).result()
    assert word_error_rate(reference, summary.text) < WER_LIMIT
    assert abs(summary.audio_s - audio.size / SAMPLE_RATE) < 0.05


async def test_stop_ends_a_source_that_never_ends(server_url: str, jfk: tuple[np.ndarray, str]) -> None:
    """As a microphone: speech, then silence for ever; `stop` once the speech is heard."""

    async def live() -> AsyncIterator[np.ndarray]:
        async for piece in chunks_of(jfk[0], as_bytes=False):
            yield piece
        while True:
            yield np.zeros(SAMPLE_RATE // 10, dtype=np.float32)

    async with Client(server_url) as client, client.stream(live(), speed=4.0) as stream:
        async for event in stream:
            if isinstance(event, UtteranceEnd) and stream.sent_s > jfk[0].size / SAMPLE_RATE:
                await stream.stop()
        summary = await stream.result()
    assert word_error_rate(jfk[1], summary.text) < WER_LIMIT


async def test_an_upload_reports_its_progress_and_transcribe_waits_for_the_transcript(
    server_url: str, media: dict[str, Path], jfk: tuple[np.ndarray, str]
) -> None:
    file = media["jfk.mp3"]
    progress: list[tuple[int, int]] = []
    async with Client(server_url) as client:
        accepted = await client.upload(file, language="en", on_progress=lambda *sent: progress.append(sent))
        events = [event async for event in client.follow(accepted.session_id)]
        transcript = await client.transcribe(media["jfk.m4a"], speed="max")
    size = file.stat().st_size
    sent = [bytes_sent for bytes_sent, _ in progress]
    assert sent == sorted(sent) and sent[-1] == size and all(total == size for _, total in progress)
    assert accepted.file.name == "jfk.mp3" and accepted.file.bytes == size
    assert isinstance(events[0], Ready) and isinstance(events[-1], Closed)
    assert [event.seq for event in events] == sorted({event.seq for event in events})
    assert isinstance(transcript, Transcript) and transcript.version >= 1
    assert word_error_rate(jfk[1], " ".join(word.text for word in transcript.words)) < WER_LIMIT


async def test_follow_picks_up_after_a_seq(server_url: str, media: dict[str, Path]) -> None:
    async with Client(server_url) as client:
        accepted = await client.upload(media["jfk.flac"])
        everything = [event async for event in client.follow(accepted.session_id)]
        later = [event async for event in client.follow(accepted.session_id, after=everything[2].seq)]
    assert later == everything[3:]


async def test_transcripts_are_listed_read_exported_and_deleted(server_url: str) -> None:
    async with Client(server_url) as client:
        made = await client.stream(jfk_wav()).result()
        assert made.transcript_id is not None
        listed = [listing.id async for listing in client.transcripts(page_size=1)]
        transcript = await client.transcript(made.transcript_id, version=1)
        exports = {
            format: await client.export(made.transcript_id, format) for format in ("txt", "srt", "vtt")
        }
        as_json = msgspec.json.decode(await client.export(made.transcript_id, "json"), type=Transcript)
        with pytest.raises(InvalidRequest):
            await client.export(made.transcript_id, "docx")
        await client.delete(made.transcript_id)
        with pytest.raises(TranscriptNotFound):
            await client.transcript(made.transcript_id)
    assert made.transcript_id in listed, "paged one at a time, every transcript is listed"
    assert len(listed) == len(set(listed))
    assert [word.text for word in transcript.words] == [word.text for word in made.finals]
    assert as_json == transcript
    assert "country" in exports["txt"].lower()
    assert exports["srt"].startswith("1\n00:00:") and exports["vtt"].startswith("WEBVTT")


def blocking_session(url: str, file: Path, audio: np.ndarray) -> tuple[list[ServerMessage], str, list[int]]:
    """All through SyncClient, as a script without asyncio would: a file, a plain iterable of
    chunks, an upload followed, a transcript read."""
    progress: list[int] = []
    with SyncClient(url) as client:
        with client.stream(file) as stream:
            events = list(stream)
        pieces: Iterator[np.ndarray] = (audio[start : start + 3200] for start in range(0, audio.size, 3200))
        summary = client.stream(pieces).result()
        accepted = client.upload(file, on_progress=lambda sent, total: progress.append(sent))
        followed = list(client.follow(accepted.session_id))
        assert isinstance(followed[-1], Closed)
        assert summary.transcript_id is not None
        text = client.export(summary.transcript_id, "txt")
        assert summary.transcript_id in [listing.id for listing in client.transcripts()]
    return events, text, progress


async def test_the_sync_client_does_the_same_blocking(server_url: str, jfk: tuple[np.ndarray, str]) -> None:
    events, text, progress = await asyncio.to_thread(blocking_session, server_url, jfk_wav(), jfk[0])
    assert word_error_rate(jfk[1], text_of(assert_one_stream(events))) < WER_LIMIT
    assert word_error_rate(jfk[1], text) < WER_LIMIT
    assert progress[-1] == jfk_wav().stat().st_size


@pytest.fixture(scope="module")
async def keyed_server(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, str]]:
    """A server with an API key, and the key."""
    runner, url, key = await start_keyed_server(
        settings, engine, tmp_path_factory.mktemp("sdk-keys"), "sdk-user"
    )
    yield url, key
    await runner.cleanup()


async def test_a_server_with_keys_refuses_the_sdk_without_one_and_serves_it_with_one(
    keyed_server: tuple[str, str], media: dict[str, Path]
) -> None:
    url, key = keyed_server
    async with Client(url) as anonymous:
        with pytest.raises(Unauthorized):
            async with anonymous.stream(jfk_wav()):
                pass
        with pytest.raises(Unauthorized):
            await anonymous.upload(media["jfk.mp3"])
        with pytest.raises(Unauthorized):
            [listing async for listing in anonymous.transcripts()]
    async with Client(url, api_key=key) as client:
        summary = await client.stream(jfk_wav()).result()
        assert summary.transcript_id is not None
        assert "country" in (await client.export(summary.transcript_id, "txt")).lower()


# ---- resume -------------------------------------------------------------------------------------


async def cut_when(
    stream: Stream, proxy: CutProxy, is_the_moment: type[ServerMessage]
) -> list[ServerMessage]:
    """Every event of the stream; the proxy's connections are cut at the first `is_the_moment`."""
    events: list[ServerMessage] = []
    async with asyncio.timeout(_WAIT_S):
        async for event in stream:
            events.append(event)
            if isinstance(event, is_the_moment) and not any(isinstance(seen, Resumed) for seen in events):
                if proxy.connections == 1:
                    proxy.cut()
    return events


async def test_a_stream_cut_mid_speech_resumes_by_itself_with_every_final_once(
    server_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    async with CutProxy(server_url) as proxy, Client(proxy.url) as client:
        async with client.stream(jfk_wav(), speed=2.0) as stream:  # paced: audio is in flight
            events = await cut_when(stream, proxy, Final)
            summary = await stream.result()
    assert proxy.connections == 2 and stream.resumes == summary.resumes == 1
    [resumed] = [event for event in events if isinstance(event, Resumed)]
    assert resumed.session_id == stream.session_id
    assert 0 < resumed.received_s < jfk[0].size / SAMPLE_RATE, "cut while the file was being sent"
    finals = assert_one_stream(events)
    assert finals == summary.finals
    assert word_error_rate(jfk[1], text_of(finals)) < WER_LIMIT
    assert abs(summary.audio_s - jfk[0].size / SAMPLE_RATE) < 0.05, "no audio lost or doubled at the seam"


@pytest.fixture(scope="module")
async def second_pass_server(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A server that runs the second pass: a stream waits for its transcript after `stop`."""
    finalizing = msgspec.structs.replace(
        settings,
        data_dir=tmp_path_factory.mktemp("sdk-second-pass"),
        finalize=msgspec.structs.replace(settings.finalize, enabled=True),
    )
    runner, url = await start_server(finalizing, engine)
    yield url
    await runner.cleanup()


async def test_a_stream_cut_while_it_waits_for_its_transcript_resumes_and_gets_it(
    second_pass_server: str, jfk: tuple[np.ndarray, str]
) -> None:
    async with CutProxy(second_pass_server) as proxy, Client(proxy.url) as client:
        async with client.stream(jfk_wav()) as stream:
            events = await cut_when(stream, proxy, Finalizing)
            summary = await stream.result()
    assert stream.resumes == 1
    assert_one_stream(events)
    assert any(isinstance(event, TranscriptReady) for event in events) and summary.version == 2
    async with Client(second_pass_server) as client:
        assert summary.transcript_id is not None
        final = await client.transcript(summary.transcript_id)
    assert final.version == 2 and word_error_rate(jfk[1], " ".join(w.text for w in final.words)) < WER_LIMIT


@pytest.mark.parametrize(("window_s", "error"), [(0.0, ConnectionLost), (0.01, ResumeExpired)])
async def test_a_stream_the_server_does_not_take_back_ends_with_why(
    settings: ServerSettings,
    engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
    window_s: float,
    error: type[Exception],
) -> None:
    """No resume offered (window 0): ConnectionLost; the stream given up before the client is
    back (it waits 0.25 s before its first try): the server's refusal, ResumeExpired."""
    served = msgspec.structs.replace(
        settings, resume_window_s=window_s, data_dir=tmp_path_factory.mktemp("sdk-no-resume")
    )
    runner, url = await start_server(served, engine)
    try:
        async with CutProxy(url) as proxy, Client(proxy.url) as client:
            async with client.stream(jfk_wav(), speed=2.0) as stream:
                with pytest.raises(error):
                    await cut_when(stream, proxy, Final)
            assert (stream.ready is not None) and (stream.ready.resume_token is None) == (window_s == 0)
    finally:
        await runner.cleanup()
