"""`streamscribe serve` in a subprocess on a free loopback port, for benchmarks against a real server."""

from __future__ import annotations

import asyncio
import re
import sys
import time

import aiohttp
import msgspec
import psutil

from ..config import EngineKind
from ..wire import Health


class ServerProcess:
    """`streamscribe serve` on a free loopback port, with its memory and its live streams' p95
    decode wait (the admission measure, from /healthz) sampled every second."""

    def __init__(self, model: str, *serve_args: str, engine: EngineKind) -> None:
        self._model = model
        self._engine = engine
        self._serve_args = serve_args
        self.url = ""
        self.base_url = ""
        self.rss_mib: list[tuple[float, float]] = []
        self.decode_wait_p95_s: list[float] = []
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> ServerProcess:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamscribe.cli",
            "serve",
            "--port",
            "0",
            "--engine",
            self._engine,
            "--model",
            self._model,
            *self._serve_args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        found = await asyncio.wait_for(self._listening(self._process.stdout), 120)
        self.base_url = f"http://{found.group(1)}"
        self.url = f"ws://{found.group(1)}/v1/stream"
        self._sampler = asyncio.create_task(self._sample())
        return self

    @staticmethod
    async def _listening(output: asyncio.StreamReader) -> re.Match[str]:
        """The `listening on` line, past what the server logs before it."""
        lines: list[str] = []
        while line := (await output.readline()).decode():
            if found := re.search(r"listening on http://(\S+)", line):
                return found
            lines.append(line)
        raise RuntimeError(f"the server did not start: {''.join(lines[-5:])!r}")

    async def __aexit__(self, *exc: object) -> None:
        self._sampler.cancel()
        assert self._process is not None
        self._process.terminate()
        await self._process.wait()

    async def health(self) -> Health:
        async with aiohttp.ClientSession() as http, http.get(f"{self.base_url}/healthz") as response:
            return msgspec.json.decode(await response.read(), type=Health)

    async def _sample(self) -> None:
        assert self._process is not None
        process = psutil.Process(self._process.pid)
        began = time.monotonic()
        while True:
            self.rss_mib.append((time.monotonic() - began, process.memory_info().rss / 2**20))
            wait = (await self.health()).decode_wait_p95_s
            if wait is not None:
                self.decode_wait_p95_s.append(wait)
            await asyncio.sleep(1.0)
