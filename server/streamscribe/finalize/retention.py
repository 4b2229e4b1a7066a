"""Recorded audio past its retention period is deleted, and the store forgets where it was."""

from __future__ import annotations

import asyncio
import logging
import time

from ..store.base import AudioStore, TranscriptStore

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 600.0


async def sweep_expired_audio(store: TranscriptStore, audio: AudioStore, default_retention_h: float) -> None:
    """Delete the audio of every transcript whose second pass ended longer ago than its retention
    (its key's or request's, else `default_retention_h`; 0: at once, inf: never)."""
    for record in await asyncio.to_thread(store.audio_expired, time.time(), default_retention_h):
        if record.audio_path:
            await asyncio.to_thread(audio.delete, record.audio_path)
        await asyncio.to_thread(store.forget_audio, record.id)


async def sweep_forever(store: TranscriptStore, audio: AudioStore, default_retention_h: float) -> None:
    """Sweep now and every SWEEP_INTERVAL_S until cancelled (a sweep that fails is logged, and
    the next one tries again)."""
    while True:
        try:
            await sweep_expired_audio(store, audio, default_retention_h)
        except Exception:
            log.exception("sweeping expired audio failed; trying again in %g s", SWEEP_INTERVAL_S)
        await asyncio.sleep(SWEEP_INTERVAL_S)
