"""The decoder serves live sessions before files replayed at max speed (pure ordering logic)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamscribe.asr.engine import AsrWord, DecodeOptions, LiveWindow
from streamscribe.live.scheduler import DecodeScheduler
from streamscribe.stream.session import DecodeRequest


class Recorder:
    """Stands in for an engine: records whose audio it was given, returns no words."""

    name = "fake"
    multilingual = False

    def __init__(self) -> None:
        self.order: list[float] = []
        self.batches: list[int] = []
        self.beams: list[int] = []

    def decode_windows(self, windows: Sequence[LiveWindow]) -> list[list[AsrWord]]:
        self.order.extend(float(window.audio[0]) for window in windows)
        self.beams.extend(window.options.beam_size for window in windows)
        self.batches.append(len(windows))
        return [[] for _ in windows]


async def until(condition: Callable[[], bool]) -> None:
    """Poll the condition while the scheduler's worker runs: at most 5 s."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the scheduler did not get there within 5 s")


@dataclass(eq=False)
class Client:
    tag: float
    background: bool
    requests: int = 1
    delivered: list[int] = field(default_factory=list)

    def take_decode_request(self) -> DecodeRequest | None:
        if not self.requests:
            return None
        self.requests -= 1
        audio = np.full(160, self.tag, dtype=np.float32)
        return DecodeRequest(audio, 0, 160, DecodeOptions(beam_size=5), False, (), False)

    def deliver_result(self, request: DecodeRequest, words: list[AsrWord]) -> None:
        self.delivered.append(1)

    def deliver_error(self, reason: str) -> None:
        raise AssertionError(reason)


async def test_live_clients_are_decoded_before_background_ones_that_waited_longer() -> None:
    engine = Recorder()
    scheduler = DecodeScheduler(engine)  # type: ignore[arg-type]
    upload = Client(tag=1.0, background=True, requests=2)
    live_a = Client(tag=2.0, background=False)
    live_b = Client(tag=3.0, background=False)
    for client in (upload, live_a, live_b):
        scheduler.poke(client)
    scheduler.start()
    await until(lambda: len(engine.order) == 4)
    await scheduler.close()
    assert engine.order == [2.0, 3.0, 1.0, 1.0]


async def test_sessions_ready_together_are_decoded_in_one_batch_of_at_most_batch_size() -> None:
    engine = Recorder()
    scheduler = DecodeScheduler(engine, batch_size=3)  # type: ignore[arg-type]
    clients = [Client(tag=float(n), background=False) for n in range(5)]
    for client in clients:
        scheduler.poke(client)
    scheduler.start()
    await until(lambda: len(engine.order) == 5)
    await scheduler.close()
    assert engine.batches == [3, 2]
    assert engine.order == [0.0, 1.0, 2.0, 3.0, 4.0], "longest waiting first"
    assert scheduler.stats.batches == 2 and scheduler.stats.decodes == 5


async def test_a_gathering_batch_takes_sessions_that_become_ready_meanwhile() -> None:
    engine = Recorder()
    scheduler = DecodeScheduler(engine, batch_size=4, gather_s=0.2)  # type: ignore[arg-type]
    early, late = Client(tag=1.0, background=False), Client(tag=2.0, background=False, requests=0)
    scheduler.poke(late)  # open, but with nothing to decode yet
    scheduler.poke(early)
    scheduler.start()
    await until(lambda: early.requests == 0)  # the worker took it and gathers
    assert not engine.batches
    late.requests = 1
    scheduler.poke(late)  # ready while the batch gathers
    await until(lambda: len(engine.order) == 2)
    await scheduler.close()
    assert engine.batches == [2]


async def test_live_windows_are_decoded_greedily_while_sessions_wait_long_for_their_decodes() -> None:
    engine = Recorder()
    scheduler = DecodeScheduler(engine, greedy_after_wait_s=0.5)  # type: ignore[arg-type]
    scheduler.start()
    first, second = Client(tag=1.0, background=False), Client(tag=2.0, background=False)
    scheduler.poke(first)
    await until(lambda: len(engine.order) == 1)
    for _ in range(20):
        scheduler.load.record(time.monotonic(), 0.8)  # live sessions waited 0.8 s
    scheduler.poke(second)
    await until(lambda: len(engine.order) == 2)
    scheduler.forget(first)
    scheduler.forget(second)  # no live stream left: a replay may decode, with its own beam
    scheduler.poke(Client(tag=3.0, background=True))
    await until(lambda: len(engine.order) == 3)
    await scheduler.close()
    assert engine.beams == [5, 1, 5], "beam while there is room, greedy under load; replays keep theirs"
    assert scheduler.stats.greedy_decodes == 1


async def test_replays_wait_while_live_streams_are_loaded_and_go_on_once_they_are_not() -> None:
    engine = Recorder()
    scheduler = DecodeScheduler(engine)  # type: ignore[arg-type]  # beam always: replays still wait
    live, replay = Client(tag=1.0, background=False, requests=0), Client(tag=2.0, background=True)
    scheduler.poke(live)
    assert scheduler.replays_may_decode(), "no live decode measured yet"
    for _ in range(20):
        scheduler.load.record(time.monotonic(), 0.8)
    assert not scheduler.replays_may_decode()
    scheduler.poke(replay)
    scheduler.start()
    await until(lambda: scheduler.replays_may_decode() is False and not engine.order)
    scheduler.forget(live)  # the live stream ended: the loaded measure no longer holds replays back
    assert scheduler.replays_may_decode()
    await until(lambda: engine.order == [2.0])
    await scheduler.close()
