"""The Deepgram translation as pure logic: query parameters, our events as Deepgram's streaming
messages (speech_final, from_finalize, interim results, punctuation), its refusals and close
codes, and a stored transcript as its prerecorded answer, parsed by the official SDK's models."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from deepgram.listen.v1.types import ListenV1Metadata, ListenV1Results, ListenV1UtteranceEnd
from deepgram.types import ListenV1Response

from streamscribe.errors import (
    IdleTimeout,
    InvalidRequest,
    NoAudioStream,
    Overloaded,
    ShuttingDown,
    Unauthorized,
    UnsupportedAudio,
)
from streamscribe.transcript import CaptionLayout, Line, Segment, Transcript, VersionInfo
from streamscribe.transcript import Word as StoredWord
from streamscribe.transports.deepgram_prerecorded import file_response
from streamscribe.transports.deepgram_results import (
    ControlRefused,
    ErrorMessage,
    FinalizeAnswered,
    ListenMessage,
    MetadataMessage,
    ResultsMessage,
    ResultsTranslator,
    SpeechStartedMessage,
    StreamIdentity,
    UtteranceEndMessage,
    encode_message,
)
from streamscribe.transports.deepgram_shape import (
    ListenParams,
    http_refusal,
    model_info,
    parse_params,
    plain_word,
    stream_close,
)
from streamscribe.wire import (
    Closed,
    Error,
    Final,
    Partial,
    Ready,
    ServerMessage,
    SpeechStarted,
    UtteranceEnd,
    Word,
)


def params(**query: str | list[str]) -> ListenParams:
    return parse_params(
        {name: value if isinstance(value, list) else [value] for name, value in query.items()}
    )


def translator(**query: str | list[str]) -> ResultsTranslator:
    identity = StreamIdentity(
        request_id="abc", model_uuid="u-1", model_info=model_info("tiny.en"), channels=1
    )
    return ResultsTranslator(params(**query), identity, lambda: "f" * 64)


def word(text: str, start: float) -> Word:
    return Word(text=text, start=start, end=start + 0.4, confidence=0.9)


def feed(translate: ResultsTranslator, *batches: list[ServerMessage]) -> list[ListenMessage]:
    """Each batch as the writer feeds it: every event, then the end of the batch."""
    sent: list[ListenMessage] = []
    for batch in batches:
        for event in batch:
            sent += translate.receive(event)
        sent += translate.end_of_batch()
    return sent


def finals(sent: list[ListenMessage]) -> list[ResultsMessage]:
    return [message for message in sent if isinstance(message, ResultsMessage) and message.is_final]


def test_query_parameters_take_deepgram_values_and_ignore_the_unknown() -> None:
    parsed = params(
        model="nova-3",
        language="en-US",
        encoding="linear16",
        sample_rate="16000",
        interim_results="true",
        endpointing="false",
        utterance_end_ms="1000",
        keyterm=["Kennedy", "fellow Americans"],
        keywords=["inaugural:2.5", "ask"],
        tier="nova",
        numerals="true",
    )
    assert parsed.language == "en" and parsed.sample_rate == 16000 and parsed.interim_results
    assert parsed.endpointing is False and parsed.utterance_end_ms == 1000
    assert parsed.prompt == "Kennedy, fellow Americans, inaugural, ask"
    assert params(language="multi").language is None and params(endpointing="300").endpointing == 300
    assert params(**{"keyterm[]": ["a", "b"]}).keyterm == ["a", "b"]  # as the upload path names them
    overrides = msgspec.json.decode(params(model="whisper-large", diarize="true").finalize_overrides())
    assert overrides == {"diarize": True}
    assert msgspec.json.decode(params(model="small.en").finalize_overrides())["model"] == "small.en"


def test_a_prompt_keeps_whole_terms_within_the_bound() -> None:
    prompt = params(keyterm=[f"term{index:04d}" for index in range(500)]).prompt
    assert (
        prompt is not None
        and len(prompt) <= 1000
        and prompt.endswith(("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
    )
    assert params(keyterm=["  ", ""]).prompt is None


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"encoding": "opus", "sample_rate": "8000"}, "encoding"),
        ({"encoding": "linear16"}, "sample_rate"),
        ({"sample_rate": "abc"}, "sample_rate"),
        ({"channels": "0"}, "channels"),
        ({"interim_results": "maybe"}, "interim_results"),
        ({"utterance_end_ms": "-5"}, "utterance_end_ms"),
        ({"multichannel": "true"}, "multichannel"),
        ({"callback": "http://169.254.169.254/"}, "callback"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(query: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidRequest, match=named):
        params(**query)


def test_words_are_plain_unless_punctuation_is_asked_for() -> None:
    assert [plain_word(text) for text in ("Country.", "Americans,", "don't", "“Ask", "—")] == [
        "country",
        "americans",
        "don't",
        "ask",
        "—",
    ]
    event = Final(seq=2, words=[word("Ask", 0.5), word("not.", 1.0)])
    plain = finals(feed(translator(), [event]))[0]
    punctuated = finals(feed(translator(smart_format="true"), [event]))[0]
    assert plain.channel.alternatives[0].transcript == "ask not"
    assert punctuated.channel.alternatives[0].transcript == "Ask not."
    assert [w.punctuated_word for w in plain.channel.alternatives[0].words] == ["Ask", "not."]


def test_the_final_before_utterance_end_is_speech_final_and_results_tile_the_stream() -> None:
    translate = translator(interim_results="true", vad_events="true", utterance_end_ms="1000")
    sent = feed(
        translate,
        [Ready(seq=1, session_id="s", protocol=1, model="tiny.en", sample_rate=16000)],
        [SpeechStarted(seq=2, at=0.3)],
        [Partial(seq=3, words=[word("and", 0.4), word("so", 0.9)])],
        [Final(seq=4, words=[word("and", 0.4)]), Partial(seq=5, words=[word("so", 0.9)])],
        [Final(seq=6, words=[word("so", 0.9)]), Partial(seq=7, words=[]), UtteranceEnd(seq=8, at=2.5)],
        [Final(seq=9, words=[word("my", 3.0)])],
        [UtteranceEnd(seq=10, at=4.0)],
        [SpeechStarted(seq=11, at=5.0), UtteranceEnd(seq=12, at=6.0)],  # no word: nothing ends
    )
    kinds = [type(message).__name__ for message in sent]
    assert kinds == [
        "SpeechStartedMessage",
        "ResultsMessage",
        "ResultsMessage",
        "ResultsMessage",
        "ResultsMessage",
        "UtteranceEndMessage",
        "ResultsMessage",
        "ResultsMessage",
        "UtteranceEndMessage",
        "SpeechStartedMessage",
    ]
    started = sent[0]
    assert isinstance(started, SpeechStartedMessage) and started.timestamp == 0.3
    results = [message for message in sent if isinstance(message, ResultsMessage)]
    assert [(r.is_final, r.speech_final) for r in results] == [
        (False, False),
        (True, False),
        (False, False),
        (True, True),
        (True, False),  # its utterance goes on: released at the end of its batch
        (True, True),  # the utterance ended after its last words came final: an empty result ends it
    ]
    assert results[-1].channel.alternatives[0].transcript == "" and results[-1].duration == 0
    final_results = [r for r in results if r.is_final]
    for earlier, later in itertools.pairwise(final_results):
        assert later.start == pytest.approx(earlier.start + earlier.duration)
    end = sent[5]
    assert isinstance(end, UtteranceEndMessage) and end.last_word_end == pytest.approx(1.3)
    for message in sent:
        payload = msgspec.json.decode(encode_message(message))
        if payload["type"] == "Results":
            assert ListenV1Results.model_validate(payload).metadata.request_id == "abc"
        elif payload["type"] == "UtteranceEnd":
            ListenV1UtteranceEnd.model_validate(payload)


def test_options_that_are_off_send_nothing_of_theirs() -> None:
    sent = feed(
        translator(endpointing="false"),
        [SpeechStarted(seq=2, at=0.3)],
        [Partial(seq=3, words=[word("and", 0.4)])],
        [Final(seq=4, words=[word("and", 0.4)]), UtteranceEnd(seq=5, at=1.5)],
    )
    assert [type(message) for message in sent] == [ResultsMessage]
    assert not finals(sent)[0].speech_final


def test_the_batch_that_answers_finalize_carries_from_finalize() -> None:
    translate = translator()
    before = feed(translate, [Final(seq=2, words=[word("and", 0.4)])])
    answered = feed(
        translate, [FinalizeAnswered(seq=3), Final(seq=3, words=[word("so", 0.9)]), Partial(seq=4, words=[])]
    )
    after = feed(translate, [Final(seq=5, words=[word("my", 2.0)])])
    assert [r.from_finalize for r in finals(before + answered + after)] == [False, True, False]


def test_an_error_is_reported_and_only_a_clean_end_sends_metadata() -> None:
    clean = feed(translator(), [Final(seq=2, words=[word("and", 0.4)]), Closed(seq=3, audio_s=2.0, words=1)])
    metadata = clean[-1]
    assert isinstance(metadata, MetadataMessage) and metadata.duration == 2.0 and metadata.sha256 == "f" * 64
    ListenV1Metadata.model_validate(msgspec.json.decode(encode_message(metadata)))
    failed = feed(
        translator(),
        [Error(seq=2, code="idle_timeout", message="nothing came"), Closed(seq=3, audio_s=2.0, words=0)],
    )
    assert failed == [ErrorMessage(variant="idle_timeout", description="nothing came", code="NET-0001")]
    refused = feed(translator(), [ControlRefused(seq=0, text="{", reason="not JSON")])
    assert refused == [ErrorMessage(variant="SchemaError", description="not JSON", message="{")]


def test_refusals_and_closes_are_deepgrams() -> None:
    assert http_refusal(InvalidRequest("bad"), "r")[0] == 400
    assert http_refusal(UnsupportedAudio("what"), "r")[1].err_code == "Bad Request"
    assert http_refusal(NoAudioStream("none"), "r")[0] == 400
    assert http_refusal(Unauthorized("who"), "r")[1].err_code == "INVALID_AUTH"
    assert http_refusal(Overloaded("full"), "r")[1].err_code == "TOO_MANY_REQUESTS"
    assert http_refusal(ShuttingDown("bye"), "r")[0] == 503
    assert stream_close(None, "") == (1000, "")
    assert stream_close(UnsupportedAudio.code, "bad audio") == (1008, "DATA-0000: bad audio")
    assert stream_close(IdleTimeout.code, "x" * 300)[0] == 1011
    assert len(stream_close(IdleTimeout.code, "é" * 300)[1].encode()) <= 120
    assert stream_close(ShuttingDown.code, "bye") == (1001, "shutting_down: bye")


def _stored_word(text: str, start: float, speaker: str) -> StoredWord:
    return StoredWord(id=text, text=text, start=start, end=start + 0.3, confidence=0.8, speaker=speaker)


def test_a_transcript_is_answered_in_the_prerecorded_shape() -> None:
    first = [_stored_word("Hello", 0.0, "Speaker 1"), _stored_word("there.", 0.4, "Speaker 1")]
    second = [_stored_word("Hi!", 2.0, "Speaker 2"), _stored_word("Bye.", 2.5, "Speaker 2")]
    segments = [
        Segment(speaker=words[0].speaker, start=words[0].start, end=words[-1].end,
                lines=[Line(start=words[0].start, end=words[-1].end, text=" ".join(w.text for w in words), words=words)])
        for words in (first, second)
    ]  # fmt: skip
    transcript = Transcript(
        id="t1",
        version=2,
        language="en",
        duration_s=3.0,
        layout=CaptionLayout(),
        segments=segments,
        info=VersionInfo(parent=1, created_at=0.0, models={"second_pass": "base"}, settings={}, timings_s={}),
    )
    asked = params(diarize="true", smart_format="true", utterances="true")
    body = msgspec.to_builtins(file_response(transcript, asked, "0" * 64, "2024-01-01T00:00:00.000Z"))
    response = ListenV1Response.model_validate(body)
    [channel] = response.results.channels
    assert channel.alternatives is not None
    best = channel.alternatives[0]
    assert best.transcript == "Hello there. Hi! Bye."
    assert [w.speaker for w in best.words or []] == [0, 0, 1, 1]
    assert best.paragraphs is not None and best.paragraphs.paragraphs is not None
    assert best.paragraphs.transcript == "\nSpeaker 0: Hello there.\n\nSpeaker 1: Hi! Bye."
    assert [len(p.sentences or []) for p in best.paragraphs.paragraphs] == [1, 2]
    utterances = response.results.utterances
    assert utterances is not None and [u.speaker for u in utterances] == [0, 1]
    assert response.metadata.request_id == "t1" and response.metadata.duration == 3.0
    plain = msgspec.to_builtins(file_response(transcript, params(), "0" * 64, "2024-01-01T00:00:00.000Z"))
    alternative = plain["results"]["channels"][0]["alternatives"][0]
    assert alternative["transcript"] == "hello there hi bye" and "paragraphs" not in alternative
    assert all("speaker" not in w for w in alternative["words"]) and "utterances" not in plain["results"]
