"""Scaled out as an operator runs it: two `serve` nodes and `worker` processes (the console script,
as subprocesses) on one real Redis and one real PostgreSQL, recordings on a shared directory.

A stream into node A is followed on node B; a worker SIGKILLed in the middle of a second pass is
replaced by another that stores exactly one new version; a node SIGKILLed mid-stream loses
nothing it recorded, recovered at its restart, or by the other node once its lease expires.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psycopg
import pytest

from streamscribe.audio import SAMPLE_RATE
from streamscribe.client.stream import StreamResult, TimedEvent, stream_samples
from streamscribe.wire import Final, Ready, TranscriptReady

from ..conftest import speech_file
from ..services import redis_server

CLI = [sys.executable, "-m", "streamscribe.cli"]
_TIMEOUT_S = 300.0
_LEASE_S = 3.0
_VISIBILITY_S = 6.0


class Process:
    """A console-script process whose output (stdout and stderr) is read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    async def wait_for(self, pattern: str, timeout_s: float = _TIMEOUT_S) -> re.Match[str]:
        """The first line (seen or to come) matching `pattern`."""
        seen = 0
        async with asyncio.timeout(timeout_s):
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError(
                        f"{self.name} exited ({self.process.returncode}): {self.lines[-20:]}"
                    )
                self._changed.clear()
                await self._changed.wait()

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signum)
        async with asyncio.timeout(120):
            code = await self.process.wait()
            await self._reader
        return code


def new_database(postgres_url: str) -> str:
    """The URL of a new, empty database on the tests' PostgreSQL."""
    name = f"scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[dict[str, str]]:
    """Redis, a database of its own on the tests' PostgreSQL, and a shared audio directory."""
    database_url = new_database(postgres_url)
    audio_dir = tmp_path_factory.mktemp("shared-audio")
    with redis_server(tmp_path_factory.mktemp("redis")) as redis_url:
        yield {
            "STREAMSCRIBE_REDIS_URL": redis_url,
            "STREAMSCRIBE_DATABASE_URL": database_url,
            "STREAMSCRIBE_AUDIO_URL": f"file://{audio_dir}",
            "STREAMSCRIBE_NODE_LEASE_S": str(_LEASE_S),
            "STREAMSCRIBE_JOB_VISIBILITY_TIMEOUT_S": str(_VISIBILITY_S),
        }


class Cluster:
    """Starts nodes and workers on the module's services; stops what is left at the end."""

    def __init__(self, services: dict[str, str], root: Path) -> None:
        self._env = os.environ | services
        self._root = root
        self.processes: list[Process] = []

    async def start(self, command: str, name: str, *args: str) -> Process:
        data_dir = self._root / name
        data_dir.mkdir(exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            *CLI,
            command,
            "--node-id",
            name,
            "--data-dir",
            str(data_dir),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._env,
        )
        started = Process(process, name)
        self.processes.append(started)
        return started

    async def node(self, name: str) -> tuple[Process, str]:
        """A serve node that runs no second pass (the workers do); returns it and its URL."""
        return await self.start_node(name, "--second-pass-workers", "0")

    async def start_node(self, name: str, *args: str) -> tuple[Process, str]:
        node = await self.start("serve", name, "--port", "0", *args)
        match = await node.wait_for(r"listening on (http://\S+)")
        return node, match.group(1)

    async def worker(self, name: str) -> Process:
        worker = await self.start("worker", name)
        await worker.wait_for("taking second-pass jobs")
        return worker

    async def stop_all(self) -> None:
        for process in self.processes:
            if process.process.returncode is None:
                await process.stop(signal.SIGKILL)


@pytest.fixture
async def cluster(services: dict[str, str], tmp_path: Path) -> AsyncIterator[Cluster]:
    started = Cluster(services, tmp_path)
    try:
        yield started
    finally:
        await started.stop_all()


def speech(seconds: float) -> np.ndarray:
    """The first `seconds` of the two-speaker conversation (16 kHz mono float32)."""
    import wave

    with wave.open(str(speech_file("conversations/conv2spk_1272_84.wav")), "rb") as recording:
        frames = recording.readframes(int(seconds * SAMPLE_RATE))
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768


async def get_json(url: str, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def when_done(url: str, transcript_id: str) -> Any:
    """The transcript's versions once its second pass is done (another process does it: polled)."""
    async with asyncio.timeout(_TIMEOUT_S):
        while True:
            versions = await get_json(url, f"/v1/transcripts/{transcript_id}/versions")
            if versions["state"] == "done":
                return versions
            await asyncio.sleep(0.5)


async def follow(url: str, session_id: str) -> list[dict[str, Any]]:
    """Every event of the session, read on the node at `url` until `closed`. The session's first
    events may not have reached Redis the instant its client saw `ready`: a 404 is asked again."""
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(_TIMEOUT_S):
            while True:
                async with http.get(f"{url}/v1/sessions/{session_id}/events") as probe:
                    if probe.status != 404:
                        break
                await asyncio.sleep(0.05)
            events: list[dict[str, Any]] = []
            async with http.ws_connect(f"{url}/v1/sessions/{session_id}/events") as ws:
                async for message in ws:
                    events.append(json.loads(message.data))
            return events


async def server_sent_events(url: str, session_id: str, last_event_id: int) -> list[tuple[int, str]]:
    """(seq, type) of the events after `last_event_id`, over SSE as EventSource resumes."""
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last_event_id)}
    seen: list[tuple[int, str]] = []
    seq = 0
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/v1/sessions/{session_id}/events", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"id: "):
                seq = int(line[4:])
            elif line.startswith(b"event: "):
                seen.append((seq, line[7:].strip().decode()))
    return seen


async def stream_and_follow(
    stream_url: str, follow_url: str, samples: np.ndarray
) -> tuple[StreamResult, list[dict[str, Any]]]:
    followed: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
    tasks: list[asyncio.Task[Any]] = []

    def on_event(timed: TimedEvent) -> None:
        if isinstance(timed.event, Ready):
            task = asyncio.create_task(follow(follow_url, timed.event.session_id))
            task.add_done_callback(lambda done: followed.set_result(done.result()))
            tasks.append(task)

    result = await stream_samples(
        stream_url.replace("http", "ws") + "/v1/stream", samples, speed=0, on_event=on_event
    )
    async with asyncio.timeout(_TIMEOUT_S):
        return result, await followed


def session_id(result: StreamResult) -> str:
    return next(timed.event.session_id for timed in result.events if isinstance(timed.event, Ready))


async def test_a_stream_into_node_a_is_followed_on_node_b_and_finished_by_a_worker(cluster: Cluster) -> None:
    _, node_a = await cluster.node("node-a")
    _, node_b = await cluster.node("node-b")
    await cluster.worker("worker-1")
    result, followed = await stream_and_follow(node_a, node_b, speech(20.0))
    assert result.completed
    kinds = [event["type"] for event in followed]
    assert kinds[0] == "ready" and kinds[-2:] == ["transcript_ready", "closed"]
    assert [event["seq"] for event in followed] == list(range(1, len(followed) + 1))
    finals_a = [word.text for word in result.finals]
    finals_b = [word["text"] for event in followed if event["type"] == "final" for word in event["words"]]
    assert finals_a and finals_b == finals_a, "node B's follower saw other finals than the client on A"
    assert followed[-2]["version"] == 2, "the worker's version was not announced on the session"
    transcript_id = session_id(result)
    resumed = await server_sent_events(node_b, transcript_id, last_event_id=5)
    assert resumed == [(event["seq"], event["type"]) for event in followed[5:]], (
        "SSE did not resume after seq 5"
    )
    versions = await get_json(node_b, f"/v1/transcripts/{transcript_id}/versions")
    assert [version["version"] for version in versions["versions"]] == [1, 2]
    listed = await get_json(node_a, "/v1/transcripts?limit=5")
    assert transcript_id in [item["id"] for item in listed["transcripts"]]
    ready = await get_json(node_b, "/readyz")
    assert ready == {
        "status": "ready",
        "node": "node-b",
        "checks": {"database": "ok", "audio": "ok", "redis": "ok", "lease": "ok"},
    }


async def test_a_worker_killed_mid_job_is_replaced_and_one_version_is_stored(cluster: Cluster) -> None:
    _, node_a = await cluster.node("node-a")
    doomed = await cluster.worker("worker-doomed")
    streaming = asyncio.create_task(
        stream_samples(node_a.replace("http", "ws") + "/v1/stream", speech(45.0), speed=0)
    )
    await doomed.wait_for("second pass started")
    await doomed.stop(signal.SIGKILL)
    await cluster.worker("worker-2")
    async with asyncio.timeout(_TIMEOUT_S):
        result = await streaming
    assert result.completed
    ready = [timed.event.version for timed in result.events if isinstance(timed.event, TranscriptReady)]
    assert ready == [2]
    versions = await get_json(node_a, f"/v1/transcripts/{session_id(result)}/versions")
    assert [version["version"] for version in versions["versions"]] == [1, 2], "not exactly one new version"
    assert versions["state"] == "done"


async def test_a_node_killed_mid_stream_loses_nothing_it_recorded(cluster: Cluster) -> None:
    node, node_a = await cluster.node("node-a")
    _, node_b = await cluster.node("node-b")
    await cluster.worker("worker-1")
    finished, _ = await stream_and_follow(node_a, node_b, speech(10.0))
    started = asyncio.Event()
    heard: list[str] = []

    def on_event(timed: TimedEvent) -> None:
        if isinstance(timed.event, Ready):
            heard.append(timed.event.session_id)
        if isinstance(timed.event, Final):
            started.set()

    cut = asyncio.create_task(
        stream_samples(
            node_a.replace("http", "ws") + "/v1/stream", speech(60.0), speed=1.0, on_event=on_event
        )
    )
    async with asyncio.timeout(_TIMEOUT_S):
        await started.wait()
    await node.stop(signal.SIGKILL)
    assert not (await cut).completed
    cut_id = heard[0]
    # node B recovers it once node A's lease has expired: a v1 that says so, then the second pass
    versions = await when_done(node_b, cut_id)
    assert [version["version"] for version in versions["versions"]] == [1, 2]
    first = await get_json(node_b, f"/v1/transcripts/{cut_id}/versions/1")
    assert any("stopped during the live stream" in warning for warning in first["info"]["warnings"])
    second = await get_json(node_b, f"/v1/transcripts/{cut_id}")
    assert second["duration_s"] > 2.0 and second["segments"], "the recorded audio was not transcribed"
    # node A comes back under its name; what it finished before is all there
    _, node_a = await cluster.node("node-a")
    kept = await get_json(node_a, f"/v1/transcripts/{session_id(finished)}/versions")
    assert [version["version"] for version in kept["versions"]] == [1, 2]


async def test_a_node_drains_on_sigterm_and_leaves_the_second_pass_to_the_workers(cluster: Cluster) -> None:
    node, node_a = await cluster.start_node("node-a", "--second-pass-workers", "0", "--drain-grace-s", "2")
    _, node_b = await cluster.node("node-b")
    await cluster.worker("worker-1")
    heard_a_final = asyncio.Event()
    streaming = asyncio.create_task(
        stream_samples(
            node_a.replace("http", "ws") + "/v1/stream",
            speech(30.0),
            speed=1.0,
            on_event=lambda timed: heard_a_final.set() if isinstance(timed.event, Final) else None,
        )
    )
    async with asyncio.timeout(60):
        await heard_a_final.wait()
    node.process.send_signal(signal.SIGTERM)
    async with aiohttp.ClientSession() as http:  # the load balancer's view, while the stream goes on
        async with asyncio.timeout(30):
            while True:
                async with http.get(f"{node_a}/readyz") as response:
                    if response.status == 503:
                        assert (await response.json())["status"] == "draining"
                        break
                await asyncio.sleep(0.05)
    assert not streaming.done(), "the stream ended before the load balancer could see the node drain"
    result = await streaming
    assert result.completed, "the node cut its stream instead of ending it"
    assert result.finals, "the words heard before the shutdown were lost"
    assert await node.stop() == 0
    versions = await when_done(node_b, session_id(result))
    assert [version["version"] for version in versions["versions"]] == [1, 2]


async def test_keys_made_in_the_database_hold_on_every_node(
    cluster: Cluster, services: dict[str, str], postgres_url: str
) -> None:
    database_url = new_database(postgres_url)  # keys of its own: the other tests' nodes ask for none
    created = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "keys", "create", "alice", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | services,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]
    own_redis = (
        services["STREAMSCRIBE_REDIS_URL"].rsplit("/", 1)[0] + "/1"
    )  # one deployment per Redis database
    _, node = await cluster.start_node("node-keys", "--database-url", database_url, "--redis-url", own_redis)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node}/v1/transcripts") as refused:
            assert refused.status == 401
        async with http.get(f"{node}/v1/transcripts", headers={"Authorization": f"Bearer {key}"}) as allowed:
            assert allowed.status == 200 and (await allowed.json())["transcripts"] == []
