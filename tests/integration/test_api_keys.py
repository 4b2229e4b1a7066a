"""API keys on a real server: made and revoked with `streamscribe keys`, asked of every route but
the health check, the schema and the page once one exists, sent as Bearer or Token by our client,
the `websockets` library and the official openai SDK."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import numpy as np
import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamscribe.asr.engine import Engine
from streamscribe.cli.main import main
from streamscribe.client import Client
from streamscribe.client.stream import stream_samples
from streamscribe.config import ServerSettings
from streamscribe.errors import Overloaded, Unauthorized
from streamscribe.store.sqlite import open_store
from streamscribe.transports.auth import key_hash
from streamscribe.wire import Error, ErrorBody, Ready, Start, decode_server, encode

from ..conftest import create_key, start_server

pytestmark = pytest.mark.model


def keys_command(*args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["keys", *args])
    return status, out.getvalue().splitlines()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def key(data_dir: Path) -> str:
    return create_key(data_dir, "alice")


@pytest.fixture(scope="module")
async def base_url(settings: ServerSettings, engine: Engine, data_dir: Path, key: str) -> AsyncIterator[str]:
    runner, url = await start_server(msgspec.structs.replace(settings, data_dir=data_dir), engine)
    yield url
    await runner.cleanup()


async def refusal_code(response: aiohttp.ClientResponse) -> str:
    return msgspec.json.decode(await response.read(), type=ErrorBody).error.code


def test_a_key_is_printed_once_as_the_last_line_and_only_its_name_is_listed(data_dir: Path, key: str) -> None:
    assert key.startswith("sk-ss-") and len(key) > 40
    status, lines = keys_command("list", "--data-dir", str(data_dir))
    assert status == 0 and any(line.startswith("alice\ttenant") for line in lines)
    assert key not in "\n".join(lines)
    database = (data_dir / "transcripts.sqlite3").read_bytes()
    assert key.encode() not in database, "only a hash of the key is stored"
    assert keys_command("create", "alice", "--data-dir", str(data_dir))[0] == 2, "names are unique"
    assert keys_command("create", "no spaces", "--data-dir", str(data_dir))[0] == 2
    assert keys_command("list", "--data-dir", str(data_dir / "mistyped"))[0] == 2, "no store is made there"
    assert not (data_dir / "mistyped").exists()


async def test_every_route_but_health_readiness_schema_and_page_needs_a_key(base_url: str, key: str) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz", "/v1/schema", "/"):
            async with http.get(base_url + path) as response:
                assert response.status == 200, path
        refused = {
            ("GET", "/v1/transcripts/0123"),
            ("DELETE", "/v1/transcripts/0123"),
            ("GET", "/v1/sessions/0123/events"),
            ("POST", "/v1/transcriptions"),
            ("POST", "/v1/audio/transcriptions"),
            ("POST", "/v1/webrtc/offer"),
            ("GET", "/v1/webrtc/ice-servers"),
        }
        for method, path in refused:
            async with http.request(method, base_url + path, data=b"x") as response:
                assert response.status == 401, path
                assert await refusal_code(response) == Unauthorized.code
        for authorization in (f"Bearer {key}", f"Token {key}", f"bearer  {key} "):
            headers = {"Authorization": authorization}
            async with http.get(base_url + "/v1/transcripts/0123", headers=headers) as response:
                assert response.status == 404, authorization
        for wrong in (f"Bearer {key}x", f"Basic {key}", "Bearer", f"Bearer {key[:-1]}"):
            async with http.get(
                base_url + "/v1/transcripts/0123", headers={"Authorization": wrong}
            ) as response:
                assert response.status == 401 and await refusal_code(response) == Unauthorized.code


async def test_a_stream_without_a_key_is_refused_before_the_upgrade_and_one_with_it_is_transcribed(
    base_url: str, key: str, jfk: tuple[np.ndarray, str]
) -> None:
    url = base_url.replace("http", "ws") + "/v1/stream"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass
    assert refused.value.response.status_code == 401
    assert b'"unauthorized"' in refused.value.response.body
    result = await stream_samples(url, jfk[0], speed=0, api_key=key)
    assert result.completed and len(result.finals) > 10
    [transcript_id] = [timed.event.transcript_id for timed in result.events if isinstance(timed.event, Ready)]
    assert transcript_id is not None
    async with Client(base_url, api_key=key) as client:
        text = await client.export(transcript_id, "txt")
    assert "country" in text.lower()


async def test_the_openai_sdk_sends_its_key_and_a_wrong_one_is_an_authentication_error(
    base_url: str, key: str, media: dict[str, Path]
) -> None:
    with media["jfk.mp3"].open("rb") as file:
        good = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
        result = await good.audio.transcriptions.create(file=file, model="whisper-1")
    assert "country" in result.text.lower()
    with media["jfk.mp3"].open("rb") as file, pytest.raises(openai.AuthenticationError):
        wrong = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="sk-ss-wrong", max_retries=0)
        await wrong.audio.transcriptions.create(file=file, model="whisper-1")


async def test_a_revoked_key_is_refused_at_its_next_request(base_url: str, data_dir: Path) -> None:
    status, lines = keys_command("create", "bob", "--data-dir", str(data_dir))
    assert status == 0
    bob = lines[-1]
    headers = {"Authorization": f"Bearer {bob}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(base_url + "/v1/transcripts/0123") as response:
            assert response.status == 404
        assert keys_command("revoke", "bob", "--data-dir", str(data_dir)) == (0, ["revoked key 'bob'"])
        async with http.get(base_url + "/v1/transcripts/0123") as response:
            assert response.status == 401
    assert keys_command("revoke", "bob", "--data-dir", str(data_dir))[0] == 1


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def streamed_transcript(base_url: str, secret: str, samples: np.ndarray, **start: object) -> str:
    url = base_url.replace("http", "ws") + "/v1/stream"
    result = await stream_samples(url, samples, speed=0, api_key=secret, start=Start(**start))  # type: ignore[arg-type]
    assert result.completed, result.events
    [transcript_id] = [timed.event.transcript_id for timed in result.events if isinstance(timed.event, Ready)]
    assert transcript_id is not None
    return transcript_id


async def test_a_transcript_and_its_events_belong_to_the_key_that_made_them(
    base_url: str, data_dir: Path, key: str, jfk: tuple[np.ndarray, str]
) -> None:
    mallory = create_key(data_dir, "mallory")
    ops = create_key(data_dir, "ops", "--admin")
    transcript_id = await streamed_transcript(base_url, key, jfk[0][: 16000 * 4])
    base = f"{base_url}/v1/transcripts/{transcript_id}"
    async with aiohttp.ClientSession() as http:
        for method, url in (
            ("GET", base),
            ("GET", base + "/versions"),
            ("GET", base + "/versions/1"),
            ("GET", base + "/audio"),
            ("POST", base + "/finalize"),
            ("DELETE", base),
            ("GET", f"{base_url}/v1/sessions/{transcript_id}/events"),
        ):
            async with http.request(method, url, headers=bearer(mallory), json={}) as response:
                assert response.status == 404, f"another key could {method} {url}: {response.status}"
        async with http.get(f"{base_url}/v1/transcripts", headers=bearer(mallory)) as response:
            assert (await response.json())["transcripts"] == [], "another key's transcript was listed"
        async with http.get(f"{base_url}/v1/transcripts", headers=bearer(key)) as response:
            assert transcript_id in [item["id"] for item in (await response.json())["transcripts"]]
        async with http.get(
            f"{base_url}/v1/sessions/{transcript_id}/events", headers=bearer(key)
        ) as response:
            assert response.status == 200 and b"event: closed" in await response.read()
        async with http.get(base, headers=bearer(ops)) as response:
            assert response.status == 200, "an admin key sees every key's transcripts"
        async with http.delete(base, headers=bearer(ops)) as response:
            assert response.status == 204
        async with http.get(
            f"{base_url}/v1/sessions/{transcript_id}/events", headers=bearer(key)
        ) as response:
            assert response.status == 404, "a deleted transcript's words stayed readable in its events"


async def test_a_browser_token_stands_for_its_key_in_the_header_and_on_stream_and_event_urls(
    base_url: str, data_dir: Path, key: str, jfk: tuple[np.ndarray, str]
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url}/v1/tokens", headers=bearer(key), json={"ttl_s": 600}) as response:
            assert response.status == 201
            answer = await response.json()
        token = answer["token"]
        assert answer["expires_at"] > time.time() + 590 and token != key
        for body in ({"ttl_s": 601}, {"ttl_s": 0}, {"ttl": 5}):
            async with http.post(f"{base_url}/v1/tokens", headers=bearer(key), json=body) as response:
                assert response.status == 400, body
        async with http.post(f"{base_url}/v1/tokens", headers=bearer(token), json={}) as response:
            assert response.status == 401, "a token made another token (it would never expire)"
        async with http.post(f"{base_url}/v1/tokens", json={}) as response:
            assert response.status == 401
        ws_url = base_url.replace("http", "ws") + "/v1/stream"
        result = await stream_samples(f"{ws_url}?token={token}", jfk[0][: 16000 * 4], speed=0)
        assert result.completed and result.finals, "a token on the WebSocket URL was not taken"
        [session_id] = [timed.event.session_id for timed in result.events if isinstance(timed.event, Ready)]
        async with http.get(f"{base_url}/v1/sessions/{session_id}/events?token={token}") as response:
            assert response.status == 200 and b"event: closed" in await response.read()
        async with http.get(f"{base_url}/v1/transcripts/{session_id}", headers=bearer(token)) as response:
            assert response.status == 200, "a token in the header did not authenticate as its key"
        async with http.get(f"{base_url}/v1/transcripts/{session_id}?token={token}") as response:
            assert response.status == 401, "?token= is for the URLs a browser cannot set headers on"
        async with http.get(f"{base_url}/v1/sessions/{session_id}/events?token={key}") as response:
            assert response.status == 401, "a long-lived key was taken from a URL"
            assert "never an API key" in (await response.json())["error"]["message"]
        expired = "tk-ss-expired-for-this-test"
        store = open_store(data_dir)
        store.create_token(key_hash(expired), "alice", expires_at=time.time() - 1)
        store.close()
        async with http.get(f"{base_url}/v1/sessions/{session_id}/events?token={expired}") as response:
            assert response.status == 401 and "expired" in (await response.json())["error"]["message"]


async def test_a_key_limited_to_one_stream_is_refused_a_second_while_the_first_is_open(
    base_url: str, data_dir: Path
) -> None:
    solo = create_key(data_dir, "solo", "--max-streams", "1")
    url = base_url.replace("http", "ws") + "/v1/stream"
    async with connect(url, additional_headers=bearer(solo)) as first:
        await first.send(encode(Start()).decode())
        assert isinstance(decode_server(await first.recv()), Ready)
        async with connect(url, additional_headers=bearer(solo)) as second:
            await second.send(encode(Start()).decode())
            refusal = decode_server(await second.recv())
            assert isinstance(refusal, Error) and refusal.code == Overloaded.code
            assert "key 'solo'" in refusal.message
        async with connect(url, additional_headers=bearer(create_key(data_dir, "other"))) as other:
            await other.send(encode(Start()).decode())
            assert isinstance(decode_server(await other.recv()), Ready), (
                "another key was held to solo's limit"
            )


async def test_a_key_or_a_request_that_keeps_no_audio_has_none_kept_once_done(
    base_url: str, data_dir: Path, key: str, jfk: tuple[np.ndarray, str], media: dict[str, Path]
) -> None:
    forgetful = create_key(data_dir, "forgetful", "--audio-retention-h", "0")
    async with aiohttp.ClientSession() as http:
        kept = await streamed_transcript(base_url, key, jfk[0][: 16000 * 3])
        forgotten = await streamed_transcript(base_url, forgetful, jfk[0][: 16000 * 3])
        asked = await streamed_transcript(base_url, key, jfk[0][: 16000 * 3], audio_retention_h=0.0)
        for transcript_id, secret, audio_kept in (
            (kept, key, True),
            (forgotten, forgetful, False),
            (asked, key, False),
        ):
            url = f"{base_url}/v1/transcripts/{transcript_id}/versions"
            async with http.get(url, headers=bearer(secret)) as response:
                assert (await response.json())["audio_kept"] is audio_kept, transcript_id
    with media["jfk.mp3"].open("rb") as file:
        client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
        result = await client.audio.transcriptions.create(
            file=file, model="whisper-1", extra_body={"audio_retention_h": 0}
        )
    assert "country" in result.text.lower()
    async with aiohttp.ClientSession(headers=bearer(key)) as http:
        async with http.get(f"{base_url}/v1/transcripts?limit=1") as response:
            [newest] = (await response.json())["transcripts"]
        assert newest["audio_kept"] is False, "the OpenAI request's audio_retention_h 0 kept the audio"


async def test_a_key_past_its_audio_quota_is_refused_new_streams_and_uploads(
    base_url: str, data_dir: Path, jfk: tuple[np.ndarray, str], media: dict[str, Path]
) -> None:
    thrifty = create_key(data_dir, "thrifty", "--max-audio-mb", "0.05")  # 50 KB: under 2 s of audio
    status, lines = keys_command("list", "--data-dir", str(data_dir))
    assert status == 0
    assert any(line.startswith("thrifty") and "max audio MB 0.05" in line for line in lines), lines
    await streamed_transcript(base_url, thrifty, jfk[0][: 16000 * 3])  # within the quota when it began
    url = base_url.replace("http", "ws") + "/v1/stream"
    async with connect(url, additional_headers=bearer(thrifty)) as ws:
        await ws.send(encode(Start()).decode())
        refusal = decode_server(await ws.recv())
        assert isinstance(refusal, Error) and refusal.code == "quota_exceeded", refusal
        await ws.wait_closed()
        assert ws.close_code == 1008
    async with (
        aiohttp.ClientSession(headers=bearer(thrifty)) as http,
        http.post(base_url + "/v1/transcriptions", data=media["jfk.mp3"].read_bytes()) as response,
    ):
        assert response.status == 507 and await refusal_code(response) == "quota_exceeded"
    async with connect(url, additional_headers=bearer(create_key(data_dir, "roomy"))) as other:
        await other.send(encode(Start()).decode())
        assert isinstance(decode_server(await other.recv()), Ready), "another key is not held to it"
