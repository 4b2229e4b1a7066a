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
    """Speech in [start, end) samples; reports it as the audio passes those points."""

    def __init__(self, start: int | None, end: int | None) -> None:
        self._script: list[tuple[int, VadEvent]] = []
        if start is not None:
            self._script.append((start, SpeechStart(start)))
        if end is not None:
            self._script.append((end, SpeechEnd(end)))
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
    assert request is not None and request.flush and request.ends_region
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
    assert request is not None and request.flush and not request.ends_region
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
    assert request is not None and request.ends_region
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
