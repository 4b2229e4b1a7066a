"""The session driver (live/driver.py) on a running loop with a real scheduler: backpressure,
recording what the session takes, the hand-over once the last final is out, and the job
events that close the session. The engine and the VAD are scripted (pure logic)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np

from streamscribe.asr.engine import AsrWord, LiveWindow
from streamscribe.audio import SAMPLE_RATE, Samples
from streamscribe.config import StreamSettings
from streamscribe.live.driver import SessionDriver
from streamscribe.live.scheduler import DecodeScheduler
from streamscribe.store.handover import JobDone, JobProgress
from streamscribe.stream.session import LiveSession
from streamscribe.wire import Closed, Final, Finalizing, TranscriptReady

from ..unit.test_live_session import ScriptedVad


class OneWordEngine:
    """Hears one word at the start of whatever it is given; blocks until released."""

    name = "scripted"
    multilingual = False

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def decode_windows(self, windows: Sequence[LiveWindow]) -> list[list[AsrWord]]:
        self.started.set()
        self.release.wait(30)
        return [[AsrWord("hello", 0.0, 0.4, 0.9)] for _ in windows]


class MemorySink:
    """Counts what is recorded; `writable` can hold a write up, as a slow disk would."""

    def __init__(self) -> None:
        self.samples = 0
        self.closed = False
        self.writer_threads: set[str] = set()
        self.writing = threading.Event()
        self.writable = threading.Event()
        self.writable.set()

    def write(self, samples: Samples) -> None:
        self.writer_threads.add(threading.current_thread().name)
        self.writing.set()
        self.writable.wait(30)
        if not self.closed:
            self.samples += samples.size

    def close(self) -> None:
        self.closed = True


def driver_for(
    engine: OneWordEngine, handed_over: list[SessionDriver], sink: MemorySink, speech_from: int | None = 0
) -> tuple[SessionDriver, DecodeScheduler]:
    settings = StreamSettings(max_lookahead_s=2.0)
    vad = ScriptedVad(speech_from, None)
    session = LiveSession("s1", settings, vad, engine.name, SAMPLE_RATE, "en", transcript_id="s1")
    scheduler = DecodeScheduler(engine)  # type: ignore[arg-type]
    driver = SessionDriver(session, scheduler, recorder=sink, on_live_finished=handed_over.append)
    return driver, scheduler


async def test_the_driver_records_off_the_loop_hands_over_once_and_closes_on_the_stored_version() -> None:
    engine, sink, handed_over = OneWordEngine(), MemorySink(), []
    driver, scheduler = driver_for(engine, handed_over, sink)
    scheduler.start()
    try:
        await asyncio.wait_for(driver.feed_audio(np.zeros(3 * SAMPLE_RATE, dtype=np.float32)), 10)
        driver.stop()
        events = driver.events()
        seen = []
        while not handed_over:
            seen.append(await asyncio.wait_for(anext(events), 10))
        assert handed_over == [driver], "handed over once, when the last final is out"
        driver.receive_job_event(JobProgress(0.5))
        driver.receive_job_event(JobDone(2))
        seen += [event async for event in events]
    finally:
        await scheduler.close()
    assert sink.samples == 3 * SAMPLE_RATE, "every sample the session took is recorded"
    assert threading.main_thread().name not in sink.writer_threads, "recording happens off the event loop"
    kinds = [type(event) for event in seen]
    assert Final in kinds and kinds[-3:] == [Finalizing, TranscriptReady, Closed]
    assert len(handed_over) == 1


async def test_a_fast_feeder_waits_while_decoding_lags_behind() -> None:
    engine, sink = OneWordEngine(), MemorySink()
    engine.release.clear()  # the first decode hangs until released
    driver, scheduler = driver_for(engine, [], sink)
    scheduler.start()
    try:
        feeding = asyncio.create_task(driver.feed_audio(np.zeros(10 * SAMPLE_RATE, dtype=np.float32)))
        assert await asyncio.to_thread(engine.started.wait, 30), "the first decode began"
        done, _ = await asyncio.wait({feeding}, timeout=0.5)
        assert not done, "feed_audio waits while the session holds max_lookahead_s of undecoded speech"
        assert not driver.session.can_accept_audio() and driver.session.received_samples < 10 * SAMPLE_RATE
        engine.release.set()
        await asyncio.wait_for(feeding, 10)
        assert driver.session.received_samples == 10 * SAMPLE_RATE
        driver.stop(wait_for_transcript=False)
        await asyncio.wait_for(driver.wait_closed(), 10)
    finally:
        engine.release.set()
        await scheduler.close()


async def test_a_stop_during_a_recording_write_hands_over_only_once_the_write_is_done() -> None:
    engine, sink, handed_over = OneWordEngine(), MemorySink(), []
    driver, scheduler = driver_for(engine, handed_over, sink, speech_from=None)  # silence: nothing to decode
    sink.writable.clear()
    scheduler.start()
    try:
        feeding = asyncio.create_task(driver.feed_audio(np.zeros(SAMPLE_RATE // 2, dtype=np.float32)))
        assert await asyncio.to_thread(sink.writing.wait, 30)
        driver.stop(wait_for_transcript=False)  # e.g. the server drains while the disk is slow
        assert driver.session.live_finished and handed_over == [], "no hand-over before the audio is written"
        sink.writable.set()
        await asyncio.wait_for(feeding, 30)
        assert handed_over == [driver] and sink.samples == SAMPLE_RATE // 2
    finally:
        sink.writable.set()
        await scheduler.close()
