"""The console script as a user runs it: serve on a free port, stream, transcribe, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import srt
import webvtt

from streamscribe.audio import SAMPLE_RATE
from streamscribe.client.stream import TimedEvent, stream_samples
from streamscribe.text import word_keys
from streamscribe.wire import Closed, Error, Final, Ready

from ..conftest import speech_file

CLI = [sys.executable, "-m", "streamscribe.cli"]


@pytest.fixture(scope="module")
def served_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return os.environ | {
        "STREAMSCRIBE_MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
        "STREAMSCRIBE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }


@pytest.fixture(scope="module")
async def served(served_env: dict[str, str]) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    env = served_env
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    async with asyncio.timeout(60):
        line = (await process.stdout.readline()).decode()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, f"serve printed {line!r}"
    yield process, match.group(1)
    if process.returncode is None:
        process.kill()
        await process.wait()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False, env=env)


async def test_a_second_server_on_the_same_data_dir_refuses_to_start(
    served: tuple[asyncio.subprocess.Process, str], served_env: dict[str, str]
) -> None:
    process, _ = served
    done = await asyncio.to_thread(run_cli, "serve", "--port", "0", env=served_env)
    data_dir = served_env["STREAMSCRIBE_DATA_DIR"]
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"data directory {data_dir} is in use" in done.stderr and f"(pid {process.pid})" in done.stderr
    assert "listening" not in done.stdout and "Traceback" not in done.stderr


async def test_stream_command_prints_the_words(served: tuple[asyncio.subprocess.Process, str]) -> None:
    _, url = served
    wav = str(speech_file("jfk/jfk.wav"))
    done = await asyncio.to_thread(
        run_cli, "stream", wav, "--url", url.replace("http", "ws") + "/v1/stream", "--speed", "0"
    )
    assert done.returncode == 0, done.stderr
    assert "ask not what your country can do for you" in " ".join(word_keys(done.stdout))
    assert await where_it_is(done.stderr, url), "the transcript's id and URL are printed, and the URL works"


async def where_it_is(stderr: str, url: str) -> bool:
    """The `transcript ID: URL` line the CLI prints on stderr, checked against the server."""
    found = re.search(rf"^transcript ([0-9a-f]{{32}}): ({re.escape(url)}/v1/transcripts/\1)$", stderr, re.M)
    assert found, stderr
    async with aiohttp.ClientSession() as http, http.get(found.group(2)) as response:
        return response.status == 200


def test_transcribe_runs_the_live_core_then_the_second_pass(tmp_path: Path) -> None:
    captions, web_captions = tmp_path / "jfk.srt", tmp_path / "jfk.vtt"
    done = run_cli(
        "transcribe", str(speech_file("jfk/jfk.wav")), "-o", str(captions), "-o", str(web_captions)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Speaker 1: And so") and "Speaker 2" not in done.stdout
    assert "ask what you can do for your country" in " ".join(word_keys(done.stdout))
    assert "ask not what" in " ".join(word_keys(done.stderr)), "the live pass is shown on stderr"
    cues = list(srt.parse(captions.read_text()))
    assert cues and all(len(line) <= 42 for cue in cues for line in cue.content.split("\n"))
    assert len(webvtt.from_string(web_captions.read_text())) == len(cues)


def test_transcribe_refuses_an_unknown_output_format(tmp_path: Path) -> None:
    done = run_cli("transcribe", str(speech_file("jfk/jfk.wav")), "-o", str(tmp_path / "out.doc"))
    assert done.returncode == 2 and "extension must be one of" in done.stderr


def test_transcribe_reports_an_unreadable_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    done = run_cli("transcribe", str(broken))
    assert done.returncode == 2 and "unsupported_audio" in done.stderr


async def test_transcribe_with_url_uploads_and_shows_progress(
    served: tuple[asyncio.subprocess.Process, str], media: dict[str, Path], tmp_path: Path
) -> None:
    _, url = served
    captions = tmp_path / "jfk.vtt"
    done = await asyncio.to_thread(
        run_cli, "transcribe", str(media["jfk.m4a"]), "--url", url, "-o", str(captions)
    )
    assert done.returncode == 0, done.stderr
    assert await where_it_is(done.stderr, url)
    assert await where_it_is(done.stderr, url)
    assert done.stdout.startswith("Speaker 1: And so")
    assert "ask not what your country can do for you" in " ".join(word_keys(done.stdout))
    progress = done.stderr.splitlines()
    assert any(line.startswith("transcribing 100%") and "0:11 / 0:11" in line for line in progress), (
        done.stderr
    )
    assert any(line.startswith("second pass  100%") for line in progress), done.stderr
    assert len(webvtt.from_string(captions.read_text())) >= 2


async def test_transcribe_with_url_reports_a_refused_file(
    served: tuple[asyncio.subprocess.Process, str], media: dict[str, Path]
) -> None:
    _, url = served
    done = await asyncio.to_thread(run_cli, "transcribe", str(media["silent-video.mp4"]), "--url", url)
    assert done.returncode == 2
    assert (
        "error no_audio_stream: silent-video.mp4 (format mov,mp4,m4a,3gp,3g2,mj2) has no audio stream"
        in done.stderr
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["stream", "JFK", "--url", "http://127.0.0.1:8000/v1/stream"], "is not a ws or wss:// URL"),
        (["stream", "JFK", "--url", "WS/v1/wrong-path"], "answered HTTP 404 instead of a WebSocket"),
        (["stream", "/no/such/file.wav"], "error unsupported_audio: file.wav is not an audio or video file"),
        (["stream", "JFK", "--url", "ws://127.0.0.1:9/v1/stream"], "cannot reach the server"),
        (["transcribe", "JFK", "--url", "ws://127.0.0.1:8000"], "is not a http or https:// URL"),
        (["transcribe", "JFK", "--model", "no-such-model"], "error unknown_model"),
        (["transcribe", "JFK", "--second-pass-model", "/nonexistent"], "error unknown_model"),
        (["serve", "--port", "0", "--model", "/nonexistent"], "error unknown_model"),
    ],
    ids=[
        "http-url-to-stream",
        "wrong-path",
        "missing-file",
        "no-server",
        "ws-url-to-transcribe",
        "unknown-model",
        "unknown-second-pass-model",
        "serve-unknown-model",
    ],
)
async def test_command_line_mistakes_get_one_line_not_a_traceback(
    served: tuple[asyncio.subprocess.Process, str], served_env: dict[str, str], args: list[str], says: str
) -> None:
    _, url = served
    jfk = str(speech_file("jfk/jfk.wav"))
    args = [arg.replace("JFK", jfk).replace("WS", url.replace("http", "ws")) for arg in args]
    env = served_env | {"STREAMSCRIBE_DATA_DIR": served_env["STREAMSCRIBE_DATA_DIR"] + "-other"}
    done = await asyncio.to_thread(run_cli, *args, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    if "--second-pass-model" in args:
        assert done.stdout == "" and "ask not" not in done.stderr.lower(), "refused before the live pass"


def test_ctrl_c_ends_a_command_cleanly(tmp_path: Path) -> None:
    long = tmp_path / "long.wav"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "20", "-i", str(speech_file("jfk/jfk.wav")), str(long)],
        check=True, timeout=60,
    )  # fmt: skip
    # SIGINT as a terminal delivers it, even where this suite runs in the background (which
    # ignores SIGINT, and a child inherits that)
    process = subprocess.Popen([*CLI, "transcribe", str(long), "--no-second-pass"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert process.stdout is not None
    process.stdout.readline()  # the first utterance is out: the live pass is running
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err and "interrupted" in err, err


async def test_the_server_logs_each_session_and_refusal_as_json_without_any_words(
    tmp_path: Path, jfk: tuple[np.ndarray, str]
) -> None:
    env = os.environ | {
        "STREAMSCRIBE_DATA_DIR": str(tmp_path / "data"),
        "STREAMSCRIBE_FINALIZE_ENABLED": "false",
    }
    key = run_cli("keys", "create", "logged", env=env).stdout.strip().splitlines()[-1]
    process = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", "0", "--log-format", "json", "--log-level", "info",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    async with asyncio.timeout(60):
        match = re.search(r"listening on (http://\S+)", (await process.stdout.readline()).decode())
    assert match
    url = match.group(1)
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http,
        http.post(f"{url}/v1/tokens", json={}) as response,
    ):
        token = (await response.json())["token"]
    result = await stream_samples(url.replace("http", "ws") + f"/v1/stream?token={token}", jfk[0], speed=0)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        async with http.get(f"{url}/v1/transcripts/nope") as response:
            assert response.status == 404
        async with http.get(f"{url}/v1/transcripts?token={key}x", headers={"Authorization": ""}) as response:
            assert response.status == 401
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 60) == 0
    lines = (await process.stderr.read()).decode().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    by_event = {record.get("event"): record for record in records}
    ready = result.events[0].event
    assert isinstance(ready, Ready)
    assert by_event["session_start"]["session_id"] == ready.session_id
    end = by_event["session_end"]
    assert (end["transport"], end["outcome"], end["words"]) == ("websocket", "ok", len(result.finals))
    assert end["audio_s"] == pytest.approx(11.0, abs=0.5)
    refused = {(record["code"], record["status"]) for record in records if record.get("event") == "refused"}
    assert refused >= {("transcript_not_found", 404), ("unauthorized", 401)}, refused
    said = {word.text.strip(",.").lower() for word in result.finals} - {
        "and",
        "so",
        "my",
        "not",
        "what",
        "you",
        "can",
        "do",
        "for",
        "ask",
        "your",
    }
    assert not any(secret in line for line in lines for secret in (key, token, key[6:20], token[6:20])), (
        "no key or token in the log"
    )
    assert said and not any(word in line.lower() for line in lines for word in said), (
        "no transcript text in the log"
    )


# Last: it stops the served process.
async def test_sigterm_flushes_live_streams_then_exits(
    served: tuple[asyncio.subprocess.Process, str], jfk: tuple[np.ndarray, str]
) -> None:
    process, url = served
    audio, _ = jfk
    heard = asyncio.Event()

    def on_event(timed: TimedEvent) -> None:
        if (
            isinstance(timed.event, Final)
            and "americans" in " ".join(w.text for w in timed.event.words).lower()
        ):
            heard.set()

    live = asyncio.create_task(
        stream_samples(url.replace("http", "ws") + "/v1/stream", audio, speed=1, on_event=on_event)
    )
    await asyncio.wait_for(
        heard.wait(), 60
    )  # "And so my fellow Americans" is final; the rest is not said yet
    process.send_signal(signal.SIGTERM)
    result = await asyncio.wait_for(live, 30)
    events = [timed.event for timed in result.events]
    assert isinstance(events[-1], Closed)
    assert [e.code for e in events if isinstance(e, Error)] == ["shutting_down"]
    assert "americans" in " ".join(w.text for w in result.finals).lower(), "heard speech was flushed"
    assert result.close_code == 1001
    assert events[-1].audio_s < audio.size / SAMPLE_RATE
    assert await asyncio.wait_for(process.wait(), 30) == 0
