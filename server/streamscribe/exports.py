"""A transcript version rendered as txt, srt or vtt (json is its own form: transcript.to_json).

Caption cues are the lines a version marks (`Line.new_cue`), timed here for reading as subtitle
guidelines ask: each cue stays up for at least `min_duration_s` and long enough to be read at
`max_chars_per_s`, extended into the gap before the next cue; a cue that the next one leaves no
room for is merged with a neighbour when the two fit in one cue; cues never overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .transcript import CaptionLayout, Transcript, to_json

FORMATS = ("json", "txt", "srt", "vtt")
CUE_GAP_S = 0.08
"""Two frames between cues that are extended to meet, so that a viewer sees the change."""
MAX_CUE_S = 7.0
"""A cue lasts at most this long: the layout ends one before it would, and timing neither extends
nor merges one past it (unless its words alone last longer)."""


@dataclass(frozen=True, slots=True)
class Cue:
    start: float
    end: float
    speaker: str | None
    lines: list[str]
    segment: int
    """The paragraph it belongs to: cues are merged only within one."""
    mark: str = ""
    """What SRT shows before its first line: a new speaker's mark (CaptionLayout.speaker_mark)."""

    @property
    def chars(self) -> int:
        """Characters to read, the speaker mark included (so SRT and VTT keep the same times)."""
        return len(self.mark) + len(" ".join(self.lines))

    def readable(self, layout: CaptionLayout) -> bool:
        duration = self.end - self.start
        return (
            duration >= layout.min_duration_s - 1e-6
            and self.chars <= layout.max_chars_per_s * duration + 1e-6
        )


def caption_cues(transcript: Transcript) -> list[Cue]:
    """Every cue, in order, timed for reading (see the module's docstring)."""
    layout = transcript.layout
    cues = _timed(_marked_cues(transcript), layout)
    while (merged := _merge_one(cues, layout)) is not None:
        cues = _timed(merged, layout)
    return cues


def to_txt(transcript: Transcript) -> str:
    """One paragraph per segment, prefixed by its speaker when there is one."""
    paragraphs = []
    for segment in transcript.segments:
        prefix = f"{segment.speaker}: " if segment.speaker else ""
        paragraphs.append(prefix + segment.text)
    return "\n\n".join(paragraphs) + "\n"


def to_srt(transcript: Transcript) -> str:
    """SubRip; a new speaker is marked as the layout says (a leading dash by default)."""
    blocks = []
    for index, cue in enumerate(caption_cues(transcript), 1):
        lines = [cue.mark + cue.lines[0], *cue.lines[1:]]
        blocks.append(
            f"{index}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n" + "\n".join(lines)
        )
    return "\n\n".join(blocks) + "\n"


def to_vtt(transcript: Transcript) -> str:
    """WebVTT; the speaker goes in a voice tag, which players do not count as caption text."""
    blocks = ["WEBVTT"]
    for cue in caption_cues(transcript):
        text = "\n".join(cue.lines)
        if cue.speaker:
            text = f"<v {cue.speaker}>{text}"
        blocks.append(f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n{text}")
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


def _marked_cues(transcript: Transcript) -> list[Cue]:
    """The cues as the lines mark them, timed by their words; a cue never spans two segments."""
    cues: list[Cue] = []
    previous: str | None = None
    for number, segment in enumerate(transcript.segments):
        mark = transcript.layout.speaker_mark(segment.speaker, previous)
        previous = segment.speaker
        for line in segment.lines:
            if line.new_cue or not cues or cues[-1].segment != number:
                first = not cues or cues[-1].segment != number
                cues.append(
                    Cue(line.start, line.end, segment.speaker, [line.text], number, mark if first else "")
                )
            else:
                cues[-1] = replace(cues[-1], end=line.end, lines=[*cues[-1].lines, line.text])
    return cues


def _timed(cues: list[Cue], layout: CaptionLayout) -> list[Cue]:
    """Each cue extended towards its reading time, up to the gap before the next; none overlaps."""
    timed: list[Cue] = []
    for index, cue in enumerate(cues):
        following = cues[index + 1].start if index + 1 < len(cues) else float("inf")
        reading_s = max(layout.min_duration_s, cue.chars / layout.max_chars_per_s)
        wanted = min(_up_to_ms(cue.start + reading_s), max(cue.end, cue.start + MAX_CUE_S))
        natural = min(cue.end, following)
        end = max(natural, min(wanted, following - CUE_GAP_S), cue.start)
        timed.append(replace(cue, end=round(end, 3)))
    return timed


def _merge_one(cues: list[Cue], layout: CaptionLayout) -> list[Cue] | None:
    """The cues with the first one that cannot be read in its time merged into a neighbour of its
    paragraph (the next, else the one before) where the two fit in one cue; None when none can."""
    for index, cue in enumerate(cues):
        if cue.readable(layout):
            continue
        for first in (index, index - 1):
            if first < 0 or first + 1 >= len(cues):
                continue
            left, right = cues[first], cues[first + 1]
            fits = len(left.lines) + len(right.lines) <= layout.max_lines
            if fits and left.segment == right.segment and right.end - left.start <= MAX_CUE_S:
                joined = replace(left, end=right.end, lines=[*left.lines, *right.lines])
                return [*cues[:first], joined, *cues[first + 2 :]]
    return None


def _up_to_ms(seconds: float) -> float:
    """Rounded up to the millisecond that captions are timed in (so a reading time is not cut)."""
    return math.ceil(round(seconds * 1000, 6)) / 1000


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
