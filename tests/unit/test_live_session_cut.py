"""Cutting an utterance where the client says (OpenAI Realtime's commit) and changing the decode
language and prompt mid-stream, on the session state machine (scripted VAD and decodes)."""

import numpy as np

from streamscribe.config import StreamSettings
from streamscribe.stream.session import LiveSession
from streamscribe.vad import SpeechEnd, SpeechStart, VadEvent
from streamscribe.wire import Final, ServerMessage, SpeechStarted, UtteranceEnd

from .test_live_session import SECOND, ScriptedVad, feed, session, spoken, word


def utterances(events: list[ServerMessage]) -> list[tuple[str, float | str]]:
    """The speech_started, final and utterance_end events: each one's `at`, or its words."""
    said: list[tuple[str, float | str]] = []
    for event in events:
        if isinstance(event, SpeechStarted | UtteranceEnd):
            said.append((type(event).__name__, event.at))
        elif isinstance(event, Final):
            said.append(("Final", " ".join(w.text for w in event.words)))
    return said


def test_a_cut_ends_the_speech_going_on_and_the_rest_is_a_new_utterance() -> None:
    live = session(SECOND, 5 * SECOND)
    feed(live, 3)
    assert live.speech_start_s == 1.0
    assert live.receive_cut() == 3.0
    assert live.speech_start_s is None, "whether speech goes on after the cut is not known yet"
    request = live.take_decode_request()
    assert request is not None and request.flush and request.region_ends == (3 * SECOND,)
    live.receive_decode_result(request, spoken("before the cut", 0.1))
    feed(live, 1)
    assert live.speech_start_s is None
    feed(live, 0.5)
    assert live.speech_start_s == 3.0, "no end a silence's length after the cut: speech goes on"
    feed(live, 1.5)
    after = live.take_decode_request()
    assert after is not None and after.region_ends == (5 * SECOND,) and after.start_samples == 3 * SECOND
    live.receive_decode_result(after, spoken("after it", 0.5))
    assert utterances(live.events_to_send()) == [
        ("SpeechStarted", 1.0),
        ("Final", "before the cut"),
        ("UtteranceEnd", 3.0),
        ("SpeechStarted", 3.0),
        ("Final", "after it"),
        ("UtteranceEnd", 5.0),
    ]
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
    """Speech from 1 s; its end is reported as Silero reports it: `min_silence_ms` (1 s) after
    the speech stops (at `speech_end_s`, 2 s unless told), padded by `speech_pad_ms` (0.2 s)."""

    def __init__(self, speech_end_s: float = 2.0) -> None:
        self._received = 0
        end = int(speech_end_s * SECOND)
        self._due = [(SECOND, SpeechStart(SECOND)), (end + SECOND, SpeechEnd(end + SECOND // 5))]

    def receive_audio(self, samples: np.ndarray) -> list[VadEvent]:
        before, self._received = self._received, self._received + samples.size
        return [event for at, event in self._due if before < at <= self._received]


def late_end_session(speech_end_s: float = 2.0) -> LiveSession:
    return LiveSession("s1", StreamSettings(), LateEndVad(speech_end_s), "tiny.en", 16000, "en")


def decode_all(live: LiveSession, *texts: str) -> None:
    """Answer each decode asked for with the next text (at the start of its window), then with
    nothing."""
    answers = list(texts)
    while (request := live.take_decode_request()) is not None:
        live.receive_decode_result(request, spoken(answers.pop(0), 0.1) if answers else [])


def test_a_cut_right_after_speech_whose_end_the_vad_reports_late_leaves_no_empty_utterance() -> None:
    live = late_end_session()
    feed(live, 2.5)  # speech 1-2 s, then silence: its end (2.2 s, padded) is reported at 3 s
    assert live.receive_cut() == 2.5
    decode_all(live, "push to talk")
    feed(live, 1)
    assert live.speech_start_s is None
    feed(live, 5)
    decode_all(live)
    assert live.take_decode_request() is None and live.speech_start_s is None
    live.receive_stop()
    assert utterances(live.events_to_send()) == [
        ("SpeechStarted", 1.0),
        ("Final", "push to talk"),
        ("UtteranceEnd", 2.5),
    ], "the utterance ends at the cut, and nothing after it is an utterance"


def test_speech_that_goes_on_past_the_cut_and_ends_before_the_vad_could_tell_is_an_utterance() -> None:
    live = late_end_session(speech_end_s=3.0)
    feed(live, 2.5)
    assert live.receive_cut() == 2.5
    decode_all(live, "before")
    feed(live, 1.5)  # at 4 s the end (3.2 s) comes: speech went on past the cut
    assert live.speech_start_s is None, "the utterance after the cut has ended already"
    decode_all(live, "after")
    assert utterances(live.events_to_send()) == [
        ("SpeechStarted", 1.0),
        ("Final", "before"),
        ("UtteranceEnd", 2.5),
        ("SpeechStarted", 2.5),
        ("Final", "after"),
        ("UtteranceEnd", 3.2),
    ]


def test_a_cut_again_before_the_vad_could_tell_makes_the_audio_between_the_cuts_an_utterance() -> None:
    live = late_end_session(speech_end_s=3.0)
    feed(live, 2)
    assert live.receive_cut() == 2.0
    feed(live, 0.5)
    assert live.receive_cut() == 2.5, "its words are sent before the utterance_end at the second cut"
    decode_all(live, "first", "second")
    feed(live, 3)  # the end (3.2 s) comes at 4 s: speech went on past the second cut too
    decode_all(live, "third")
    assert utterances(live.events_to_send()) == [
        ("SpeechStarted", 1.0),
        ("SpeechStarted", 2.0),
        ("Final", "first"),
        ("UtteranceEnd", 2.0),
        ("Final", "second"),
        ("UtteranceEnd", 2.5),
        ("SpeechStarted", 2.5),
        ("Final", "third"),
        ("UtteranceEnd", 3.2),
    ]


def test_at_the_end_of_the_stream_speech_after_a_cut_is_an_utterance_only_if_it_has_words() -> None:
    for words, expected in (
        ((), []),
        (("last words",), [("SpeechStarted", 2.5), ("Final", "last words"), ("UtteranceEnd", 3.0)]),
    ):
        live = late_end_session(speech_end_s=3.0)
        feed(live, 2.5)
        live.receive_cut()
        decode_all(live, "before")
        feed(live, 0.5)
        live.receive_stop()  # the VAD never told whether speech went on after the cut
        decode_all(live, *words)
        assert utterances(live.events_to_send())[3:] == expected
        assert live.closed


def test_a_session_waits_for_audio_only_with_nothing_to_decode() -> None:
    live = session(SECOND, 3 * SECOND)
    assert live.waiting_for_audio, "nothing heard yet"
    feed(live, 1.5)
    assert not live.waiting_for_audio, "speech to decode"
    request = live.take_decode_request()
    assert request is not None and not live.waiting_for_audio, "a decode in flight"
    live.receive_decode_result(request, [])
    assert live.waiting_for_audio, "all speech decoded: more audio gives it work"
    feed(live, 2)
    assert not live.waiting_for_audio, "an utterance ended: its flush is due"
    decode_all(live)
    assert live.waiting_for_audio
    live.receive_stop()
    assert not live.waiting_for_audio


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
