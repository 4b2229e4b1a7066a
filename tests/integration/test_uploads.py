"""Uploaded files on a real server: POST /v1/transcriptions replays them through the live core;
their events are followed (and resumed) over WebSocket and SSE; bad uploads leave nothing behind."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
import srt
from multidict import CIMultiDict

from streamscribe.asr.engine import Engine
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings

from ..conftest import start_server

pytestmark = pytest.mark.model
MAX_SESSION_S = 60


@pytest.fixture(scope="module")
def upload_settings(settings: ServerSettings, tmp_path_factory: pytest.TempPathFactory) -> ServerSettings:
    """Second pass off (uploads store v1 and close at once), a 1 MiB upload limit, sessions of at
    most a minute, own data dir."""
    return msgspec.structs.replace(
        settings,
        data_dir=tmp_path_factory.mktemp("uploads"),
        max_upload_mb=1.0,
        stream=msgspec.structs.replace(settings.stream, max_session_s=MAX_SESSION_S),
        replay=msgspec.structs.replace(settings.replay, max_session_s=MAX_SESSION_S),
    )


@pytest.fixture(scope="module")
async def server(upload_settings: ServerSettings, engine: Engine) -> AsyncIterator[str]:
    runner, url = await start_server(upload_settings, engine)
    yield url
    await runner.cleanup()


async def post(url: str, path: str = "/v1/transcriptions", **kwargs: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.post(url + path, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, json.loads(await response.read() or b"{}")


def form(file: Path, **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        data.add_field(name, value)
    data.add_field("file", file.read_bytes(), filename=file.name)
    return data


async def follow_ws(url: str, session_id: str, after: int = 0) -> list[dict]:
    ws_url = url.replace("http", "ws") + f"/v1/sessions/{session_id}/events?after={after}"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        return [json.loads(message.data) async for message in ws if message.type == aiohttp.WSMsgType.TEXT]


async def follow_sse(url: str, session_id: str, last_event_id: int = 0) -> tuple[int, list[dict]]:
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last_event_id)}
    events: list[dict] = []
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + f"/v1/sessions/{session_id}/events", headers=headers) as response,
    ):
        async for line in response.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
            elif line.startswith(b"id: "):
                assert int(line[4:]) > last_event_id
        return response.status, events


async def test_an_upload_is_answered_at_once_and_its_events_are_those_of_a_live_stream(
    server: str, media: dict[str, Path], jfk: tuple[object, str], upload_settings: ServerSettings
) -> None:
    status, accepted = await post(server, data=form(media["jfk.mp3"]))
    assert status == 202, accepted
    session_id = accepted["session_id"]
    assert accepted["transcript_id"] == session_id
    assert accepted["file"] == {"name": "jfk.mp3", "bytes": media["jfk.mp3"].stat().st_size, "format": "mp3",
                                "codec": "mp3float", "duration_s": 11.0}  # fmt: skip
    events = await follow_ws(server, session_id)
    kinds = [event["type"] for event in events]
    assert kinds[0] == "ready" and kinds[-1] == "closed" and "speech_started" in kinds and "final" in kinds
    assert kinds[-3:] == ["progress", "transcript_ready", "closed"]
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    finals = [word["text"] for event in events if event["type"] == "final" for word in event["words"]]
    assert word_error_rate(jfk[1], " ".join(finals)) < 0.1
    progress = [event for event in events if event["type"] == "progress"]
    assert progress[-1]["processed_s"] == progress[-1]["total_s"] == pytest.approx(11.0, abs=0.05)
    processed = [event["processed_s"] for event in progress]
    assert processed == sorted(processed)
    version = await get_json(server, f"/v1/transcripts/{session_id}")
    stored = [
        word["text"] for segment in version["segments"] for line in segment["lines"] for word in line["words"]
    ]
    assert stored == finals, "version 1 is the words the replay streamed"
    assert not any((upload_settings.data_dir / "uploads").glob("*")), "the spooled upload is removed"


async def test_events_resume_from_any_seq_over_websocket_and_sse(server: str, media: dict[str, Path]) -> None:
    _, accepted = await post(server, data=form(media["jfk.ogg"]))
    session_id = accepted["session_id"]
    everything = await follow_ws(server, session_id)
    middle = everything[len(everything) // 2]["seq"]
    assert await follow_ws(server, session_id, after=middle) == [e for e in everything if e["seq"] > middle]
    status, tail = await follow_sse(server, session_id, last_event_id=middle)
    assert status == 200 and tail == [e for e in everything if e["seq"] > middle]
    status, nothing = await follow_sse(server, session_id, last_event_id=everything[-1]["seq"])
    assert status == 204 and nothing == [], "a finished stream tells EventSource not to reconnect"
    async with aiohttp.ClientSession() as http, http.get(server + "/v1/sessions/nope/events") as response:
        assert response.status == 404 and (await response.json())["error"]["code"] == "session_not_found"


async def test_a_live_websocket_stream_can_be_followed_by_a_second_client(
    server: str, jfk: tuple[object, str]
) -> None:
    from streamscribe.client.stream import stream_samples

    audio, _ = jfk
    seen: list[str] = []
    follower: asyncio.Task[list[dict]] | None = None

    def on_event(timed: object) -> None:
        nonlocal follower
        event = timed.event  # type: ignore[attr-defined]
        if event.__struct_config__.tag == "ready":
            follower = asyncio.ensure_future(follow_ws(server, event.session_id))
        seen.append(event.__struct_config__.tag)

    result = await stream_samples(
        server.replace("http", "ws") + "/v1/stream", audio, speed=0, on_event=on_event
    )  # type: ignore[arg-type]
    assert follower is not None
    followed = await follower
    assert followed[-1]["type"] == "closed"
    followed_finals = [w["text"] for e in followed if e["type"] == "final" for w in e["words"]]
    assert followed_finals == [w.text for w in result.finals]


async def test_wait_answers_with_the_final_version_in_the_asked_format(
    server: str, media: dict[str, Path]
) -> None:
    async with aiohttp.ClientSession() as http:
        params = {"wait": "true", "format": "srt"}
        async with http.post(
            server + "/v1/transcriptions", params=params, data=media["jfk.flac"].read_bytes()
        ) as response:
            assert response.status == 200, await response.text()
            cues = list(srt.parse(await response.text()))
    assert "ask not what your country" in " ".join(cue.content for cue in cues).replace("\n", " ").lower()


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        ("oversized", 413, "upload_too_large"),
        ("oversized-chunked", 413, "upload_too_large"),
        ("empty", 400, "empty_upload"),
        ("text", 415, "unsupported_audio"),
        ("noise", 415, "unsupported_audio"),
        ("silent-video", 422, "no_audio_stream"),
        ("no-file-field", 400, "invalid_request"),
        ("url-encoded-form", 415, "unsupported_audio"),
        ("unknown-option", 400, "invalid_request"),
        ("bad-speed", 400, "invalid_request"),
        ("german-on-tiny.en", 400, "unsupported_language"),
        ("unknown-model", 400, "unknown_model"),
        ("a-million-speakers", 400, "invalid_request"),
        ("inverted-speaker-range", 400, "invalid_request"),
        ("unknown-language", 400, "unsupported_language"),
        ("longer-than-a-session", 413, "session_too_long"),
        ("gzip-bomb", 415, "unsupported_content_encoding"),
        ("deflate-form", 415, "unsupported_content_encoding"),
        ("gzip-behind-identity", 415, "unsupported_content_encoding"),
    ],
)
async def test_bad_uploads_get_a_code_and_a_reason_and_leave_nothing_behind(
    server: str,
    media: dict[str, Path],
    upload_settings: ServerSettings,
    tmp_path: Path,
    send: str,
    status: int,
    code: str,
) -> None:
    audio_before = set((upload_settings.data_dir / "audio").glob("*"))
    jfk_mp3 = media["jfk.mp3"].read_bytes()

    async def chunked():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"\0" * 65536

    requests: dict[str, dict] = {
        "oversized": {"data": b"\0" * (2 * 2**20)},
        "oversized-chunked": {"data": chunked()},
        "empty": {"data": form_bytes(b"", "empty.wav")},
        "text": {"data": form_bytes(b"minutes of the meeting\n" * 40, "notes.txt")},
        "noise": {"data": form_bytes(bytes(range(256)) * 400, "noise.bin")},
        "silent-video": {"data": form(media["silent-video.mp4"])},
        "no-file-field": {"data": aiohttp.FormData({"language": "en"}, default_to_multipart=True)},
        "url-encoded-form": {"data": {"file": "jfk.mp3"}},
        "unknown-option": {"data": jfk_mp3, "params": {"languag": "en"}},
        "bad-speed": {"data": jfk_mp3, "params": {"speed": "warp"}},
        "german-on-tiny.en": {"data": jfk_mp3, "params": {"language": "de"}},
        "unknown-model": {"data": jfk_mp3, "params": {"model": "/etc/passwd"}},
        "a-million-speakers": {"data": jfk_mp3, "params": {"num_speakers": "1000000"}},
        "inverted-speaker-range": {"data": form(media["jfk.mp3"], min_speakers="5", max_speakers="2")},
        "unknown-language": {"data": jfk_mp3, "params": {"language": "zz"}},
        "longer-than-a-session": {
            "data": silence(MAX_SESSION_S + 30, tmp_path / "silence.mp3", "-b:a", "8k")
        },
        "gzip-bomb": {  # 64 MB of zeros in 64 KB: would inflate past the 1 MB limit
            "data": gzip.compress(b"\0" * 64 * 2**20),
            "headers": {"Content-Encoding": "gzip"},
        },
        "deflate-form": {"data": form(media["jfk.mp3"]), "headers": {"Content-Encoding": "deflate"}},
        "gzip-behind-identity": {  # aiohttp's parser acts on the last of two headers
            "data": gzip.compress(b"\0" * 64 * 2**20),
            "headers": CIMultiDict([("Content-Encoding", "identity"), ("Content-Encoding", "gzip")]),
        },
    }
    answered, body = await post(server, **requests[send])
    assert (answered, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"]
    if send == "url-encoded-form":
        assert "labelled as a url-encoded form" in body["error"]["message"], "it says what was wrong"
    assert not any((upload_settings.data_dir / "uploads").glob("*")), "no spooled upload is left"
    assert set((upload_settings.data_dir / "audio").glob("*")) == audio_before, "no recording was started"
    assert (await get_json(server, "/healthz"))["uploads"] == 0


def silence(seconds: int, path: Path, *encoding: str) -> bytes:
    """`seconds` of silence encoded by ffmpeg into `path` (its suffix picks the format)."""
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(seconds),
         *encoding, str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path.read_bytes()


def form_bytes(content: bytes, filename: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("file", content, filename=filename)
    return data


async def test_a_client_that_disconnects_mid_upload_leaves_nothing_behind(
    server: str, upload_settings: ServerSettings
) -> None:
    host, port = server.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/mpeg\r\n"
        b"Content-Length: 900000\r\n\r\n" + b"\xff\xfb" * 50000
    )
    await writer.drain()
    for _ in range(600):  # until the server spools it
        if any((upload_settings.data_dir / "uploads").glob("*")):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the upload was never spooled")
    writer.close()
    await writer.wait_closed()
    for _ in range(200):  # the server notices the reset connection within a moment
        health = await get_json(server, "/healthz")
        if not health["uploads"] and not any((upload_settings.data_dir / "uploads").glob("*")):
            break
        await asyncio.sleep(0.05)
    assert health["uploads"] == 0 and health["status"] == "ok"
    assert not any((upload_settings.data_dir / "uploads").glob("*")), "the partial upload is removed"


def undeclared_flac(seconds: int, folder: Path) -> bytes:
    """FLAC of silence whose header does not say how long it is (total samples 0: unknown)."""
    data = bytearray(silence(seconds, folder / "silence.flac"))
    info = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate, channels, bits, then 36 bits of total
    data[18:26] = (info & ~((1 << 36) - 1)).to_bytes(8, "big")
    return bytes(data)


async def test_a_file_that_hides_its_length_is_stopped_at_the_session_limit(
    server: str, tmp_path: Path
) -> None:
    """A few KB that decode to far more than a session may hold: replayed up to the limit, then
    refused with what came before kept."""
    bomb = undeclared_flac(MAX_SESSION_S * 3, tmp_path)
    assert len(bomb) < 100_000
    status, body = await post(server, params={"wait": "1"}, data=form_bytes(bomb, "bomb.flac"))
    assert status == 413 and body["error"]["code"] == "session_too_long", body
    message = body["error"]["message"]
    kept = await get_json(server, message[message.index("/v1/transcripts/") :])
    assert kept["duration_s"] == pytest.approx(MAX_SESSION_S, abs=1.0)


async def test_a_file_damaged_part_way_keeps_what_decoded_and_says_what_happened(
    server: str, media: dict[str, Path], tmp_path: Path
) -> None:
    damaged = bytearray(media["jfk.flac"].read_bytes())
    for index in range(60000, len(damaged) - 5000, 7):
        damaged[index] ^= 0xFF
    status, body = await post(server, params={"wait": "1"}, data=form_bytes(bytes(damaged), "damaged.flac"))
    assert status == 415 and body["error"]["code"] == "unsupported_audio", body
    message = body["error"]["message"]
    assert "damaged.flac is damaged or truncated" in message
    transcript_url = message[message.index("/v1/transcripts/") :]
    kept = await get_json(server, transcript_url)
    assert "americans" in json.dumps(kept).lower(), "the words before the damage are kept"


async def get_json(url: str, path: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]


async def test_events_older_than_the_log_keeps_are_refused_with_410(
    upload_settings: ServerSettings, engine: Engine, media: dict[str, Path], tmp_path: Path
) -> None:
    small_log = msgspec.structs.replace(upload_settings, data_dir=tmp_path, event_log_max_events=3)
    runner, url = await start_server(small_log, engine)
    try:
        _, accepted = await post(url, params={"wait": "true"}, data=media["jfk.mp3"].read_bytes())
        session_id = accepted["id"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/v1/sessions/{session_id}/events?after=0") as response:
                assert response.status == 410
                error = (await response.json())["error"]
        assert error["code"] == "events_expired" and f"/v1/transcripts/{session_id}" in error["message"]
        dropped_until = int(error["message"].split("-")[1].split()[0])
        status, tail = await follow_sse(url, session_id, last_event_id=dropped_until)
        assert status == 200 and tail[-1]["type"] == "closed", "the newest events are still there"
        assert tail[0]["seq"] == dropped_until + 1
    finally:
        await runner.cleanup()


async def test_the_readmes_curl_command_gets_captions(
    server: str, media: dict[str, Path], tmp_path: Path
) -> None:
    """`curl --data-binary @memo.mp3 ...` labels the body a url-encoded form; it is the file all the same."""
    shutil.copy(media["jfk.mp3"], tmp_path / "memo.mp3")
    url = f"{server}/v1/transcriptions?wait=true&format=srt"
    done = await asyncio.to_thread(
        subprocess.run,
        ["curl", "--silent", "--show-error", "--fail-with-body", "--data-binary", "@memo.mp3", url],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    cues = list(srt.parse(done.stdout))
    assert "ask not what your country" in " ".join(cue.content for cue in cues).replace("\n", " ").lower()


async def test_a_bad_request_is_refused_as_bad_even_when_uploads_are_busy(
    upload_settings: ServerSettings, engine: Engine, media: dict[str, Path], tmp_path: Path
) -> None:
    busy = msgspec.structs.replace(
        upload_settings, max_uploads=0, data_dir=tmp_path
    )  # every upload slot taken
    runner, url = await start_server(busy, engine)
    try:
        status, body = await post(url, data=media["jfk.mp3"].read_bytes(), params={"num_speakers": "-3"})
        assert (status, body["error"]["code"]) == (400, "invalid_request") and "num_speakers" in body[
            "error"
        ]["message"]
        status, body = await post(url, data=media["jfk.mp3"].read_bytes())
        assert (status, body["error"]["code"]) == (429, "overloaded"), "a good request waits its turn"
    finally:
        await runner.cleanup()
