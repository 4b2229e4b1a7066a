"""Peak memory of a real server under abuse (the trust issue): a real `streamscribe serve`
process on a free loopback port, its resident set sampled every 20 ms, one scenario at a time.
Prints one line per scenario: what the server answered and how far RSS rose above where it
stood before. Run: `.venv/bin/python loadtests/abuse.py` (about 3 minutes; `--second-pass`
adds the second pass of a 3.8 h recording, about 10 more)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import psutil
from websockets.asyncio.client import connect

MiB = 1 << 20


class Server:
    """`streamscribe serve` in its own process; `peak_mb` while a scenario runs."""

    def __init__(self, data_dir: Path, extra: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamscribe.cli", "serve", "--port", "0", "--data-dir", str(data_dir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"listening on http://(\S+):(\d+)", line)
        assert match, line
        self.host, self.port = match.group(1), int(match.group(2))
        self.url = f"http://{self.host}:{self.port}"
        self._ps = psutil.Process(self.process.pid)

    def rss_mb(self) -> float:
        return self._ps.memory_info().rss / MiB

    async def measure(self, scenario: Callable[[], Awaitable[str]]) -> tuple[str, float, float]:
        """Run the scenario; returns its outcome, RSS before and the peak above it (MB)."""
        before = self.rss_mb()
        peak = before
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, self.rss_mb())
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            outcome = await scenario()
        finally:
            done.set()
            await sampler
        return outcome, before, peak - before

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


async def health(server: Server) -> dict:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as response:
        return dict(await response.json())


async def idle_flood(server: Server, count: int = 3000) -> str:
    """`count` TCP connections that send nothing, held for 3 s."""
    held = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            held.append(await asyncio.open_connection(server.host, server.port))
    await asyncio.sleep(3)
    refused = 0
    for reader, writer in held:
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            if (await asyncio.wait_for(reader.read(12), 0.01)).startswith(b"HTTP/1.1 503"):
                refused += 1
        writer.close()
    return f"{len(held)} opened, {refused} answered 503 too_many_connections at once"


async def half_open(server: Server, count: int = 900) -> str:
    """`count` requests whose head never ends (slowloris); how many the server closed in 30 s."""
    held = [await asyncio.open_connection(server.host, server.port) for _ in range(count)]
    for _reader, writer in held:
        writer.write(b"POST /v1/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    began = time.monotonic()
    closed = await asyncio.gather(*(_closed_within(reader, 30) for reader, _writer in held))
    for _reader, writer in held:
        writer.close()
    return f"{sum(closed)} of {count} closed by the server within {time.monotonic() - began:.0f} s"


async def _closed_within(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    with contextlib.suppress(asyncio.TimeoutError, OSError):
        await asyncio.wait_for(reader.read(), timeout_s)
        return True
    return False


async def gzip_body(server: Server) -> str:
    """A 441 MB spool in a 429 KB gzip body."""
    body = gzip.compress(bytes(441 * MiB), compresslevel=9)
    headers = {"Content-Encoding": "gzip", "Content-Type": "audio/wav"}
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.post(server.url + "/v1/transcriptions", data=body, headers=headers) as response:
            code = (await response.json())["error"]["code"]
            return f"{len(body) // 1024} KB body: {response.status} {code}"


async def form_fields(server: Server, total_mb: int = 1024) -> str:
    """A multipart body of `total_mb` of 60 KB non-file fields, sent as fast as it is read."""
    boundary = "abuse"

    async def fields() -> AsyncIterator[bytes]:
        value = b"x" * 60_000
        for index in range(total_mb * MiB // len(value)):
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="f{index}"\r\n\r\n'.encode()
                + value
                + b"\r\n"
            )

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with contextlib.suppress(aiohttp.ClientError):
        async with aiohttp.ClientSession() as http:
            async with http.post(
                server.url + "/v1/transcriptions", data=fields(), headers=headers
            ) as response:
                body = await response.json()
                return f"{total_mb} MB of fields: {response.status} {body['error']['code']}"
    return f"{total_mb} MB of fields: the server closed the connection"


async def silence_flood(server: Server, clients: int = 4, seconds: float = 30.0) -> str:
    """`clients` WebSockets sending 1 MiB frames of silence as fast as they can for `seconds`,
    while /healthz is asked every 100 ms."""
    frame = bytes(MiB)
    latencies: list[float] = []

    async def flood() -> tuple[float, float]:
        began = time.monotonic()
        # an attacker sends no keepalive pings (they would wait behind its own audio)
        async with connect(
            server.url.replace("http", "ws") + "/v1/stream", max_size=None, ping_interval=None
        ) as ws:
            await ws.send('{"type":"start"}')
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await ws.send(frame)
            await ws.send('{"type":"stop","wait_for_transcript":false}')
            closed = [json.loads(message) async for message in ws][-1]
            return float(closed["audio_s"]), time.monotonic() - began

    floods = [asyncio.create_task(flood()) for _ in range(clients)]
    async with aiohttp.ClientSession() as http:
        while not all(task.done() for task in floods):
            began = time.monotonic()
            async with http.get(server.url + "/healthz") as response:
                await response.read()
            latencies.append(time.monotonic() - began)
            await asyncio.wait(floods, timeout=0.1)
    taken = [task.result() for task in floods]
    audio_s = sum(audio for audio, _elapsed in taken)
    speed = max(audio / elapsed for audio, elapsed in taken)
    return (
        f"{clients} clients sending for {seconds:.0f} s: {audio_s:.0f} s of audio taken in all, at most "
        f"{speed:.1f}x real time per client over its whole stream; /healthz max {max(latencies) * 1000:.0f} ms"
    )


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True, timeout=600)


async def declared_bomb(server: Server, folder: Path) -> str:
    """A WAV whose header declares 3 hours but holds 1 s."""
    path = folder / "declared.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=16000", "-t", "1", "-ac", "1", str(path))
    data = bytearray(path.read_bytes())
    declared = 3 * 3600 * 16000 * 2
    data[4:8] = (declared + 36).to_bytes(4, "little")
    data[40:44] = declared.to_bytes(4, "little")
    return await _upload(server, bytes(data), "declared.wav")


async def silence_bomb(server: Server, folder: Path, hours: float) -> str:
    """FLAC of `hours` of digital silence: tiny, and `hours` long once decoded."""
    path = folder / "silence.flac"
    _ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(hours * 3600), "-c:a", "flac", str(path)
    )
    return await _upload(server, path.read_bytes(), "silence.flac")


async def _upload(server: Server, body: bytes, name: str) -> str:
    form = aiohttp.FormData()
    form.add_field("file", body, filename=name)
    timeout = aiohttp.ClientTimeout(total=3 * 3600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(server.url + "/v1/transcriptions", params={"wait": "1"}, data=form) as response:
            answer = await response.json()
    outcome = (
        answer["error"]["code"] if "error" in answer else f"{answer.get('duration_s', '?')} s transcribed"
    )
    return f"{len(body) // 1024} KB {name}: {response.status} {outcome}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--second-pass", action="store_true", help="also the second pass of a 3.8 h bomb")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        extra = [] if args.second_pass else ["--no-second-pass"]
        server = Server(folder / "data", extra)
        try:
            scenarios: list[tuple[str, Callable[[], Awaitable[str]]]] = [
                ("idle connections", lambda: idle_flood(server)),
                ("half-open requests", lambda: half_open(server)),
                ("gzip body", lambda: gzip_body(server)),
                ("multipart fields", lambda: form_fields(server)),
                ("silence flood", lambda: silence_flood(server)),
                ("declared 3 h, holds 1 s", lambda: declared_bomb(server, folder)),
                ("3.8 h of silence", lambda: silence_bomb(server, folder, 3.8)),
            ]
            print(
                f"server {server.url}, pid {server.process.pid}, RSS {server.rss_mb():.0f} MB at start",
                flush=True,
            )
            for name, scenario in scenarios:
                outcome, before, rise = await server.measure(scenario)
                print(f"{name:<24} peak RSS +{rise:6.1f} MB (from {before:.0f} MB)  {outcome}", flush=True)
            status = await health(server)
            print(
                f"after: {status['sessions']} sessions, {status['connections']} connections open", flush=True
            )
        finally:
            server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
