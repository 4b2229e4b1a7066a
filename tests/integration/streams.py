"""Checks every well-formed stream must pass, whatever the audio."""

from __future__ import annotations

import itertools

from streamscribe.client.stream import StreamResult
from streamscribe.wire import Closed, Final, Partial, Ready


def assert_well_formed(result: StreamResult, audio_s: float) -> None:
    events = [timed.event for timed in result.events]
    assert isinstance(events[0], Ready) and events[0].protocol == 1
    assert [event.seq for event in events] == list(range(1, len(events) + 1)), "seq must be contiguous"
    assert isinstance(events[-1], Closed), f"last event is {events[-1]!r}"
    assert result.close_code == 1000
    finals = result.finals
    for earlier, later in itertools.pairwise(finals):
        assert earlier.end <= later.start + 1e-6, f"finals overlap or go back: {earlier} then {later}"
    for word in finals + [w for e in events if isinstance(e, Partial) for w in e.words]:
        assert 0.0 <= word.start <= word.end <= audio_s + 0.01, f"{word} lies outside the audio"
        assert 0.0 <= word.confidence <= 1.0
    assert events[-1].words == len(finals)
    assert abs(events[-1].audio_s - audio_s) < 0.05
    assert all(not isinstance(event, Final) or event.words for event in events), "empty final"
