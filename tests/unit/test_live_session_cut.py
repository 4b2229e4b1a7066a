"""Cutting an utterance where the client says (OpenAI Realtime's commit) and changing the decode
language and prompt mid-stream, on the session state machine (scripted VAD and decodes)."""

import numpy as np

from streamscribe.config import StreamSettings
from streamscribe.stream.session import LiveSession
from streamscribe.vad import SpeechEnd, SpeechStart, VadEvent
from streamscribe.wire import Final, SpeechStarted, UtteranceEnd

from .test_live_session import SECOND, ScriptedVad, feed, session, spoken, word


def test_a_cut_ends_the_speech_going_on_and_the_rest_is_a_new_utterance() -> None:
    live = session(SECOND, 5 * SECOND)
    feed(live, 3)
    assert live.speech_start_s == 1.0
    assert live.receive_cut() == 3.0
    assert live.speech_start_s == 3.0, "the speech after the cut is a new utterance"
    request = live.take_decode_request()
    assert request is not None and request.flush and request.region_ends == (3 * SECOND,)
    live.receive_decode_result(request, spoken("before the cut", 0.1))
    feed(live, 3)
    after = live.take_decode_request()
    assert after is not None and after.region_ends == (5 * SECOND,) and after.start_samples == 3 * SECOND
    live.receive_decode_result(after, spoken("after it", 0.5))
    events = [e for e in live.events_to_send() if isinstance(e, SpeechStarted | Final | UtteranceEnd)]
    assert [type(e) for e in events] == [
        SpeechStarted,
        SpeechStarted,
        Final,
        UtteranceEnd,
        Final,
        UtteranceEnd,
    ]
    assert [e.at for e in events if isinstance(e, SpeechStarted | UtteranceEnd)] == [1.0, 3.0, 3.0, 5.0]
    assert live.speech_start_s is None


def test_a_cut_in_silence_points_at_the_last_utterance_end_even_once_it_was_sent() -> None:
    live = session(None, None)
    feed(live, 2)
    assert live.receive_cut() is None, "no speech yet: nothing to wait for"
    live = session(SECOND, 2 * SECOND)
    feed(live, 3)
    assert live.speech_start_s is None
    assert live.receive_cut() == 2.0, "the region still waits for its decode"
    request = live.take_decode_request()
    assert request is not None
    live.receive_decode_result(request, [word("done", 0.1)])
    assert live.receive_cut() == 2.0, "its utterance_end is sent: everything before the cut is final"
    assert live.take_decode_request() is None


class LateEndVad:
    """Speech from 1 s; its end, at 2 s, is only reported once 3 s were heard (as Silero reports
    an end after min_silence_ms)."""

    def __init__(self) -> None:
        self._received = 0

    def receive_audio(self, samples: np.ndarray) -> list[VadEvent]:
        before, self._received = self._received, self._received + samples.size
        due = [(SECOND, SpeechStart(SECOND)), (3 * SECOND, SpeechEnd(2 * SECOND))]
        return [event for at, event in due if before < at <= self._received]


def test_a_vad_end_found_after_a_cut_never_ends_an_utterance_before_the_cut() -> None:
    live = LiveSession("s1", StreamSettings(), LateEndVad(), "tiny.en", 16000, "en")
    feed(live, 2.5)
    live.receive_cut()
    feed(live, 1)
    assert live.speech_start_s is None
    while (request := live.take_decode_request()) is not None:
        live.receive_decode_result(request, [])
    ends = [e.at for e in live.events_to_send() if isinstance(e, UtteranceEnd)]
    assert ends == [2.5, 2.5], "the utterance after the cut is empty, not one that ends before it"


def test_the_language_and_prompt_can_change_mid_stream() -> None:
    live = LiveSession("s1", StreamSettings(), ScriptedVad(0, None), "small", 16000, "en", prompt="first")
    feed(live, 2)
    request = live.take_decode_request()
    assert request is not None and (request.options.language, request.options.prompt) == ("en", "first")
    live.receive_decode_result(request, [])
    live.receive_decode_settings("de", "Zweite")
    feed(live, 1)
    request = live.take_decode_request()
    assert request is not None and (request.options.language, request.options.prompt) == ("de", "Zweite")
    assert live.language == "de", "the stored transcript takes the new language"
