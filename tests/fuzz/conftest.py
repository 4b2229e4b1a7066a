"""The fuzz suite's server and its rules. One real `streamscribe serve` process, with an API key,
serves every generated input; its JSON log is read at the end: no record may carry a traceback
(nothing raised out of a handler), and it must shut down with status 0.

STREAMSCRIBE_FUZZ_SCALE multiplies the examples of every test (1: a few thousand cases in all,
the test command's run; loadtests/fuzz.sh runs a longer one).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, settings

from streamscribe.errors import ERROR_CODES

SCALE = float(os.environ.get("STREAMSCRIBE_FUZZ_SCALE", "1"))
CLI = [sys.executable, "-m", "streamscribe.cli"]
ANSWER_TIMEOUT_S = 60.0
"""No answer, or no close, within this is a hang."""


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@dataclass(frozen=True)
class FuzzServer:
    url: str
    key: str
    transcript_id: str
    """A stored transcript of the key's, for the REST endpoints to be fuzzed on."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    env = os.environ | {
        "STREAMSCRIBE_MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
        "STREAMSCRIBE_DATA_DIR": str(data_dir),
        "STREAMSCRIBE_IDLE_TIMEOUT_S": "2",
        "STREAMSCRIBE_STREAM_IDLE_TIMEOUT_S": "5",
        "STREAMSCRIBE_MAX_UPLOAD_MB": "4",
        "STREAMSCRIBE_MAX_SESSIONS": "16",
        "STREAMSCRIBE_MAX_UPLOADS": "8",
        "STREAMSCRIBE_MAX_VERSIONS": "3",
        "STREAMSCRIBE_FINALIZE_DIARIZE": "false",
    }
    created = subprocess.run(
        [*CLI, "keys", "create", "fuzz"], env=env, capture_output=True, text=True, check=True
    )
    key = created.stdout.strip().splitlines()[-1]
    log_path = data_dir.parent / "fuzz-server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*CLI, "serve", "--port", "0", "--no-second-pass", "--log-format", "json"],
            env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"listening on (http://\S+)", line)
            assert match, f"serve printed {line!r}; its log: {log_path.read_text()[-2000:]}"
            url = match.group(1)
            server = FuzzServer(url, key, asyncio.run(_stored_transcript(url, key)))
            yield server
            assert asyncio.run(sessions_after(url, lambda held: held == 0)) == 0, "every session ends"
        finally:
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=120)
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    raised = [record for record in records if "error" in record]
    assert not raised, f"{len(raised)} records with a traceback; the first: {raised[0]}"
    assert status == 0, f"serve exited {status} after SIGTERM"


async def sessions_after(url: str, done: Callable[[int], bool], timeout_s: float = 90.0) -> int:
    """Poll /healthz until `done(open sessions)` (generated WebRTC peers that never connect hold
    theirs for the connect timeout); returns the last count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(url + "/healthz") as response:
                held = int((await response.json())["sessions"])
            if done(held) or loop.time() > deadline:
                return held
            await asyncio.sleep(0.5)


async def _stored_transcript(url: str, key: str) -> str:
    """A short stream of silence and a tone: a stored transcript (no speech needed)."""
    from websockets.asyncio.client import connect

    ws_url = url.replace("http://", "ws://") + "/v1/stream"
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        await ws.send('{"type":"start"}')
        ready = json.loads(await ws.recv())
        await ws.send(bytes(32000))
        await ws.send('{"type":"stop"}')
        async for _message in ws:
            pass
    return str(ready["transcript_id"])


def assert_documented_refusal(status: int, content_type: str, body: bytes, context: Any) -> None:
    """A refused request answers JSON {"error": {"code", ...}} with a code the server documents;
    nothing is an unexplained internal error."""
    assert status != 500, (context, body[:500])
    if status < 400:
        return
    assert content_type == "application/json", (status, content_type, body[:300], context)
    code = json.loads(body)["error"]["code"]
    assert code in ERROR_CODES, (code, context)


async def request(method: str, url: str, context: Any, **kwargs: Any) -> tuple[int, str, bytes]:
    """One request, which must be answered (and the answer read) within ANSWER_TIMEOUT_S."""
    async with asyncio.timeout(ANSWER_TIMEOUT_S), aiohttp.ClientSession() as http:
        async with http.request(method, url, **kwargs) as response:
            body = await response.read()
            assert_documented_refusal(response.status, response.content_type, body, context)
            return response.status, response.content_type, body
