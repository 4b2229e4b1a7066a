"""One shared model per process, decoding for all sessions in a bounded pool of worker threads.

Sessions are served round-robin, live sessions before background ones (files replayed at max
speed), so an upload never delays live captions; a background session takes the decoder whenever
no live session is waiting. A session's request is built only when a worker is free, so
it always covers the newest audio; a session never has more than one decode in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ..asr.engine import AsrWord, Engine
from ..audio import SAMPLE_RATE
from ..stream.session import DecodeRequest
from ..wire import DecoderTotals

log = logging.getLogger(__name__)


class DecodeClient(Protocol):
    background: bool

    def take_decode_request(self) -> DecodeRequest | None: ...

    def deliver_result(self, request: DecodeRequest, words: list[AsrWord]) -> None: ...

    def deliver_error(self, reason: str) -> None: ...


class DecodeScheduler:
    """Call `start()` inside the running loop, `poke(client)` whenever a client may have work,
    `forget(client)` when it ends, and `close()` at shutdown.
    """

    def __init__(self, engine: Engine, workers: int = 1) -> None:
        self.engine = engine
        self.stats = DecoderTotals()
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self._ready: dict[DecodeClient, None] = {}
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"decode-{n}") for n in range(self._workers)]

    def poke(self, client: DecodeClient) -> None:
        self._ready[client] = None
        self._wakeup.set()

    def forget(self, client: DecodeClient) -> None:
        self._ready.pop(client, None)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._ready:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            client = self._next_client()
            try:
                await self._decode_for(client, loop)
            except Exception:  # a bug in one session must not stop decoding for all of them
                log.exception("decoding for a session failed; that session is ended")
                client.deliver_error("internal error while decoding")

    def _next_client(self) -> DecodeClient:
        """The longest-waiting live client, else the longest-waiting background one."""
        chosen = next((client for client in self._ready if not client.background), None)
        if chosen is None:
            chosen = next(iter(self._ready))
        del self._ready[chosen]
        return chosen

    async def _decode_for(self, client: DecodeClient, loop: asyncio.AbstractEventLoop) -> None:
        request = client.take_decode_request()
        if request is None:
            return
        began = time.perf_counter()
        try:
            words = await loop.run_in_executor(
                self._executor, self.engine.transcribe, request.audio, request.options
            )
        except Exception as exc:  # a model failure ends that session, not the server
            client.deliver_error(f"decoding failed: {type(exc).__name__}: {exc}")
            return
        self.stats.decodes += 1
        self.stats.busy_s += time.perf_counter() - began
        self.stats.decoded_audio_s += request.audio.size / SAMPLE_RATE
        client.deliver_result(request, words)
        self.poke(client)
