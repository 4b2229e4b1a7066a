"""OpenAI Realtime transcription, sans I/O: client events and our session's events in, OpenAI's
events out (transports/realtime_protocol.py), with a scripted session behind it (pure logic)."""

from __future__ import annotations

import base64
import json
from typing import Any

from streamscribe.errors import UnsupportedLanguage
from streamscribe.stream.session import LiveSession
from streamscribe.transports.realtime_events import ServerVadSettings, encode_event
from streamscribe.transports.realtime_protocol import MAX_APPEND_BYTES, RealtimeProtocol
from streamscribe.wire import Closed, Error, Final, SpeechStarted, UtteranceEnd, Word

from .test_live_session import feed, spoken
from .test_live_session_cut import late_end_session

VAD = ServerVadSettings(threshold=0.5, prefix_padding_ms=200, silence_duration_ms=1000)


class ScriptedSession:
    """The live session behind the protocol: where speech is, and where a cut's last words end."""

    def __init__(self) -> None:
        self.speech_start_s: float | None = None
        self.cut_end_s: float | None = None
        self.cuts = 0
        self.decoding: list[tuple[str | None, str | None]] = []

    def cut(self) -> float | None:
        self.cuts += 1
        return self.cut_end_s

    def update_decoding(self, language: str | None, prompt: str | None) -> None:
        self.decoding.append((language, prompt))

    def check_language(self, requested: str | None) -> str | None:
        if requested == "xx":
            raise UnsupportedLanguage("'xx' is no language")
        return requested or "en"


class LiveControl:
    """A real live session behind the protocol (its VAD and decodes scripted)."""

    def __init__(self, live: LiveSession) -> None:
        self.live = live

    @property
    def speech_start_s(self) -> float | None:
        return self.live.speech_start_s

    def cut(self) -> float | None:
        return self.live.receive_cut()

    def update_decoding(self, language: str | None, prompt: str | None) -> None:
        self.live.receive_decode_settings(language, prompt)


def opened() -> tuple[RealtimeProtocol, ScriptedSession]:
    session = ScriptedSession()
    protocol = RealtimeProtocol("s1", "tiny.en", VAD, session, session.check_language)
    return protocol, session


def sent(protocol: RealtimeProtocol) -> list[dict[str, Any]]:
    """The events to send, as the client reads them."""
    return [json.loads(encode_event(event)) for event in protocol.events_to_send()]


def client(protocol: RealtimeProtocol, **event: Any) -> bytes:
    return protocol.receive_client_event(json.dumps(event))


def words(text: str, start: float) -> Final:
    return Final(
        seq=0,
        words=[Word(w, start + i * 0.3, start + i * 0.3 + 0.2, 0.9) for i, w in enumerate(text.split())],
    )


def append(protocol: RealtimeProtocol, seconds: float) -> bytes:
    audio = b"\x01\x00" * int(seconds * 24000)
    return client(protocol, type="input_audio_buffer.append", audio=base64.b64encode(audio).decode())


def manual(protocol: RealtimeProtocol) -> None:
    client(
        protocol,
        type="session.update",
        session={"type": "transcription", "audio": {"input": {"turn_detection": None}}},
    )
    assert sent(protocol)[-1]["session"]["audio"]["input"]["turn_detection"] is None


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each event's type (its last part) and what it says."""
    said = ("delta", "transcript", "audio_start_ms", "audio_end_ms")
    return [(e["type"].rsplit(".", 1)[-1], next((str(e[k]) for k in said if k in e), "")) for e in events]


def test_session_created_comes_at_once_in_the_ga_shape() -> None:
    protocol, _ = opened()
    (created,) = sent(protocol)
    assert created["type"] == "session.created" and created["event_id"].startswith("event_")
    assert created["session"] == {
        "id": "s1",
        "object": "realtime.transcription_session",
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "tiny.en", "language": "en", "prompt": None},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 200,
                    "silence_duration_ms": 1000,
                },
                "noise_reduction": None,
            }
        },
    }


def test_with_server_vad_each_utterance_is_an_item_whose_finals_are_its_deltas() -> None:
    protocol, _ = opened()
    sent(protocol)
    for event in (
        SpeechStarted(seq=0, at=1.0),
        words("and so my", 1.1),
        words("fellow Americans", 2.0),
        UtteranceEnd(seq=0, at=2.75),
        SpeechStarted(seq=0, at=3.5),
        words("ask not", 3.6),
        UtteranceEnd(seq=0, at=4.25),
    ):
        protocol.receive_session_event(event)
    events = sent(protocol)
    assert summary(events) == [
        ("speech_started", "1000"),
        ("delta", "and so my"),
        ("delta", " fellow Americans"),
        ("speech_stopped", "2750"),
        ("committed", ""),
        ("completed", "and so my fellow Americans"),
        ("speech_started", "3500"),
        ("delta", "ask not"),
        ("speech_stopped", "4250"),
        ("committed", ""),
        ("completed", "ask not"),
    ]
    first, second = events[0]["item_id"], events[6]["item_id"]
    assert all(e["item_id"] == first for e in events[:6]) and all(e["item_id"] == second for e in events[6:])
    assert (events[4]["previous_item_id"], events[9]["previous_item_id"]) == (None, first)
    assert events[5]["usage"] == {"type": "duration", "seconds": 1.75} and events[5]["content_index"] == 0


def test_an_utterance_heard_before_the_last_one_is_completed_starts_after_it() -> None:
    protocol, _ = opened()
    sent(protocol)
    for event in (
        SpeechStarted(seq=0, at=1.0),
        SpeechStarted(seq=0, at=3.0),  # a client sending faster than real time: both are heard
        words("one", 1.0),
        UtteranceEnd(seq=0, at=2.0),
        words("two", 3.0),
        UtteranceEnd(seq=0, at=4.0),
    ):
        protocol.receive_session_event(event)
    assert [kind for kind, _ in summary(sent(protocol))] == [
        *("speech_started", "delta", "speech_stopped", "committed", "completed"),
        *("speech_started", "delta", "speech_stopped", "committed", "completed"),
    ]


def test_with_turn_detection_off_a_commit_ends_the_item_at_the_utterance_end_its_cut_points_at() -> None:
    protocol, session = opened()
    manual(protocol)
    assert append(protocol, 2.0) == b"\x01\x00" * 48000, "the audio to feed"
    protocol.receive_session_event(SpeechStarted(seq=0, at=0.5))
    protocol.receive_session_event(words("said before", 0.5))
    session.cut_end_s = 2.0
    client(protocol, type="input_audio_buffer.commit")
    append(protocol, 1.0)
    session.cut_end_s = 3.0
    client(protocol, type="input_audio_buffer.commit")  # before the first item's last words came
    for event in (
        words("the commit", 1.2),
        UtteranceEnd(seq=0, at=1.5),  # a pause inside the first item
        words("goes on", 1.6),
        UtteranceEnd(seq=0, at=2.0),
        words("second", 2.2),
        UtteranceEnd(seq=0, at=3.0),
        words("third", 3.5),
    ):
        protocol.receive_session_event(event)
    events = sent(protocol)
    assert session.cuts == 2
    assert summary(events) == [
        ("delta", "said before"),
        ("committed", ""),
        ("committed", ""),
        ("delta", " the commit"),
        ("delta", " goes on"),
        ("completed", "said before the commit goes on"),
        ("delta", "second"),
        ("completed", "second"),
        ("delta", "third"),
    ]
    first, second, third = events[0]["item_id"], events[2]["item_id"], events[-1]["item_id"]
    assert len({first, second, third}) == 3 and events[2]["previous_item_id"] == first
    assert events[5]["usage"]["seconds"] == 2.0 and events[7]["usage"]["seconds"] == 1.0


def test_a_commit_whose_last_words_were_sent_completes_at_once() -> None:
    protocol, session = opened()
    manual(protocol)
    append(protocol, 1.0)
    protocol.receive_session_event(words("all final", 0.2))
    protocol.receive_session_event(UtteranceEnd(seq=0, at=0.8))
    session.cut_end_s = 0.8
    client(protocol, type="input_audio_buffer.commit")
    assert summary(sent(protocol)) == [("delta", "all final"), ("committed", ""), ("completed", "all final")]
    append(protocol, 1.0)
    client(protocol, type="input_audio_buffer.commit")  # silence only: an empty item
    assert summary(sent(protocol)) == [("committed", ""), ("completed", "")]


def test_a_push_to_talk_commit_with_server_vad_leaves_no_empty_item_when_the_vad_end_comes() -> None:
    live = late_end_session()  # speech 1-2 s; its end is reported at 3 s
    protocol = RealtimeProtocol("s1", "tiny.en", VAD, LiveControl(live), lambda requested: requested or "en")

    def hear(seconds: float, *texts: str) -> None:
        """Append and feed `seconds` of audio, decode with `texts`, and pass the events on."""
        if seconds:
            append(protocol, seconds)
            feed(live, seconds)
        answers = list(texts)
        while (request := live.take_decode_request()) is not None:
            live.receive_decode_result(request, spoken(answers.pop(0), 0.1) if answers else [])
        for event in live.events_to_send():
            protocol.receive_session_event(event)

    hear(2.5)
    client(protocol, type="input_audio_buffer.commit")  # the button is let go after the last word
    hear(0, "over and out")
    hear(5)  # the microphone stays open: the VAD's late end of the speech comes, then silence
    live.receive_stop()
    for event in live.events_to_send():
        protocol.receive_session_event(event)
    assert summary(sent(protocol)[1:]) == [
        ("speech_started", "1000"),
        ("delta", "over and out"),
        ("speech_stopped", "2500"),
        ("committed", ""),
        ("completed", "over and out"),
    ], "one item, and no empty one after it"


def test_a_commit_with_nothing_new_is_refused() -> None:
    protocol, session = opened()
    sent(protocol)
    append(protocol, 0.05)
    client(protocol, type="input_audio_buffer.commit", event_id="c1")
    (error,) = sent(protocol)
    assert error["error"]["code"] == "input_audio_buffer_commit_empty" and error["error"]["event_id"] == "c1"
    append(protocol, 1.0)
    client(protocol, type="input_audio_buffer.commit")
    (error,) = sent(protocol)
    assert "no speech" in error["error"]["message"], "server_vad: silence is not an item"
    session.speech_start_s = 0.5
    client(protocol, type="input_audio_buffer.commit")
    assert sent(protocol) == [] and session.cuts == 1, "the utterance's own end completes it"


def test_clear_with_turn_detection_off_drops_the_item_in_progress() -> None:
    protocol, session = opened()
    manual(protocol)
    append(protocol, 2.0)
    protocol.receive_session_event(words("already sent", 0.2))
    session.cut_end_s = 2.0
    client(protocol, type="input_audio_buffer.clear")
    append(protocol, 1.0)
    session.cut_end_s = 3.0
    client(protocol, type="input_audio_buffer.commit")
    for event in (
        words("not sent", 1.5),
        UtteranceEnd(seq=0, at=2.0),
        words("kept", 2.5),
        UtteranceEnd(seq=0, at=3.0),
    ):
        protocol.receive_session_event(event)
    assert summary(sent(protocol)) == [
        ("delta", "already sent"),
        ("cleared", ""),
        ("committed", ""),
        ("delta", "kept"),
        ("completed", "kept"),
    ]


def test_clear_with_server_vad_drops_the_utterance_going_on_even_before_its_start_is_seen() -> None:
    protocol, session = opened()
    sent(protocol)
    append(protocol, 2.0)
    session.speech_start_s = 1.0
    client(protocol, type="input_audio_buffer.clear")
    assert session.cuts == 1
    for event in (
        SpeechStarted(seq=0, at=1.0),
        SpeechStarted(seq=0, at=2.0),  # the speech after the cut
        words("dropped", 1.0),
        UtteranceEnd(seq=0, at=2.0),
        words("kept", 2.0),
        UtteranceEnd(seq=0, at=2.5),
    ):
        protocol.receive_session_event(event)
    assert summary(sent(protocol)) == [
        ("cleared", ""),
        ("speech_started", "1000"),
        ("speech_stopped", "2000"),
        ("speech_started", "2000"),
        ("delta", "kept"),
        ("speech_stopped", "2500"),
        ("committed", ""),
        ("completed", "kept"),
    ]


def test_session_update_applies_language_and_prompt_and_refuses_the_whole_update_on_any_fault() -> None:
    protocol, session = opened()
    sent(protocol)

    def update(audio_input: dict[str, Any]) -> dict[str, Any]:
        client(
            protocol,
            type="session.update",
            event_id="u",
            session={"type": "transcription", "audio": {"input": audio_input}},
        )
        (answer,) = sent(protocol)
        return answer

    answer = update({"transcription": {"model": "whisper-1", "language": "de", "prompt": "Grafana"}})
    assert answer["session"]["audio"]["input"]["transcription"] == {
        "model": "whisper-1",
        "language": "de",
        "prompt": "Grafana",
    }
    assert session.decoding == [("de", "Grafana")]
    refused = update({"transcription": {"model": "whisper-1", "language": "xx"}, "turn_detection": None})
    assert (refused["error"]["code"], refused["error"]["param"]) == (
        "unsupported_language",
        "session.audio.input.transcription.language",
    )
    assert (
        update({"noise_reduction": {"type": "far_field"}})["session"]["audio"]["input"]["turn_detection"]
        is not None
    ), "the refused update changed nothing"
    assert update({"transcription": {"model": "tiny.en"}})["type"] == "session.updated", (
        "the engine's own name"
    )
    assert update({"transcription": {"model": "gpt-realtime"}})["error"]["code"] == "unknown_model"
    append(protocol, 0.5)
    refused = update({"turn_detection": None})
    assert (refused["error"]["code"], refused["error"]["param"]) == (
        "protocol_violation",
        "session.audio.input.turn_detection",
    )
    assert update({"format": {"type": "audio/pcma"}})["error"]["code"] == "unsupported_audio"
    assert session.decoding == [("de", "Grafana"), ("en", None)]


def test_the_beta_update_is_answered_in_the_beta_shape() -> None:
    protocol, _ = opened()
    sent(protocol)
    beta = {
        "input_audio_format": "pcm16",
        "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
        "turn_detection": None,
    }
    client(protocol, type="transcription_session.update", session=beta)
    (answer,) = sent(protocol)
    assert answer["type"] == "transcription_session.updated"
    assert answer["session"] == {
        "id": "s1",
        "object": "realtime.transcription_session",
        "input_audio_format": "pcm16",
        "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": None},
        "turn_detection": None,
        "input_audio_noise_reduction": None,
        "modalities": ["text"],
    }
    client(protocol, type="transcription_session.update", session={"input_audio_format": "g711_ulaw"})
    (refused,) = sent(protocol)
    assert (refused["error"]["code"], refused["error"]["param"]) == (
        "unsupported_audio",
        "session.input_audio_format",
    )


def test_bad_events_are_answered_with_errors_that_say_what_and_where() -> None:
    protocol, _ = opened()
    sent(protocol)
    too_large = base64.b64encode(bytes(MAX_APPEND_BYTES + 3)).decode()
    for raw in (
        "{",
        "[" * 10_000,
        '{"event_id": "e0"}',
        '{"type": "nope", "event_id": "e1"}',
        '{"type": "conversation.item.create", "item": {}}',
        '{"type": "input_audio_buffer.append", "audio": "a=b"}',
        json.dumps({"type": "input_audio_buffer.append", "audio": too_large}),
        '{"type": "session.update", "session": {"type": "realtime", "instructions": "hi"}}',
        '{"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": "fast"}}}}}',
    ):
        assert protocol.receive_client_event(raw) == b""
    errors = [(e["error"]["code"], e["error"]["param"], e["error"]["event_id"]) for e in sent(protocol)]
    assert errors == [
        ("bad_message", None, None),
        ("bad_message", None, None),
        ("bad_message", "type", "e0"),
        ("bad_message", "type", "e1"),
        ("protocol_violation", "type", None),
        ("bad_message", "audio", None),
        ("frame_too_large", "audio", None),
        ("bad_message", "session.type", None),
        ("bad_message", "session.audio.input.format.rate", None),
    ]


def test_an_error_of_the_session_is_an_error_event_and_items_left_waiting_fail() -> None:
    protocol, session = opened()
    manual(protocol)
    append(protocol, 1.0)
    session.cut_end_s = 1.0
    client(protocol, type="input_audio_buffer.commit")
    protocol.receive_session_event(Error(seq=0, code="decode_failed", message="the model failed"))
    protocol.receive_session_event(Closed(seq=0, audio_s=1.0, words=0))
    committed, error, failed = sent(protocol)
    assert error["error"] == {
        "type": "server_error",
        "code": "decode_failed",
        "message": "the model failed",
        "param": None,
        "event_id": None,
    }
    assert failed["type"] == "conversation.item.input_audio_transcription.failed"
    assert failed["item_id"] == committed["item_id"] and failed["error"]["code"] == "decode_failed"
