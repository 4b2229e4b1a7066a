"""Rows as both SQL stores (sqlite.py, postgres.py) read and write them: the columns of a
transcript and of a key, and the Structs they become."""

from __future__ import annotations

from typing import Any, Final, LiteralString

import msgspec

from ..transcript import TranscriptListing, VersionSummary
from .base import ApiKey, TranscriptRecord

RECORD_FIELDS: Final = TranscriptRecord.__struct_fields__
"""The transcripts table's columns, in the order of TranscriptRecord's fields."""
KEY_COLUMNS: Final[LiteralString] = (
    "name, admin, created_at, max_streams, max_replays, audio_retention_h, max_audio_mb"
)
summary_decoder = msgspec.json.Decoder(VersionSummary)


def record_of(row: tuple[Any, ...]) -> TranscriptRecord:
    """A transcripts row of RECORD_FIELDS."""
    return TranscriptRecord(**dict(zip(RECORD_FIELDS, row, strict=True)))


def listing_of(row: tuple[Any, ...]) -> TranscriptListing:
    """A row of (id, created_at, state, language, audio kept, the latest version's summary JSON)."""
    transcript_id, created_at, state, language, audio_kept, summary = row
    latest = summary_decoder.decode(summary) if summary is not None else None
    return TranscriptListing(
        id=transcript_id,
        created_at=created_at,
        state=state,
        language=language,
        audio_kept=bool(audio_kept),
        latest_version=latest.version if latest else None,
        duration_s=latest.duration_s if latest else None,
    )


def key_values(key: ApiKey) -> tuple[Any, ...]:
    """The values of KEY_COLUMNS for `key`."""
    return (
        key.name,
        key.admin,
        key.created_at,
        key.max_streams,
        key.max_replays,
        key.audio_retention_h,
        key.max_audio_mb,
    )


def key_of(row: tuple[Any, ...]) -> ApiKey:
    """An api_keys row of KEY_COLUMNS."""
    fields = dict(zip(KEY_COLUMNS.split(", "), row, strict=True))
    fields["admin"] = bool(fields["admin"])  # SQLite keeps it as 0 or 1
    return ApiKey(**fields)
