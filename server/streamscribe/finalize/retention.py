"""Recorded audio past its retention period is deleted, and the store forgets where it was."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ..store.base import TranscriptStore

SWEEP_INTERVAL_S = 600.0


async def sweep_expired_audio(store: TranscriptStore, default_retention_h: float) -> None:
    """Delete the audio of every transcript whose second pass ended longer ago than its retention
    (its key's or request's, else `default_retention_h`; 0: at once, inf: never)."""
    for record in await asyncio.to_thread(store.audio_expired, time.time(), default_retention_h):
        if record.audio_path:
            await asyncio.to_thread(Path(record.audio_path).unlink, missing_ok=True)
        await asyncio.to_thread(store.forget_audio, record.id)


async def sweep_forever(store: TranscriptStore, default_retention_h: float) -> None:
    """Sweep now and every SWEEP_INTERVAL_S until cancelled."""
    while True:
        await sweep_expired_audio(store, default_retention_h)
        await asyncio.sleep(SWEEP_INTERVAL_S)
