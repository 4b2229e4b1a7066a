"""API keys on a real server: made and revoked with `streamscribe keys`, asked of every route but
the health check, the schema and the page once one exists, sent as Bearer or Token by our client,
the `websockets` library and the official openai SDK."""

from __future__ import annotations

import contextlib
import io
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
from streamscribe.client.http import fetch_transcript
from streamscribe.client.stream import stream_samples
from streamscribe.config import ServerSettings
from streamscribe.errors import Unauthorized
from streamscribe.wire import ErrorBody, Ready

from .test_transcripts import start_server

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
    status, lines = keys_command("create", "alice", "--data-dir", str(data_dir))
    assert status == 0
    return lines[-1]


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


async def test_every_route_but_health_schema_and_page_needs_a_key(base_url: str, key: str) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/v1/schema", "/"):
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
    body = await fetch_transcript(base_url, transcript_id, "txt", api_key=key)
    assert b"country" in body.lower()


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
