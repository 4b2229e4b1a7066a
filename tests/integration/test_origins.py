"""Browsers on other sites and other names, on a real server: a page on another origin is refused
(403 forbidden_origin) on the WebSocket, the event stream, uploads and REST before anything runs,
unless --allowed-origins names it (then CORS headers let it read the answers); a loopback server
answers only to loopback Host names; and a server on a network address with no key and auth on
refuses to start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamscribe.app import create_app
from streamscribe.asr.engine import Engine
from streamscribe.config import ServerSettings
from streamscribe.errors import AuthRequired
from streamscribe.store.base import ApiKey
from streamscribe.store.sqlite import open_store

from ..conftest import start_server

pytestmark = pytest.mark.model

APP = "http://app.example"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
async def base_url(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    served = msgspec.structs.replace(
        settings, data_dir=tmp_path_factory.mktemp("origins"), allowed_origins=(APP,)
    )
    runner, url = await start_server(served, engine)
    yield url
    await runner.cleanup()


async def error_code(response: aiohttp.ClientResponse) -> str:
    return str((await response.json())["error"]["code"])


async def test_a_page_on_another_origin_is_refused_before_anything_runs(base_url: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(base_url.replace("http", "ws") + "/v1/stream", origin=EVIL):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    assert b'"forbidden_origin"' in refused.value.response.body
    async with aiohttp.ClientSession(headers={"Origin": EVIL}) as http:
        for method, path in (
            ("GET", "/v1/sessions/0123/events"),
            ("POST", "/v1/transcriptions"),
            ("POST", "/v1/transcripts/0123/finalize"),
            ("DELETE", "/v1/transcripts/0123"),
            ("POST", "/v1/webrtc/offer"),
            ("POST", "/v1/tokens"),
        ):
            async with http.request(method, base_url + path, data=b"x") as response:
                assert response.status == 403 and await error_code(response) == "forbidden_origin", path
                assert "Access-Control-Allow-Origin" not in response.headers


async def test_the_servers_own_pages_and_clients_without_an_origin_pass(base_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in ({"Origin": base_url}, {}):
            async with http.get(base_url + "/v1/transcripts/0123", headers=headers) as response:
                assert response.status == 404, headers
                assert "Access-Control-Allow-Origin" not in response.headers
    async with connect(base_url.replace("http", "ws") + "/v1/stream", origin=base_url):  # type: ignore[arg-type]
        pass


async def test_an_allowed_origin_gets_cors_headers_on_answers_errors_and_preflights(base_url: str) -> None:
    async with aiohttp.ClientSession(headers={"Origin": APP}) as http:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        async with http.options(base_url + "/v1/transcriptions", headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == APP
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
            assert response.headers["Access-Control-Allow-Headers"] == "authorization"
        async with http.get(base_url + "/v1/transcripts") as response:
            assert response.status == 200 and response.headers["Access-Control-Allow-Origin"] == APP
        async with http.get(base_url + "/v1/transcripts/0123") as response:
            assert response.status == 404 and response.headers["Access-Control-Allow-Origin"] == APP
    async with connect(base_url.replace("http", "ws") + "/v1/stream", origin=APP):  # type: ignore[arg-type]
        pass


async def test_a_loopback_server_answers_only_to_loopback_names(base_url: str) -> None:
    port = base_url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as http:
        for host, status in ((f"rebound.evil.example:{port}", 403), (f"localhost:{port}", 404)):
            async with http.get(base_url + "/v1/transcripts/0123", headers={"Host": host}) as response:
                assert response.status == status, host
                if status == 403:
                    assert await error_code(response) == "forbidden_host"


def test_a_network_address_with_no_key_refuses_to_start_unless_auth_is_off_or_a_key_exists(
    settings: ServerSettings, engine: Engine, tmp_path: Path
) -> None:
    exposed = msgspec.structs.replace(settings, host="0.0.0.0", data_dir=tmp_path)
    with pytest.raises(AuthRequired, match="--auth off") as refused:
        create_app(exposed, engine)
    assert "streamscribe keys create" in refused.value.message
    with pytest.raises(AuthRequired, match="--allowed-hosts"):  # else DNS rebinding reaches it
        create_app(msgspec.structs.replace(exposed, auth="off"), engine)
    create_app(msgspec.structs.replace(exposed, auth="off", allowed_hosts=("asr.internal",)), engine)
    store = open_store(tmp_path)
    store.create_key(ApiKey(name="ops", admin=True), "a" * 64)
    store.close()
    create_app(exposed, engine)


async def test_a_network_server_whose_last_key_is_revoked_stays_shut(
    settings: ServerSettings, engine: Engine, tmp_path: Path
) -> None:
    store = open_store(tmp_path)
    store.create_key(ApiKey(name="ops", admin=True), "a" * 64)
    store.close()
    runner, url = await start_server(
        msgspec.structs.replace(settings, host="0.0.0.0", data_dir=tmp_path), engine
    )
    try:
        store = open_store(tmp_path)
        assert store.revoke_key("ops")
        store.close()
        async with aiohttp.ClientSession() as http, http.get(url + "/v1/transcripts") as response:
            assert response.status == 401 and await error_code(response) == "unauthorized"
            assert "no API key yet" in (await response.json())["error"]["message"]
    finally:
        await runner.cleanup()


async def test_a_malformed_origin_or_host_is_refused_with_a_code(base_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in ({"Origin": "http://["}, {"Host": "["}):
            async with http.get(base_url + "/v1/transcripts/0123", headers=headers) as response:
                assert response.status == 403, headers
                assert await error_code(response) in ("forbidden_origin", "forbidden_host")
