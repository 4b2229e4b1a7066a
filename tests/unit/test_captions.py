"""Caption cues timed for reading and marked for speakers (exports.py), pure logic."""

from __future__ import annotations

import itertools

import srt

from streamscribe.exports import CUE_GAP_S, caption_cues, to_srt
from streamscribe.finalize.enhance import to_segments
from streamscribe.transcript import CaptionLayout, Segment, Transcript, VersionInfo, Word


def said(text: str, start: float, step: float, speaker: str | None = None) -> list[Word]:
    """One word every `step` seconds from `start`, each lasting 0.9 of its step."""
    return [
        Word(id=f"w{start}-{i}", text=t, start=start + i * step, end=start + (i + 0.9) * step, confidence=0.9,
             speaker=speaker)
        for i, t in enumerate(text.split())
    ]  # fmt: skip


def transcript(paragraphs: list[list[Word]], layout: CaptionLayout | None = None) -> Transcript:
    layout = layout or CaptionLayout()
    segments: list[Segment] = to_segments(paragraphs, layout)
    info = VersionInfo(parent=None, created_at=0.0, models={}, settings={}, timings_s={})
    end = max(word.end for group in paragraphs for word in group)
    return Transcript(
        id="t", version=1, language="en", duration_s=end, layout=layout, segments=segments, info=info
    )


def test_a_short_cue_stays_up_for_the_minimum_where_the_next_leaves_room() -> None:
    cues = caption_cues(transcript([said("Yes.", 0.0, 0.4), said("And then we left.", 3.0, 0.3)]))
    assert cues[0].end - cues[0].start == 1.0


def test_a_fast_cue_is_extended_to_its_reading_time_but_never_over_the_next() -> None:
    text = "Unbelievable extraordinary circumstances"
    fast = said(text, 0.0, 0.4)  # 40 characters in 1.2 s
    roomy = caption_cues(transcript([fast, said("Then.", 5.0, 0.5)]))
    assert roomy[0].end == round(len(text) / 17.0, 3)
    tight = caption_cues(transcript([fast, said("Then.", 1.6, 0.5)]))
    assert tight[0].end == round(1.6 - CUE_GAP_S, 3), "extended only up to the gap before the next"


def test_a_cue_with_no_room_is_merged_with_its_neighbour_when_they_fit() -> None:
    words = said("Unbelievable circumstances.", 0.0, 0.35) + said("Truly remarkable.", 0.75, 0.35)
    cues = caption_cues(transcript([words]))
    assert [cue.lines for cue in cues] == [["Unbelievable circumstances.", "Truly remarkable."]]


def test_cues_never_overlap_even_when_word_times_do() -> None:
    first = said("one two three", 0.0, 0.5)
    second = [Word(id="x", text="four", start=1.2, end=1.6, confidence=0.9, speaker="Speaker 2")]
    cues = caption_cues(transcript([first, second]))
    assert all(earlier.end <= later.start for earlier, later in itertools.pairwise(cues))


def test_srt_marks_a_new_speaker_with_a_dash_or_the_name_within_the_line_limit() -> None:
    conversation = [
        said("Where were you?", 0.0, 0.4, "Speaker 1"),
        said("Out walking the dog along the river in the morning sun.", 2.0, 0.35, "Speaker 2"),
        said("Alone?", 8.0, 0.4, "Speaker 1"),
    ]
    dashed = [cue.content for cue in srt.parse(to_srt(transcript(conversation)))]
    assert dashed[0] == "Where were you?" and dashed[1].startswith("- Out") and dashed[-1] == "- Alone?"
    layout = CaptionLayout(max_chars=30, speaker_marks="name")
    named = [cue.content for cue in srt.parse(to_srt(transcript(conversation, layout)))]
    assert named[0] == "Speaker 1: Where were you?" and named[1].startswith("Speaker 2: Out")
    assert all(len(line) <= 30 for cue in named for line in cue.split("\n")), named
    assert [
        cue.content
        for cue in srt.parse(to_srt(transcript(conversation, CaptionLayout(speaker_marks="none"))))
    ][1].startswith("Out")
