"""The session state machine with a scripted VAD and scripted decode results (pure logic)."""

import numpy as np

from streamscribe.asr.engine import AsrWord
from streamscribe.audio import SAMPLE_RATE
from streamscribe.config import StreamSettings
from streamscribe.stream.session import FEED_SLICE_SAMPLES, LiveSession, State
from streamscribe.vad import SpeechEnd, SpeechStart, VadEvent
from streamscribe.wire import Closed, Error, Final, Finalizing, Progress, Ready, SpeechStarted, UtteranceEnd

SECOND = SAMPLE_RATE


class ScriptedVad:
    """Speech in [start, end) samples (and in any further `regions`); reports it as the audio
    passes those points."""

    def __init__(self, start: int | None, end: int | None, regions: tuple[tuple[int, int], ...] = ()) -> None:
        self._script: list[tuple[int, VadEvent]] = []
        if start is not None:
            self._script.append((start, SpeechStart(start)))
        if end is not None:
            self._script.append((end, SpeechEnd(end)))
        for region_start, region_end in regions:
            self._script += [(region_start, SpeechStart(region_start)), (region_end, SpeechEnd(region_end))]
        self._received = 0

    def receive_audio(self, samples: np.ndarray) -> list[VadEvent]:
        self._received += samples.size
        due = [event for at, event in self._script if at <= self._received]
        self._script = [(at, event) for at, event in self._script if at > self._received]
        return due


def session(start: int | None, end: int | None, **settings: float) -> LiveSession:
    return LiveSession("s1", StreamSettings(**settings), ScriptedVad(start, end), "tiny.en", 16000, "en")


def feed(live: LiveSession, seconds: float) -> None:
    for _ in range(int(seconds * SAMPLE_RATE) // FEED_SLICE_SAMPLES):
        live.receive_audio(np.zeros(FEED_SLICE_SAMPLES, dtype=np.float32))


def word(text: str, start: float) -> AsrWord:
    return AsrWord(text, start, start + 0.3, 0.9)


def test_silence_is_never_decoded() -> None:
    live = session(None, None)
    feed(live, 10)
    assert live.take_decode_request() is None
    live.receive_stop()
    kinds = [type(event) for event in live.events_to_send()]
    assert kinds == [Ready, Closed]


def test_speech_is_decoded_one_request_at_a_time_within_the_region() -> None:
    live = session(SECOND, None, decode_step_ms=500)
    feed(live, 2)
    request = live.take_decode_request()
    assert request is not None and request.start_samples == SECOND and request.end_samples == 2 * SECOND
    assert not request.flush
    feed(live, 1)
    assert live.take_decode_request() is None, "a second request while one is in flight"
    live.receive_decode_result(request, [word("hello", 0.1)])
    newer = live.take_decode_request()
    assert newer is not None and newer.end_samples == 3 * SECOND, "the next request covers the newest audio"


def test_end_of_speech_flushes_everything_and_ends_the_utterance() -> None:
    live = session(SECOND, 3 * SECOND)
    feed(live, 4)
    request = live.take_decode_request()
    assert request is not None and request.flush and request.region_ends
    assert request.end_samples == 3 * SECOND
    live.receive_decode_result(request, [word("hello", 0.2), word("world", 0.8)])
    live.receive_stop()
    events = live.events_to_send()
    assert [type(e) for e in events] == [Ready, SpeechStarted, Final, UtteranceEnd, Closed]
    assert [w.text for w in events[2].words] == ["hello", "world"]
    assert events[2].words[0].start == 1.2, "times are in stream seconds"
    assert [e.seq for e in events] == list(range(1, 6))
    assert events[-1].words == 2


def test_backpressure_when_decoding_lags() -> None:
    live = session(0, None, max_lookahead_s=2.0)
    feed(live, 1)
    assert live.can_accept_audio()
    feed(live, 1.5)
    assert not live.can_accept_audio()
    assert live.take_decode_request() is not None
    assert live.can_accept_audio()


def test_a_decode_failure_is_reported_and_keeps_earlier_finals() -> None:
    live = session(0, SECOND)
    feed(live, 2)
    first = live.take_decode_request()
    assert first is not None
    live.receive_decode_result(first, [word("kept", 0.1)])
    live.receive_audio(np.zeros(FEED_SLICE_SAMPLES, dtype=np.float32))
    live._open_region(2 * SECOND)  # a second utterance whose decode will fail
    feed(live, 1)
    second = live.take_decode_request()
    assert second is not None
    live.receive_decode_error("decoding failed: boom")
    events = live.events_to_send()
    finals = [w.text for e in events if isinstance(e, Final) for w in e.words]
    assert finals == ["kept"]
    assert isinstance(events[-2], Error) and events[-2].code == "decode_failed"
    assert isinstance(events[-1], Closed) and live.closed


def test_a_stream_longer_than_the_limit_is_ended_with_an_error() -> None:
    live = session(None, None, max_session_s=1.0)
    feed(live, 2)
    events = live.events_to_send()
    assert [type(e) for e in events] == [Ready, Error, Closed]
    assert events[1].code == "session_too_long"


def test_stop_right_after_finalize_closes_without_another_decode() -> None:
    live = session(0, None)
    feed(live, 2)
    live.receive_finalize()
    request = live.take_decode_request()
    assert request is not None and request.flush and not request.region_ends
    live.receive_decode_result(request, [word("done", 0.1)])
    live.receive_stop()
    assert live.take_decode_request() is None
    events = live.events_to_send()
    assert [type(e) for e in events][-3:] == [Final, UtteranceEnd, Closed] and live.closed


def test_a_replayed_file_reports_progress_up_to_its_length_then_the_second_pass() -> None:
    live = LiveSession(
        "s1", StreamSettings(), ScriptedVad(None, None), "tiny.en", 16000, "en",
        transcript_id="s1", progress_total_s=200.0, reports_progress=True,
    )  # fmt: skip
    feed(live, 10)
    live.receive_stop()
    live.receive_transcript_progress(0.5)
    live.receive_transcript_ready(2)
    events = live.events_to_send()
    progress = [event for event in events if isinstance(event, Progress)]
    assert [event.processed_s for event in progress] == [2.0, 4.0, 6.0, 8.0, 10.0, 10.0]
    assert [event.total_s for event in progress] == [200.0] * 5 + [10.0], "the last says the real length"
    finalizing = next(event for event in events if isinstance(event, Finalizing))
    assert (finalizing.processed_s, finalizing.total_s) == (5.0, 10.0)
    assert isinstance(events[-1], Closed)


def test_the_initial_prompt_is_used_until_words_are_committed() -> None:
    live = LiveSession(
        "s1", StreamSettings(), ScriptedVad(0, None), "tiny.en", 16000, "en", prompt="Grafana, Kubernetes"
    )
    feed(live, 2)
    request = live.take_decode_request()
    assert request is not None and request.options.prompt == "Grafana, Kubernetes"


def test_the_session_moves_through_its_states_in_order_and_is_silent_once_closed() -> None:
    live = LiveSession(
        "s1", StreamSettings(), ScriptedVad(0, None), "tiny.en", 16000, "en", transcript_id="s1"
    )
    feed(live, 2)
    assert live.state is State.STREAMING
    live.receive_stop()
    assert live.state is State.FLUSHING and live.ended and not live.live_finished
    request = live.take_decode_request()
    assert request is not None and request.region_ends
    live.receive_decode_result(request, [word("done", 0.1)])
    assert live.state is State.FINALIZING and live.live_finished, (
        "every final is out; the transcript is awaited"
    )
    live.receive_transcript_ready(2)
    assert live.state is State.CLOSED and live.closed
    live.events_to_send()
    live.receive_error("bad_message", "garbage after the end")
    live.receive_audio(np.zeros(FEED_SLICE_SAMPLES, dtype=np.float32))
    assert live.events_to_send() == [], "nothing is sent after closed"


def spoken(texts: str, start: float, step: float = 0.5) -> list[AsrWord]:
    """One word every `step` seconds from `start` (window time)."""
    return [word(text, start + index * step) for index, text in enumerate(texts.split())]


def test_a_session_far_behind_decodes_several_whole_utterances_in_one_window() -> None:
    regions = ((SECOND, 5 * SECOND), (6 * SECOND, 10 * SECOND), (11 * SECOND, 40 * SECOND))
    live = LiveSession("s1", StreamSettings(), ScriptedVad(None, None, regions), "tiny.en", 16000, "en")
    feed(live, 42)  # read ahead at once, as from a client sending faster than real time
    request = live.take_decode_request()
    assert request is not None and request.catching_up and request.flush
    assert request.region_ends == (5 * SECOND, 10 * SECOND), "the third region does not fit in 28 s"
    assert (request.start_samples, request.end_samples) == (SECOND, 10 * SECOND)
    assert request.options.prompt is None, "a long window is decoded without the recent text as prompt"
    live.receive_decode_result(request, spoken("one two", 0.5) + spoken("three four", 5.5))
    events = live.events_to_send()
    summary = [
        [w.text for w in e.words] if isinstance(e, Final) else e.at
        for e in events
        if isinstance(e, Final | UtteranceEnd)
    ]
    assert summary == [["one", "two"], 5.0, ["three", "four"], 10.0], (
        "each utterance its finals, then its end"
    )


def test_catching_up_inside_a_long_utterance_commits_what_one_hypothesis_says_before_the_margin() -> None:
    live = session(0, None)
    feed(live, 60)
    first = live.take_decode_request()
    assert first is not None and first.catching_up and not first.flush
    assert (first.start_samples, first.end_samples) == (0, 28 * SECOND)
    live.receive_decode_result(first, spoken("a b c d e", 20.0, step=2.0))  # end at 20.3 ... 28.3 s
    finals = [w.text for e in live.events_to_send() if isinstance(e, Final) for w in e.words]
    assert finals == ["a", "b", "c"], "words ending 3 s or more before the window's end are final"
    second = live.take_decode_request()
    assert second is not None and second.catching_up
    assert second.start_samples == int(24.3 * SECOND), "the next window starts at the last final word"
    live.receive_decode_result(second, [])
    third = live.take_decode_request()
    assert third is not None and third.start_samples > second.start_samples, "a window without words moves on"


def test_a_session_that_caught_up_decodes_short_windows_again() -> None:
    live = session(0, None)
    feed(live, 10)
    catch_up = live.take_decode_request()
    assert catch_up is not None and catch_up.catching_up
    live.receive_decode_result(catch_up, spoken("a b c", 1.0))
    feed(live, 1)
    request = live.take_decode_request()
    assert request is not None and not request.catching_up and request.end_samples == 11 * SECOND


def test_a_stream_cut_short_says_why_and_one_stopped_does_not() -> None:
    stopped, lost, failed = session(0, None), session(0, None), session(0, None)
    for live in (stopped, lost, failed):
        feed(live, 2)
    stopped.receive_stop()
    lost.receive_disconnect()
    failed.receive_error("storage_failed", "the disk is full")
    assert stopped.cut_short is None
    assert lost.cut_short == "the connection was lost before the client sent stop"
    assert failed.cut_short == "storage_failed: the disk is full"
    stopped.receive_disconnect()
    assert stopped.cut_short is None, "a connection closed after stop cut nothing"


def test_finalize_is_answered_only_once_everything_heard_is_committed() -> None:
    regions = ((SECOND, 3 * SECOND), (4 * SECOND, 60 * SECOND))
    live = LiveSession("s1", StreamSettings(), ScriptedVad(None, None, regions), "tiny.en", 16000, "en")
    feed(live, 5)
    live.receive_finalize()
    first = live.take_decode_request()
    assert first is not None and first.region_ends == (3 * SECOND,) and not first.answers_finalize
    live.receive_decode_result(first, spoken("one two", 0.5))
    second = live.take_decode_request()
    assert second is not None and second.flush and second.answers_finalize, (
        "the open utterance is flushed too"
    )
    assert second.end_samples == 5 * SECOND


def test_a_stream_with_no_audio_closes_without_waiting_for_a_transcript() -> None:
    live = LiveSession(
        "s1", StreamSettings(), ScriptedVad(None, None), "tiny.en", 16000, "en", transcript_id="s1"
    )
    live.receive_stop(wait_for_transcript=True)
    events = live.events_to_send()
    assert [type(e) for e in events] == [Ready, Closed] and live.closed, "no transcript is kept for it"
