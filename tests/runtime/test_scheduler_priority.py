"""The decoder serves live sessions before files replayed at max speed (pure ordering logic)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from streamscribe.asr.engine import AsrWord, DecodeOptions
from streamscribe.live.scheduler import DecodeScheduler
from streamscribe.stream.session import DecodeRequest


class Recorder:
    """Stands in for an engine: records whose audio it was given, returns no words."""

    name = "fake"
    multilingual = False

    def __init__(self) -> None:
        self.order: list[float] = []

    def transcribe(
        self, audio: np.ndarray, options: DecodeOptions, on_progress: object = None
    ) -> list[AsrWord]:
        self.order.append(float(audio[0]))
        return []


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
        return DecodeRequest(audio, 0, 160, DecodeOptions(), False, (), False)

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
    for _ in range(500):
        if len(engine.order) == 4:
            break
        await asyncio.sleep(0.01)
    await scheduler.close()
    assert engine.order == [2.0, 3.0, 1.0, 1.0]
