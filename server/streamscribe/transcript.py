"""The stored transcript: Transcript -> Segment (one speaker) -> Line (one caption line) -> Word.

A version is immutable once stored; `info` records its parent, the models and settings that made
it, and how long each stage took. Its renderings (txt, srt, vtt) are in exports.py.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

WordSource = Literal["live", "second_pass", "both"]
SpeakerMarks = Literal["dash", "name", "none"]


class Word(msgspec.Struct, frozen=True, kw_only=True):
    """`id` stays the same across versions while the word's text agrees, so clients can patch."""

    id: str
    text: str
    start: float
    end: float
    confidence: float
    speaker: str | None = None
    source: WordSource = "live"
    """Which pass this word's text comes from; "both" when the passes agreed."""


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One caption line: at most `CaptionLayout.max_chars` characters unless one word is longer."""

    start: float
    end: float
    text: str
    words: list[Word]
    new_cue: bool = False
    """A caption cue starts here: first line of a segment, after a pause, or after `max_lines`."""


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    """A paragraph: one speaker, no long pause inside."""

    speaker: str | None
    start: float
    end: float
    lines: list[Line]

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines)


class CaptionLayout(msgspec.Struct, frozen=True, kw_only=True):
    """How captions are laid out (lines, at second-pass time) and timed (cues, at export time)."""

    max_chars: int = 42
    max_lines: int = 2
    min_duration_s: float = 1.0
    """A cue stays up at least this long, where the next one leaves room."""
    max_chars_per_s: float = 17.0
    """Reading speed: a cue stays up until its text can be read at this speed, where the next one
    leaves room; one that still cannot is merged with a neighbour when the two fit in one cue."""
    speaker_marks: SpeakerMarks = "dash"
    """How SRT shows a new speaker: a leading "- ", the name ("Speaker 2: "), or nothing.
    VTT always names the speaker in a voice tag."""

    def speaker_mark(self, speaker: str | None, previous: str | None) -> str:
        """What SRT puts before the first line of a paragraph of `speaker` that follows one of
        `previous`: a change of speaker is marked; the first speaker only by name."""
        if speaker is None or speaker == previous:
            return ""
        if self.speaker_marks == "name":
            return f"{speaker}: "
        if self.speaker_marks == "dash" and previous is not None:
            return "- "
        return ""


class VersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    parent: int | None
    created_at: float
    """Unix time."""
    models: dict[str, str]
    settings: dict[str, Any]
    timings_s: dict[str, float]
    warnings: list[str] = msgspec.field(default_factory=list)
    """What went wrong without stopping the version (a diarizer or rewrite that failed, a stream
    that was cut: see `stream_cut_warning`)."""


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    language: str | None
    duration_s: float
    layout: CaptionLayout
    segments: list[Segment]
    info: VersionInfo

    @property
    def words(self) -> list[Word]:
        return [word for segment in self.segments for line in segment.lines for word in line.words]

    @property
    def speakers(self) -> list[str]:
        return sorted({segment.speaker for segment in self.segments if segment.speaker is not None})


class VersionSummary(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    parent: int | None
    created_at: float
    models: dict[str, str]
    words: int
    speakers: int
    warnings: list[str]
    duration_s: float | None = None


class TranscriptListing(msgspec.Struct, frozen=True, kw_only=True):
    """One transcript in GET /v1/transcripts: its latest version's number and length, if any."""

    id: str
    created_at: float
    state: str
    language: str | None
    audio_kept: bool
    latest_version: int | None
    duration_s: float | None


class TranscriptList(msgspec.Struct, frozen=True, kw_only=True):
    """GET /v1/transcripts: newest first; pass `next_before` as ?before= for the next page (None: no more)."""

    transcripts: list[TranscriptListing]
    next_before: float | None


class VersionList(msgspec.Struct, frozen=True, kw_only=True):
    """GET /v1/transcripts/{id}/versions: the second-pass state and every version."""

    transcript_id: str
    state: str
    error: str | None
    audio_kept: bool
    versions: list[VersionSummary]


def summarise(transcript: Transcript) -> VersionSummary:
    return VersionSummary(
        version=transcript.version,
        parent=transcript.info.parent,
        created_at=transcript.info.created_at,
        models=transcript.info.models,
        words=len(transcript.words),
        speakers=len(transcript.speakers),
        warnings=transcript.info.warnings,
        duration_s=transcript.duration_s,
    )


_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(Transcript)


def to_json(transcript: Transcript) -> bytes:
    return _json_encoder.encode(transcript)


def from_json(data: bytes) -> Transcript:
    return _json_decoder.decode(data)


STREAM_CUT = "the stream was cut"


def stream_cut_warning(received_s: float, why: str) -> str:
    """The warning of every version of a stream that ended without the client's `stop`."""
    return f"{STREAM_CUT} after {received_s:.1f} s of audio: {why}; the transcript holds what was received"


def stream_cut_warnings(info: VersionInfo) -> list[str]:
    """The warnings of a version that every later version of the same recording keeps."""
    return [warning for warning in info.warnings if warning.startswith(STREAM_CUT)]
