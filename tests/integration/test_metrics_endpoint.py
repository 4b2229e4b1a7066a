"""GET /metrics on a real server with a key: after a stream, an upload and refusals its figures
say what happened, parsed as Prometheus parses them; the key is asked for like on every route,
the --metrics-port serves them alone on loopback with none, and each server counts only its own."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamscribe.asr.engine import Engine
from streamscribe.audio import SAMPLE_RATE
from streamscribe.client.stream import StreamResult, stream_samples
from streamscribe.config import ServerSettings
from streamscribe.wire import Error, Start

from ..conftest import speech_file, start_keyed_server, start_server

pytestmark = pytest.mark.model
_SETTLE_S = 120.0
"""How long the upload's replay and both second passes may take on a loaded machine."""


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape, by name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls(
            {
                (sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
        )

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for one never counted (a labelled child not made yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str) -> float:
        return sum(value for (sample, _labels), value in self.samples.items() if sample == name)


@dataclass(frozen=True)
class KeyedServer:
    url: str
    key: str
    metrics_port: int


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
async def keyed_server(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[KeyedServer]:
    """A server of its own with a key (so every route asks for it), the second pass on (tiny.en,
    no diarization: quick), and a --metrics-port."""
    metrics_port = free_loopback_port()
    server_settings = msgspec.structs.replace(
        settings,
        metrics_port=metrics_port,
        finalize=msgspec.structs.replace(settings.finalize, enabled=True, model="tiny.en", diarize=False),
    )
    runner, url, key = await start_keyed_server(
        server_settings, engine, tmp_path_factory.mktemp("metrics"), "scraper"
    )
    yield KeyedServer(url, key, metrics_port)
    await runner.cleanup()


async def scrape(url: str, key: str | None = None) -> Scrape:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape.parse(await response.text())


async def scrape_until(url: str, key: str, settled: str, check: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until `check(scrape)` holds, at most _SETTLE_S; fails saying what had not `settled`."""
    deadline = time.monotonic() + _SETTLE_S
    while True:
        figures = await scrape(url, key)
        if check(figures):
            return figures
        assert time.monotonic() < deadline, f"{settled} did not happen within {_SETTLE_S:g} s"
        await asyncio.sleep(0.2)


def form(file: Path) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("file", file.read_bytes(), filename=file.name)
    return data


async def upload(url: str, key: str, data: aiohttp.FormData) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/v1/transcriptions", data=data, headers=headers) as response:
            assert response.status == 202, await response.text()


async def status_of(url: str, key: str | None = None) -> int:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        await response.read()
        return response.status


async def test_the_figures_say_what_happened_to_streams_uploads_refusals_and_second_passes(
    keyed_server: KeyedServer, jfk: tuple[np.ndarray, str]
) -> None:
    url, key = keyed_server.url, keyed_server.key
    audio_s = jfk[0].size / SAMPLE_RATE
    stream_url = url.replace("http", "ws") + "/v1/stream"
    streamed: StreamResult = await stream_samples(stream_url, jfk[0], speed=0, api_key=key)
    assert streamed.completed and len(streamed.finals) > 10
    await upload(url, key, form(speech_file("jfk/jfk.wav")))
    refused = await stream_samples(
        stream_url, jfk[0][:1600], speed=0, start=Start(model="no-such"), api_key=key
    )
    assert [timed.event.code for timed in refused.events if isinstance(timed.event, Error)] == [
        "unknown_model"
    ]
    assert await status_of(url + "/v1/transcripts/0123", key) == 404
    assert await status_of(url + "/v1/transcripts/0123") == 401

    figures = await scrape_until(
        url,
        key,
        "the end of every session and of both second passes",
        lambda figures: (
            figures.value("streamscribe_uploads_total", outcome="ok") == 1
            and figures.value("streamscribe_second_pass_jobs_total", state="done") == 2
            and figures.total("streamscribe_live_sessions") == 0
        ),
    )

    websocket = {"transport": "websocket"}
    assert figures.value("streamscribe_audio_received_seconds_total", **websocket) == pytest.approx(
        audio_s, abs=0.01
    )
    assert figures.value("streamscribe_audio_received_seconds_total", transport="upload") == pytest.approx(
        audio_s, abs=0.05
    )
    assert figures.value("streamscribe_final_words_total", **websocket) == len(streamed.finals)
    assert figures.value("streamscribe_final_words_total", transport="upload") > 10
    lag_count = figures.value("streamscribe_final_word_lag_seconds_count", **websocket)
    assert lag_count == len(streamed.finals), "one lag per final word"
    lag_sum = figures.value("streamscribe_final_word_lag_seconds_sum", **websocket)
    assert 0 < lag_sum / lag_count < 60

    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:
        decoder = (await response.json())["decoder"]
    assert figures.value("streamscribe_decode_seconds_count") == decoder["batches"] > 0
    assert figures.value("streamscribe_decode_batch_windows_sum") == decoder["decodes"]
    assert figures.value("streamscribe_decode_wait_seconds_count") > 0
    assert figures.value("streamscribe_decoded_audio_seconds_total") == pytest.approx(
        decoder["decoded_audio_s"]
    )

    assert figures.value("streamscribe_refusals_total", code="unknown_model") == 1, "a refused WebSocket"
    assert figures.value("streamscribe_refusals_total", code="transcript_not_found") == 1, "a refused request"
    assert figures.value("streamscribe_refusals_total", code="unauthorized") >= 1

    assert figures.value("streamscribe_second_pass_jobs_total", state="queued") == 2
    assert figures.value("streamscribe_second_pass_jobs_total", state="failed") == 0
    assert figures.value("streamscribe_second_pass_duration_seconds_count", state="done") == 2
    assert figures.value("streamscribe_second_pass_jobs_running") == 0
    assert figures.value("streamscribe_storage_free_bytes") > 0
    assert figures.value("streamscribe_connections") >= 1, "the scrape's own"


async def test_the_metrics_need_the_key_and_the_metrics_port_serves_them_alone_without_one(
    keyed_server: KeyedServer,
) -> None:
    url = keyed_server.url
    before = (await scrape(url, keyed_server.key)).value("streamscribe_refusals_total", code="unauthorized")
    assert await status_of(url + "/metrics") == 401
    assert await status_of(url + "/metrics", "sk-ss-wrong") == 401
    after = await scrape(url, keyed_server.key)
    assert after.value("streamscribe_refusals_total", code="unauthorized") == before + 2

    loopback = f"http://127.0.0.1:{keyed_server.metrics_port}"
    sidecar = await scrape(loopback)
    assert sidecar.value("streamscribe_refusals_total", code="unauthorized") == before + 2, "the same server"
    assert await status_of(loopback + "/v1/transcripts") == 404, "only /metrics is served there"
    assert await status_of(loopback + "/healthz") == 404


async def test_each_server_in_a_process_reports_only_its_own(
    keyed_server: KeyedServer,
    settings: ServerSettings,
    engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
    jfk: tuple[np.ndarray, str],
) -> None:
    before = await scrape(keyed_server.url, keyed_server.key)
    other_settings = msgspec.structs.replace(settings, data_dir=tmp_path_factory.mktemp("other-metrics"))
    runner, other_url = await start_server(other_settings, engine)
    try:
        stream_url = other_url.replace("http", "ws") + "/v1/stream"
        streamed = await stream_samples(stream_url, jfk[0][: 3 * SAMPLE_RATE], speed=0)
        assert streamed.completed
        other = await scrape(other_url)
    finally:
        await runner.cleanup()
    after = await scrape(keyed_server.url, keyed_server.key)
    websocket = {"transport": "websocket"}
    assert other.value("streamscribe_audio_received_seconds_total", **websocket) == pytest.approx(3.0)
    assert other.value("streamscribe_final_words_total", **websocket) == len(streamed.finals) > 0
    assert other.value("streamscribe_refusals_total", code="unauthorized") == 0
    for name in ("streamscribe_audio_received_seconds_total", "streamscribe_final_words_total"):
        assert after.value(name, **websocket) == before.value(name, **websocket), "not counted here"
