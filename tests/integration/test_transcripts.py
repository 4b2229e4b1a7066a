"""End of stream on a real server: finalizing and transcript_ready on the socket, the versions
over REST in every format, re-runs, deletion, and transcripts that survive a restart and a crash
in the middle of a second pass."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import numpy as np
import pytest
import srt
import webvtt

from streamscribe.asr.engine import Engine
from streamscribe.audio import to_pcm_s16le
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings
from streamscribe.errors import DataDirInUse

from ..conftest import start_server

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def finalize_settings(settings: ServerSettings, tmp_path_factory: pytest.TempPathFactory) -> ServerSettings:
    """The second pass on (base), audio kept, in a data directory of this module's own."""
    return msgspec.structs.replace(
        settings,
        data_dir=tmp_path_factory.mktemp("transcripts"),
        audio_retention_h=float("inf"),
        finalize=msgspec.structs.replace(settings.finalize, enabled=True),
    )


@pytest.fixture(scope="module")
async def base_url(finalize_settings: ServerSettings, engine: Engine) -> AsyncIterator[str]:
    runner, url = await start_server(finalize_settings, engine)
    yield url
    await runner.cleanup()


async def stream(url: str, audio: np.ndarray, wait: bool = True) -> list[dict]:
    """Stream as fast as the server reads, send stop, return every event until the socket closes."""
    events: list[dict] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url.replace("http", "ws") + "/v1/stream") as ws,
    ):
        await ws.send_str(json.dumps({"type": "start"}))
        pcm = to_pcm_s16le(audio)
        for offset in range(0, len(pcm), 32000):
            await ws.send_bytes(pcm[offset : offset + 32000])
        await ws.send_str(json.dumps({"type": "stop", "wait_for_transcript": wait}))
        async for message in ws:
            events.append(json.loads(message.data))
    return events


async def get(url: str, path: str, expect: int = 200) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        await response.read()
        assert response.status == expect, await response.text()
        return response


async def get_json(url: str, path: str, expect: int = 200) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        assert response.status == expect, await response.text()
        return await response.json()  # type: ignore[no-any-return]


async def get_text(url: str, path: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def post(url: str, path: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.post(url + path, json=body) as response:
        return response.status, await response.json()


async def wait_until_done(url: str, transcript_id: str, timeout_s: float) -> dict:
    """Poll the versions listing: a client without a socket has nothing else to wait on."""
    for _attempt in range(int(timeout_s / 0.2)):
        listing = await get_json(url, f"/v1/transcripts/{transcript_id}/versions")
        if listing["state"] == "done":
            return listing
        await asyncio.sleep(0.2)
    raise AssertionError(f"the second pass of {transcript_id} did not finish in {timeout_s} s")


@pytest.fixture(scope="module")
async def streamed(base_url: str, jfk: tuple[np.ndarray, str]) -> tuple[str, list[dict]]:
    audio, _text = jfk
    events = await stream(base_url, audio)
    return events[0]["transcript_id"], events


def streamed_words(events: list[dict]) -> list[str]:
    return [word["text"] for event in events if event["type"] == "final" for word in event["words"]]


def test_transcript_ready_comes_before_closed(streamed: tuple[str, list[dict]]) -> None:
    transcript_id, events = streamed
    kinds = [event["type"] for event in events]
    assert kinds[-2:] == ["transcript_ready", "closed"]
    assert events[-2] == {
        "type": "transcript_ready",
        "transcript_id": transcript_id,
        "version": 2,
        "seq": events[-2]["seq"],
    }
    progress = [event["progress"] for event in events if event["type"] == "finalizing"]
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    first_finalizing = kinds.index("finalizing")
    assert "final" not in kinds[first_finalizing:], "a live final came after the second pass began"
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))


async def test_versions_are_listed_and_v1_is_the_live_finals(
    base_url: str, streamed: tuple[str, list[dict]]
) -> None:
    transcript_id, events = streamed
    listing = await get_json(base_url, f"/v1/transcripts/{transcript_id}/versions")
    assert listing["state"] == "done" and listing["audio_kept"]
    assert [(v["version"], v["parent"]) for v in listing["versions"]] == [(1, None), (2, 1)]
    first = await get_json(base_url, f"/v1/transcripts/{transcript_id}/versions/1")
    words = [w["text"] for s in first["segments"] for line in s["lines"] for w in line["words"]]
    assert words == streamed_words(events)
    latest = await get_json(base_url, f"/v1/transcripts/{transcript_id}")
    assert latest["version"] == 2 and latest["info"]["models"]["second_pass"] == "base"


async def test_exports_parse_and_keep_the_line_limits(
    base_url: str, streamed: tuple[str, list[dict]], jfk: tuple[np.ndarray, str]
) -> None:
    transcript_id, _events = streamed
    path = f"/v1/transcripts/{transcript_id}"
    cues = list(srt.parse(await get_text(base_url, path + "?format=srt")))
    assert cues and all(cue.start < cue.end for cue in cues)
    for cue in cues:
        lines = cue.content.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), lines
    captions = webvtt.from_string(await get_text(base_url, path + "?format=vtt"))
    assert len(captions) == len(cues)
    assert all(len(line) <= 42 for caption in captions for line in caption.lines if not line.startswith("<v"))
    text = await get_text(base_url, path + "?format=txt")
    assert text.startswith("Speaker 1: ") and "Speaker 2" not in text
    assert word_error_rate(jfk[1], text.removeprefix("Speaker 1: ")) < 0.1
    assert text.strip()[0].isupper() and text.strip().endswith((".", "?", "!"))
    response = await get(base_url, path + "?format=srt")
    assert response.headers["Content-Type"].startswith("application/x-subrip")


async def test_rerun_adds_a_version_and_leaves_the_others_untouched(
    base_url: str, streamed: tuple[str, list[dict]]
) -> None:
    transcript_id, _events = streamed
    path = f"/v1/transcripts/{transcript_id}"
    before = [await get_text(base_url, f"{path}/versions/{n}") for n in (1, 2)]
    status, body = await post(
        base_url, f"{path}/finalize?wait=1", {"num_speakers": 2, "caption_max_chars": 32}
    )
    assert status == 200, body
    assert body["version"] == 3
    third = await get_json(base_url, f"{path}/versions/3")
    assert third["info"]["parent"] == 2 and third["info"]["settings"]["num_speakers"] == 2
    assert all(len(line["text"]) <= 32 for s in third["segments"] for line in s["lines"])
    assert [await get_text(base_url, f"{path}/versions/{n}") for n in (1, 2)] == before


async def test_bad_requests_get_codes(base_url: str, streamed: tuple[str, list[dict]]) -> None:
    transcript_id, _events = streamed
    path = f"/v1/transcripts/{transcript_id}"
    status, body = await post(base_url, f"{path}/finalize", {"num_speakers": "many"})
    assert status == 400 and body["error"]["code"] == "invalid_request"
    status, body = await post(base_url, f"{path}/finalize", {"no_such_setting": 1})
    assert status == 400 and body["error"]["code"] == "invalid_request"
    status, body = await post(base_url, f"{path}/finalize", {"pyannote_checkpoint": "/etc/passwd"})
    assert status == 400 and "operator" in body["error"]["message"]
    out_of_range = [
        ({"beam_size": 1600}, "beam_size"), ({"beam_size": 0}, "beam_size"), ({"beam_size": -1}, "beam_size"),
        ({"language": "zz"}, "language 'zz'"), ({"caption_max_chars": 0}, "caption_max_chars"),
        ({"num_speakers": 1000000}, "num_speakers"), ({"min_speakers": 4, "max_speakers": 2}, "min_speakers 4"),
    ]  # fmt: skip
    for settings, named in out_of_range:
        status, body = await post(base_url, f"{path}/finalize", settings)
        assert status == 400 and body["error"]["code"] == "invalid_request", (settings, body)
        assert named in body["error"]["message"], "the refusal names the option"
    before = await get_json(base_url, f"{path}/versions")
    async with (  # what a cross-site form can send without a preflight
        aiohttp.ClientSession() as http,
        http.post(
            base_url + f"{path}/finalize", data='{"num_speakers": 2}', headers={"Content-Type": "text/plain"}
        ) as response,
    ):
        assert response.status == 415 and (await response.json())["error"]["code"] == "unsupported_media_type"
    assert await get_json(base_url, f"{path}/versions") == before, "nothing was queued"
    missing = await get_json(base_url, "/v1/transcripts/nope", expect=404)
    assert missing["error"]["code"] == "transcript_not_found"
    await get_json(base_url, f"{path}/versions/99", expect=404)
    bad_format = await get_json(base_url, f"{path}?format=doc", expect=400)
    assert bad_format["error"]["code"] == "invalid_request"


async def test_client_that_does_not_wait_gets_closed_first(
    base_url: str, jfk: tuple[np.ndarray, str]
) -> None:
    events = await stream(base_url, jfk[0], wait=False)
    assert events[-1]["type"] == "closed"
    assert not [event for event in events if event["type"] in ("finalizing", "transcript_ready")]
    transcript_id = events[0]["transcript_id"]
    await wait_until_done(base_url, transcript_id, 60)
    latest = await get_json(base_url, f"/v1/transcripts/{transcript_id}")
    assert latest["version"] == 2


async def test_delete_removes_transcript_and_audio(
    base_url: str, finalize_settings: ServerSettings, jfk: tuple[np.ndarray, str]
) -> None:
    events = await stream(base_url, jfk[0])
    transcript_id = events[0]["transcript_id"]
    audio = finalize_settings.data_dir / "audio" / f"{transcript_id}.wav"
    assert audio.is_file()
    async with (
        aiohttp.ClientSession() as http,
        http.delete(f"{base_url}/v1/transcripts/{transcript_id}") as response,
    ):
        assert response.status == 204
    assert not audio.exists()
    await get_json(base_url, f"/v1/transcripts/{transcript_id}", expect=404)


async def test_audio_retention_zero_deletes_audio_after_the_second_pass(
    finalize_settings: ServerSettings, engine: Engine, jfk: tuple[np.ndarray, str], tmp_path: Path
) -> None:
    settings = msgspec.structs.replace(finalize_settings, data_dir=tmp_path, audio_retention_h=0.0)
    runner, url = await start_server(settings, engine)
    try:
        events = await stream(url, jfk[0])
        transcript_id = events[0]["transcript_id"]
        listing = await get_json(url, f"/v1/transcripts/{transcript_id}/versions")
        assert listing["state"] == "done" and not listing["audio_kept"]
        assert not (tmp_path / "audio" / f"{transcript_id}.wav").exists()
        status, body = await post(url, f"/v1/transcripts/{transcript_id}/finalize", {})
        assert status == 409 and body["error"]["code"] == "audio_not_retained"
    finally:
        await runner.cleanup()


async def test_restart_keeps_transcripts_and_one_data_dir_serves_one_server(
    settings: ServerSettings, engine: Engine, jfk: tuple[np.ndarray, str], tmp_path: Path
) -> None:
    own = msgspec.structs.replace(settings, data_dir=tmp_path)
    runner, url = await start_server(own, engine)
    try:
        transcript_id = (await stream(url, jfk[0]))[0]["transcript_id"]
        before = await get_text(url, f"/v1/transcripts/{transcript_id}/versions/1")
        with pytest.raises(
            DataDirInUse, match=rf"{tmp_path} is in use by another streamscribe process \(pid {os.getpid()}\)"
        ):
            await start_server(own, engine)  # two servers on one data dir would corrupt each other
    finally:
        await runner.cleanup()
    runner, url = await start_server(own, engine)  # the restart
    try:
        assert await get_text(url, f"/v1/transcripts/{transcript_id}/versions/1") == before
    finally:
        await runner.cleanup()


async def test_crash_during_second_pass_keeps_v1_and_reruns(
    tmp_path: Path, jfk: tuple[np.ndarray, str]
) -> None:
    """SIGKILL the server as soon as the second pass starts; the next server redoes it."""
    env = os.environ | {
        "STREAMSCRIBE_DATA_DIR": str(tmp_path / "data"),
        "STREAMSCRIBE_MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [sys.executable, "-m", "streamscribe.cli", "serve", "--port", "0"]

    async def serve() -> tuple[asyncio.subprocess.Process, str]:
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, env=env)
        assert process.stdout is not None
        async with asyncio.timeout(60):
            line = (await process.stdout.readline()).decode()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        return process, match.group(1)

    process, url = await serve()
    events: list[dict] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url.replace("http", "ws") + "/v1/stream") as ws,
    ):
        await ws.send_str(json.dumps({"type": "start"}))
        await ws.send_bytes(to_pcm_s16le(jfk[0]))
        await ws.send_str(json.dumps({"type": "stop"}))
        async for message in ws:
            events.append(json.loads(message.data))
            if events[-1]["type"] == "finalizing":
                process.send_signal(signal.SIGKILL)
                break
    await process.wait()
    transcript_id = events[0]["transcript_id"]
    process, url = await serve()
    try:
        listing = await wait_until_done(url, transcript_id, 120)
        assert [v["version"] for v in listing["versions"]] == [1, 2]
        first = await get_json(url, f"/v1/transcripts/{transcript_id}/versions/1")
        assert [
            w["text"] for s in first["segments"] for line in s["lines"] for w in line["words"]
        ] == streamed_words(events)
    finally:
        process.terminate()
        await process.wait()
