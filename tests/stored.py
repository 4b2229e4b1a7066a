"""Transcripts as the store tests make them: a row created live, and a version of sample words."""

from __future__ import annotations

from streamscribe.config import FinalizeSettings
from streamscribe.finalize.pipeline import first_version
from streamscribe.store.base import TranscriptStore
from streamscribe.transcript import Transcript
from streamscribe.wire import Word


def create(
    store: TranscriptStore,
    transcript_id: str,
    *,
    audio_path: str | None = None,
    owner: str | None = None,
    audio_retention_h: float | None = None,
    node: str | None = None,
) -> None:
    """A live transcript (its audio at /audio/{id}.wav unless `audio_path` is given)."""
    store.create(
        transcript_id,
        language="en",
        live_model="tiny.en",
        audio_path=audio_path or f"/audio/{transcript_id}.wav",
        owner=owner,
        audio_retention_h=audio_retention_h,
        node=node,
    )


def sample(transcript_id: str = "t1", text: str = "hello there how are you today my friend") -> Transcript:
    """A first version of `text`, a word every 0.5 s, 5 s long."""
    finals = [
        Word(text=word, start=index * 0.5, end=index * 0.5 + 0.4, confidence=0.9)
        for index, word in enumerate(text.split())
    ]
    return first_version(
        transcript_id,
        finals,
        language="en",
        duration_s=5.0,
        live_model="tiny.en",
        settings=FinalizeSettings(),
    )
