"""Transcription in-process, without a server: a live pass over any audio through the same core
(as fast as it decodes), then the second pass. Used by `streamscribe transcribe` and the
benchmarks; the caller decides what to show through the callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from .asr.engine import Engine, Progress
from .audio import SAMPLE_RATE, Samples
from .config import ServerSettings
from .finalize.pipeline import SecondPass, first_version
from .live.driver import SessionDriver
from .live.scheduler import DecodeScheduler
from .transcript import Transcript
from .wire import ServerMessage, Word


async def live_pass(
    engine: Engine,
    settings: ServerSettings,
    chunks: Iterable[Samples],
    language: str | None,
    on_event: Callable[[ServerMessage], None],
    prompt: str | None = None,
) -> list[Word]:
    """Stream the chunks through a live session as fast as it decodes, calling `on_event` with
    each event in order; returns its finals."""
    scheduler = DecodeScheduler(engine)
    scheduler.start()
    driver = SessionDriver.open(scheduler, settings.stream, language=language, prompt=prompt)

    async def feed() -> None:
        try:
            for chunk in chunks:
                await driver.feed_audio(chunk)
        finally:
            driver.stop()

    feeder = asyncio.create_task(feed())
    try:
        async for event in driver.events():
            on_event(event)
        await feeder
    finally:
        await scheduler.close()
    return driver.session.finals


def second_pass(
    settings: ServerSettings,
    audio: Samples,
    first: Transcript,
    on_progress: Progress,
    passes: SecondPass | None = None,
) -> Transcript:
    """Version 2 from the recording and version 1, with the settings' second-pass defaults.
    Blocks for as long as the decode takes: call it from a worker thread. Pass `passes` to keep
    its loaded models for another run."""
    passes = passes or SecondPass.for_server(settings)
    return passes.run(audio, first, settings.finalize, on_progress)


def live_version(
    name: str,
    finals: list[Word],
    audio: Samples,
    language: str | None,
    live_model: str,
    settings: ServerSettings,
) -> Transcript:
    """Version 1 of an in-process transcript named `name`: the live finals as streamed."""
    return first_version(
        name,
        finals,
        language=language,
        duration_s=audio.size / SAMPLE_RATE,
        live_model=live_model,
        settings=settings.finalize,
    )
