"""A live session's events as Deepgram's streaming messages, sans-I/O: feed `receive` every event
in order and call `end_of_batch` whenever no further event is waiting; send what they return.

partial -> interim Results (is_final false), final -> Results (is_final true), speech_started ->
SpeechStarted, utterance_end -> UtteranceEnd, closed -> Metadata, error -> Error. A session
emits the final that ends an utterance together with its utterance_end, so a final is held
until the next event (or the end of the batch) shows whether it was the last one: that one is
speech_final. The Results of the batch in which the session answers a client's Finalize carry
from_finalize.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from ..wire import (
    Closed,
    Error,
    Final,
    Partial,
    ServerMessage,
    SpeechStarted,
    UtteranceEnd,
    Word,
)
from .deepgram_shape import (
    Alternative,
    ListenMetadata,
    ListenParams,
    ModelInfo,
    alternative,
    created_now,
    deepgram_error_code,
    listen_word,
)

_CHANNEL = [0, 1]
"""channel_index and channel of every message: channel 0 of 1 (the channels are mixed)."""

# ---- client to server ---------------------------------------------------------------------------


class ListenControl(msgspec.Struct, tag_field="type", frozen=True):
    """A text frame of a Deepgram client (fields this server has no use for are ignored)."""


class KeepAlive(ListenControl, tag="KeepAlive", frozen=True):
    """Nothing to do: any frame keeps the stream from timing out."""


class FinalizeStream(ListenControl, tag="Finalize", frozen=True):
    """Commit everything heard so far."""


class CloseStream(ListenControl, tag="CloseStream", frozen=True):
    """End of audio: the remaining finals, Metadata, then close 1000."""


class Configure(ListenControl, tag="Configure", frozen=True):
    """Change keyterms or formatting mid-stream: refused here (they are fixed when it opens)."""

    keyterms: list[str] | None = None
    features: dict[str, bool] | None = None


_controls = msgspec.json.Decoder(KeepAlive | FinalizeStream | CloseStream | Configure)


def parse_control(data: str) -> ListenControl:
    """The client's message; raises msgspec.DecodeError / ValidationError (or RecursionError on
    deep nesting) for one it cannot be."""
    control: ListenControl = _controls.decode(data)
    return control


# ---- server to client ---------------------------------------------------------------------------


class ListenMessage(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every text frame this server sends a Deepgram client."""


class ResultsChannel(msgspec.Struct, frozen=True, kw_only=True):
    alternatives: list[Alternative]


class ResultsMetadata(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    model_info: ModelInfo
    model_uuid: str


class ResultsMessage(ListenMessage, tag="Results", frozen=True, kw_only=True):
    channel_index: list[int]
    duration: float
    start: float
    is_final: bool
    speech_final: bool
    channel: ResultsChannel
    metadata: ResultsMetadata
    from_finalize: bool


class SpeechStartedMessage(ListenMessage, tag="SpeechStarted", frozen=True, kw_only=True):
    channel: list[int]
    timestamp: float


class UtteranceEndMessage(ListenMessage, tag="UtteranceEnd", frozen=True, kw_only=True):
    channel: list[int]
    last_word_end: float


class MetadataMessage(ListenMetadata, ListenMessage, tag="Metadata", frozen=True, kw_only=True):
    """The last message of a stream that ended normally (after CloseStream)."""


class ErrorMessage(ListenMessage, tag="Error", frozen=True, kw_only=True, omit_defaults=True):
    variant: str
    """Our error code (unsupported_audio, idle_timeout...), or SchemaError for a client message
    that could not be read."""
    description: str
    code: str | None = None
    """Deepgram's payload code (DATA-0000, NET-0001) where it has one."""
    message: str | None = None
    """For SchemaError: the client message."""


class ConfigureFailureMessage(ListenMessage, tag="ConfigureFailure", frozen=True, kw_only=True):
    request_id: str
    code: str
    description: str


_encoder = msgspec.json.Encoder()


def encode_message(message: ListenMessage) -> str:
    return _encoder.encode(message).decode()


# ---- what the transport marks in the event stream -----------------------------------------------


class FinalizeAnswered(ServerMessage, tag="deepgram_finalize_answered", frozen=True):
    """Put before the first event of the batch in which the session answered a client's Finalize
    (never sent as such, never stored)."""


class ControlRefused(ServerMessage, tag="deepgram_control_refused", frozen=True):
    """A client message that is not taken (`configure` set for a Configure), answered in the
    order of the session's events."""

    text: str
    reason: str
    configure: bool = False


# ---- the translation ----------------------------------------------------------------------------


class StreamIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """What every message of one stream says about it."""

    request_id: str
    model_uuid: str
    model_info: ModelInfo
    channels: int
    created: str = msgspec.field(default_factory=created_now)


class ResultsTranslator:
    """Our events in, Deepgram's messages out (see the module): `receive` each event in order,
    `end_of_batch` when none is waiting. `audio_sha256` gives the SHA-256 of the audio received
    (for the closing Metadata)."""

    def __init__(
        self, params: ListenParams, identity: StreamIdentity, audio_sha256: Callable[[], str]
    ) -> None:
        self._params = params
        self._identity = identity
        self._metadata = ResultsMetadata(
            request_id=identity.request_id, model_info=identity.model_info, model_uuid=identity.model_uuid
        )
        self._held: list[Word] | None = None
        """The newest final, until it is known whether its utterance ended with it."""
        self._results_end_s = 0.0
        """Where the last final result ended: the next result starts there."""
        self._last_word_end_s: float | None = None
        """The end of the newest final word since the last UtteranceEnd (None: no word since)."""
        self._answering_finalize = False
        self._audio_sha256 = audio_sha256
        self._failed = False

    def receive(self, event: ServerMessage) -> list[ListenMessage]:
        """The messages `event` makes, in order (a held final may come out first)."""
        match event:
            case Final(words=words):
                sent = self._release(speech_final=False)
                self._held = words
                return sent
            case Partial(words=[]):
                return []  # the tail was committed: the final it came with may still end an utterance
            case Partial(words=words):
                sent = self._release(speech_final=False)
                if self._params.interim_results:
                    sent.append(self._results(words, is_final=False, speech_final=False))
                return sent
            case UtteranceEnd():  # its `at` is where silence began: Deepgram gives the last word's end
                return self._end_utterance()
            case SpeechStarted(at=at):
                sent = self._release(speech_final=False)
                if self._params.vad_events:
                    sent.append(SpeechStartedMessage(channel=_CHANNEL, timestamp=at))
                return sent
            case Error(code=code, message=message):
                self._failed = True
                sent = self._release(speech_final=False)
                sent.append(ErrorMessage(variant=code, description=message, code=deepgram_error_code(code)))
                return sent
            case Closed(audio_s=audio_s):
                sent = self._release(speech_final=False)
                if not self._failed:
                    sent.append(self._closing_metadata(audio_s))
                return sent
            case FinalizeAnswered():
                sent = self._release(speech_final=False)
                self._answering_finalize = True
                return sent
            case ControlRefused(reason=reason, configure=True):
                return [
                    *self._release(speech_final=False),
                    ConfigureFailureMessage(
                        request_id=self._identity.request_id,
                        code="CONFIGURE_KEYTERMS_NOT_SUPPORTED",
                        description=reason,
                    ),
                ]
            case ControlRefused(text=text, reason=reason):
                return [
                    *self._release(speech_final=False),
                    ErrorMessage(variant="SchemaError", description=reason, message=text),
                ]
        return []  # ready and the second pass's events say nothing to a Deepgram client

    def _end_utterance(self) -> list[ListenMessage]:
        """The held final is speech_final; an utterance whose last words came final earlier
        ends with an empty speech_final Results (as Deepgram's endpointing sends them)."""
        endpointing = self._params.endpointing is not False
        sent = self._release(speech_final=endpointing)
        if self._last_word_end_s is None:
            return sent  # no word since the last utterance ended: nothing to end
        if not sent and endpointing:
            sent.append(self._results([], is_final=True, speech_final=True))
        if self._params.utterance_end_ms is not None:
            sent.append(UtteranceEndMessage(channel=_CHANNEL, last_word_end=self._last_word_end_s))
        self._last_word_end_s = None
        return sent

    def end_of_batch(self) -> list[ListenMessage]:
        """No event waits: a held final did not end its utterance."""
        sent = self._release(speech_final=False)
        self._answering_finalize = False
        return sent

    def _release(self, speech_final: bool) -> list[ListenMessage]:
        if self._held is None:
            return []
        words, self._held = self._held, None
        self._last_word_end_s = words[-1].end
        return [self._results(words, is_final=True, speech_final=speech_final)]

    def _results(self, words: list[Word], is_final: bool, speech_final: bool) -> ResultsMessage:
        start_s = self._results_end_s
        end_s = max(start_s, words[-1].end) if words else start_s
        if is_final:
            self._results_end_s = end_s
        shaped = [listen_word(word.text, word.start, word.end, word.confidence) for word in words]
        return ResultsMessage(
            channel_index=_CHANNEL,
            duration=round(end_s - start_s, 3),
            start=round(start_s, 3),
            is_final=is_final,
            speech_final=speech_final,
            channel=ResultsChannel(alternatives=[alternative(shaped, self._params.punctuated)]),
            metadata=self._metadata,
            from_finalize=is_final and self._answering_finalize,
        )

    def _closing_metadata(self, audio_s: float) -> MetadataMessage:
        identity = self._identity
        return MetadataMessage(
            request_id=identity.request_id,
            sha256=self._audio_sha256(),
            created=identity.created,
            duration=audio_s,
            channels=identity.channels,
            models=[identity.model_uuid],
            model_info={identity.model_uuid: identity.model_info},
        )
