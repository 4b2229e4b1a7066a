"""A decoded file fed into a live session, at real-time pace or as fast as the session decodes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from ..audio import SAMPLE_RATE, Samples
from ..errors import StreamscribeError
from .driver import SessionDriver

log = logging.getLogger(__name__)
_MICROPHONE_FRAME_SAMPLES = SAMPLE_RATE // 10


async def feed_file(driver: SessionDriver, chunks: Iterator[Samples], realtime: bool) -> None:
    """Feed every chunk (each decoded in a worker thread, so the loop never waits on ffmpeg),
    then stop and let the session wait for its transcript. The session's backpressure paces a
    `max` replay; a `realtime` one is also held to the wall clock.

    A file that turns out damaged part-way ends with an `error` event; the words before it are
    kept and still go through the second pass.
    """
    began = time.monotonic()
    fed_samples = 0
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            step = _MICROPHONE_FRAME_SAMPLES if realtime else chunk.size
            for offset in range(0, chunk.size, step):
                piece = chunk[offset : offset + step]
                fed_samples += piece.size
                if realtime:  # each frame when a microphone would have delivered it
                    await asyncio.sleep(max(0.0, began + fed_samples / SAMPLE_RATE - time.monotonic()))
                await driver.feed_audio(piece)
            if driver.session.ended:
                return
    except StreamscribeError as exc:
        driver.fail(exc, wait_for_transcript=True)
        return
    except Exception as exc:  # a bug or an ffmpeg surprise ends this replay, not the server
        log.exception("replaying a file failed")
        driver.fail(
            StreamscribeError(f"decoding the file failed: {type(exc).__name__}"), wait_for_transcript=True
        )
        return
    driver.stop(wait_for_transcript=True)
