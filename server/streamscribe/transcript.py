"""The stored transcript: Transcript -> Segment (one speaker) -> Line (one caption line) -> Word.

A version is immutable once stored; `info` records its parent, the models and settings that made
it, and how long each stage took. Exports: json, txt, srt, vtt.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

WordSource = Literal["live", "second_pass", "both"]
FORMATS = ("json", "txt", "srt", "vtt")


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
    max_chars: int = 42
    max_lines: int = 2


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
    )


_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(Transcript)


def to_json(transcript: Transcript) -> bytes:
    return _json_encoder.encode(transcript)


def from_json(data: bytes) -> Transcript:
    return _json_decoder.decode(data)


def to_txt(transcript: Transcript) -> str:
    """One paragraph per segment, prefixed by its speaker when there is one."""
    paragraphs = []
    for segment in transcript.segments:
        prefix = f"{segment.speaker}: " if segment.speaker else ""
        paragraphs.append(prefix + segment.text)
    return "\n\n".join(paragraphs) + "\n"


def caption_cues(transcript: Transcript) -> list[tuple[float, float, str | None, list[str]]]:
    """(start, end, speaker, lines) per caption cue; a cue never spans two segments."""
    cues: list[tuple[float, float, str | None, list[str]]] = []
    for segment in transcript.segments:
        for line in segment.lines:
            if line.new_cue or not cues:
                cues.append((line.start, line.end, segment.speaker, [line.text]))
            else:
                start, _end, speaker, texts = cues[-1]
                cues[-1] = (start, line.end, speaker, [*texts, line.text])
    return cues


def to_srt(transcript: Transcript) -> str:
    blocks = []
    for index, (start, end, _speaker, lines) in enumerate(caption_cues(transcript), 1):
        blocks.append(f"{index}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n" + "\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def to_vtt(transcript: Transcript) -> str:
    """WebVTT; the speaker goes in a voice tag, which players do not count as caption text."""
    blocks = ["WEBVTT"]
    for start, end, speaker, lines in caption_cues(transcript):
        text = "\n".join(lines)
        if speaker:
            text = f"<v {speaker}>{text}"
        blocks.append(f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}")
    return "\n\n".join(blocks) + "\n"


def render(transcript: Transcript, format: str) -> tuple[bytes, str]:
    """(body, content type) of one export format; raises ValueError for an unknown format."""
    match format:
        case "json":
            return to_json(transcript), "application/json"
        case "txt":
            return to_txt(transcript).encode(), "text/plain; charset=utf-8"
        case "srt":
            return to_srt(transcript).encode(), "application/x-subrip; charset=utf-8"
        case "vtt":
            return to_vtt(transcript).encode(), "text/vtt; charset=utf-8"
    raise ValueError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


STREAM_CUT = "the stream was cut"


def stream_cut_warning(received_s: float, why: str) -> str:
    """The warning of every version of a stream that ended without the client's `stop`."""
    return f"{STREAM_CUT} after {received_s:.1f} s of audio: {why}; the transcript holds what was received"


def stream_cut_warnings(info: VersionInfo) -> list[str]:
    """The warnings of a version that every later version of the same recording keeps."""
    return [warning for warning in info.warnings if warning.startswith(STREAM_CUT)]
