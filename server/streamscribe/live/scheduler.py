"""One shared model per process, decoding for all sessions in batches, in a bounded pool of
worker threads.

A worker takes up to `batch_size` ready sessions at once and decodes their windows in one model
call (asr/windows.py). Live sessions come before background ones (files replayed at max speed): a
batch is all live, or all background when no live session waits and the live streams wait less
than `_REPLAYS_UNTIL_WAIT_S` for their decodes, so replays take only spare capacity. A session's
request is built only when a worker takes it, so it covers the newest audio; a session never has
more than one decode in flight. When other live sessions may soon be ready, a worker gathers for
`gather_s` before it decodes; a lone session never waits for company. Live windows keep the beam
their sessions ask for while the decoder has room, and are decoded greedily while live sessions
wait longer than `greedy_after_wait_s` for their decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol

from ..asr.engine import AsrWord, Engine, LiveWindow
from ..audio import SAMPLE_RATE
from ..metrics import Metrics
from ..stream.session import DecodeRequest
from ..wire import DecoderTotals
from .load import DecodeLoad

log = logging.getLogger(__name__)

_LOAD_WINDOW_S = 20.0
"""Turnarounds older than this no longer count for admission."""
_REPLAY_RECHECK_S = 0.25
"""How often replays held back by live load look again."""
_REPLAYS_UNTIL_WAIT_S = 0.5
"""Replays decode only while the live streams' decode wait p95 is under this: a replay's long
windows stretch the decodes of the live streams waiting behind them."""


class DecodeClient(Protocol):
    background: bool

    def take_decode_request(self) -> DecodeRequest | None: ...

    def deliver_result(self, request: DecodeRequest, words: list[AsrWord]) -> None: ...

    def deliver_error(self, reason: str) -> None: ...


class DecodeScheduler:
    """Call `start()` inside the running loop, `poke(client)` whenever a client may have work,
    `forget(client)` when it ends, and `close()` at shutdown; `admits_live_stream()` before
    taking a new live stream.
    """

    def __init__(
        self,
        engine: Engine,
        workers: int = 1,
        batch_size: int = 8,
        gather_s: float = 0.0,
        max_decode_wait_s: float = float("inf"),
        greedy_after_wait_s: float = float("inf"),
        metrics: Metrics | None = None,
    ) -> None:
        """`metrics`: where each model call and each live window's wait are counted."""
        self.engine = engine
        self.stats = DecoderTotals()
        self._metrics = metrics or Metrics()
        self.load = DecodeLoad(_LOAD_WINDOW_S)
        self._workers = workers
        self._batch_size = batch_size
        self._gather_s = gather_s
        self._max_decode_wait_s = max_decode_wait_s
        self._greedy_after_wait_s = greedy_after_wait_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self._clients: dict[DecodeClient, None] = {}
        self._ready: dict[DecodeClient, float] = {}
        """Ready clients, oldest first, with the time each became ready."""
        self._decoding: set[DecodeClient] = set()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"decode-{n}") for n in range(self._workers)]

    def poke(self, client: DecodeClient) -> None:
        self._clients[client] = None
        self._ready.setdefault(client, time.monotonic())
        self._wakeup.set()

    def forget(self, client: DecodeClient) -> None:
        self._clients.pop(client, None)
        self._ready.pop(client, None)

    def admits_live_stream(self) -> bool:
        """Whether one more live stream keeps the live streams' decode waits within the limit."""
        live = sum(1 for client in self._clients if not client.background)
        return self.load.admits(time.monotonic(), live, self._max_decode_wait_s)

    def replays_may_decode(self) -> bool:
        """False while live streams are open and wait past `_REPLAYS_UNTIL_WAIT_S` for their
        decodes: replays at max speed take only spare capacity."""
        return not (
            any(not client.background for client in self._clients) and self._waits_past(_REPLAYS_UNTIL_WAIT_S)
        )

    def _waits_past(self, limit_s: float) -> bool:
        """Whether the live sessions' recent p95 wait for their decodes is past `limit_s`."""
        p95 = self.load.recent_p95_s(time.monotonic())
        return p95 is not None and p95 > limit_s

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
            batch = await self._gather()
            if not batch:
                await self._hold_back_replays()
                continue
            try:
                await self._decode(batch, loop)
            except Exception:  # a bug must not stop decoding for every session
                log.exception("decoding a batch failed; its sessions are ended")
                for client, _request, _ready in batch:
                    client.deliver_error("internal error while decoding")
            finally:
                self._decoding.difference_update(client for client, _request, _ready in batch)

    async def _hold_back_replays(self) -> None:
        """Nothing was taken: if only replays are ready (held back while live streams wait past
        `_REPLAYS_UNTIL_WAIT_S`), wait for a poke or `_REPLAY_RECHECK_S`, whichever comes first."""
        if not self._ready or any(not client.background for client in self._ready):
            return
        self._wakeup.clear()
        # asyncio.timeout, unlike wait_for in 3.11, never swallows a cancel
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REPLAY_RECHECK_S):
                await self._wakeup.wait()

    async def _gather(self) -> list[tuple[DecodeClient, DecodeRequest, float]]:
        """The next batch: ready live clients (longest waiting first), else background ones.
        Waits `gather_s` for more live clients only when some are open but neither ready nor
        being decoded."""
        batch = self._take()
        idle = sum(1 for client in self._clients if not client.background and client not in self._decoding)
        if (
            batch
            and self._gather_s > 0
            and not batch[0][0].background
            and idle
            and len(batch) < self._batch_size
        ):
            await asyncio.sleep(self._gather_s)
            batch += self._take(self._batch_size - len(batch), live_only=True)
        return batch

    def _take(
        self, limit: int | None = None, live_only: bool = False
    ) -> list[tuple[DecodeClient, DecodeRequest, float]]:
        waiting = [client for client in self._ready if not client.background]
        if not waiting and not live_only and self.replays_may_decode():
            waiting = list(self._ready)
        batch = []
        for client in waiting[: self._batch_size if limit is None else limit]:
            ready_since = self._ready.pop(client)
            request = client.take_decode_request()
            if request is not None:
                self._decoding.add(client)
                batch.append((client, request, ready_since))
        return batch

    async def _decode(
        self, batch: list[tuple[DecodeClient, DecodeRequest, float]], loop: asyncio.AbstractEventLoop
    ) -> None:
        greedy = not batch[0][0].background and self._waits_past(self._greedy_after_wait_s)
        windows = [
            LiveWindow(request.audio, replace(request.options, beam_size=1) if greedy else request.options)
            for _client, request, _ready in batch
        ]
        began = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.engine.decode_windows, windows)
        except Exception as exc:  # a model failure ends those sessions, not the server
            for client, _request, _ready in batch:
                client.deliver_error(f"decoding failed: {type(exc).__name__}: {exc}")
            return
        self.stats.batches += 1
        self.stats.decodes += len(batch)
        self.stats.greedy_decodes += len(batch) if greedy else 0
        busy_s = time.perf_counter() - began
        self.stats.busy_s += busy_s
        self._metrics.decode_seconds.observe(busy_s)
        self._metrics.decode_batch_windows.observe(len(batch))
        now = time.monotonic()
        for (client, request, ready_since), words in zip(batch, results, strict=True):
            self.stats.decoded_audio_s += request.audio.size / SAMPLE_RATE
            if not client.background:
                self.load.record(now, now - ready_since)
                self._metrics.decode_wait.observe(now - ready_since)
            client.deliver_result(request, words)
            if client in self._clients:
                self.poke(client)
