"""The events of OpenAI's Realtime API that a transcription session uses, as msgspec Structs:
what a client may send (GA `session.update`, beta `transcription_session.update`, and the input
audio buffer), parsed once by `parse_client_event`; and what the server sends, encoded by
`encode_event`. Field names and shapes follow the official openai SDK's types (openai.types.
realtime, and openai.types.beta.realtime for the beta form).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ..errors import BadMessage, ProtocolViolation, StreamscribeError
from ..wire import Prompt

CONVERSATION_EVENTS = frozenset(
    {
        "conversation.item.create",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "output_audio_buffer.clear",
        "response.cancel",
        "response.create",
    }
)
"""Client events of conversation sessions: answered with an `error`, as this server only transcribes."""


class InvalidEvent(Exception):
    """A client event that is refused: answer it with an `error` event; the session goes on."""

    def __init__(
        self, error: StreamscribeError, param: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.param = param
        self.event_id = event_id


# ---- session configuration, both directions ------------------------------------------------------


class PcmFormat(msgspec.Struct, tag="audio/pcm", tag_field="type", forbid_unknown_fields=True, frozen=True):
    rate: int = 24000


class PcmuFormat(msgspec.Struct, tag="audio/pcmu", tag_field="type", forbid_unknown_fields=True, frozen=True):
    """G.711 mu-law: refused here."""


class PcmaFormat(msgspec.Struct, tag="audio/pcma", tag_field="type", forbid_unknown_fields=True, frozen=True):
    """G.711 A-law: refused here."""


AudioFormat = PcmFormat | PcmuFormat | PcmaFormat


class NoiseReduction(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Accepted and reported back; the audio is not filtered."""

    type: Literal["near_field", "far_field"] | None = None
    strength: float | None = None


class TranscriptionSettings(msgspec.Struct, frozen=True):
    """The transcription part of a session as the server reports it."""

    model: str
    language: str | None
    prompt: str | None


class ServerVadSettings(msgspec.Struct, tag="server_vad", tag_field="type", frozen=True):
    """Turn detection as the server reports it: the VAD settings it really uses."""

    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int


# ---- client to server ----------------------------------------------------------------------------


class TranscriptionRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """audio.input.transcription of a GA session.update; delay, keywords and languages are
    accepted and ignored."""

    model: str | None = None
    language: str | None = None
    prompt: Prompt | None = None
    delay: str | None = None
    keywords: list[str] | None = None
    languages: list[str] | None = None


class ServerVad(msgspec.Struct, tag="server_vad", tag_field="type", forbid_unknown_fields=True, frozen=True):
    """Asked for: its numbers are accepted, the server's own VAD settings are used."""

    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = None


class SemanticVad(
    msgspec.Struct, tag="semantic_vad", tag_field="type", forbid_unknown_fields=True, frozen=True
):
    """Served as server_vad (there is no turn model here)."""

    eagerness: str | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class AudioInputUpdate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: AudioFormat | UnsetType = UNSET
    noise_reduction: NoiseReduction | UnsetType | None = UNSET
    transcription: TranscriptionRequest | None = None
    turn_detection: ServerVad | SemanticVad | UnsetType | None = UNSET


class AudioUpdate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    input: AudioInputUpdate | None = None


class TranscriptionSessionUpdate(
    msgspec.Struct, tag="transcription", tag_field="type", forbid_unknown_fields=True, frozen=True
):
    """The session of a GA session.update; only what is present changes."""

    audio: AudioUpdate | None = None
    include: list[str] | None = None


class BetaTranscription(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    model: str | None = None
    language: str | None = None
    prompt: Prompt | None = None


class BetaTurnDetection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    type: str | None = None
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    eagerness: str | None = None


class BetaTranscriptionSession(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The session of a beta transcription_session.update; only what is present changes."""

    input_audio_format: str | UnsetType = UNSET
    input_audio_transcription: BetaTranscription | None = None
    turn_detection: BetaTurnDetection | UnsetType | None = UNSET
    input_audio_noise_reduction: NoiseReduction | UnsetType | None = UNSET
    include: list[str] | None = None
    modalities: list[str] | None = None
    client_secret: dict[str, Any] | None = None


class ClientEvent(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True, kw_only=True):
    event_id: str | None = None
    """The client's own id of the event: an `error` about it carries it back."""


class SessionUpdate(ClientEvent, tag="session.update", frozen=True):
    session: TranscriptionSessionUpdate


class BetaSessionUpdate(ClientEvent, tag="transcription_session.update", frozen=True):
    session: BetaTranscriptionSession


class AudioAppend(ClientEvent, tag="input_audio_buffer.append", frozen=True):
    audio: str
    """Base64 of the audio bytes, in the session's format."""


class AudioCommit(ClientEvent, tag="input_audio_buffer.commit", frozen=True):
    pass


class AudioClear(ClientEvent, tag="input_audio_buffer.clear", frozen=True):
    pass


ClientUnion = SessionUpdate | BetaSessionUpdate | AudioAppend | AudioCommit | AudioClear


class _Envelope(msgspec.Struct):
    """What any JSON object a client sends is read as, to say what was wrong with it."""

    type: str | None = None
    event_id: str | None = None


_client_decoder = msgspec.json.Decoder(ClientUnion)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_KNOWN_TYPES = frozenset(
    kind.__struct_config__.tag
    for kind in (SessionUpdate, BetaSessionUpdate, AudioAppend, AudioCommit, AudioClear)
)
_ERROR_PATH = re.compile(r" - at `\$\.?(?P<param>[^`]*)`$")


def parse_client_event(data: str | bytes) -> ClientEvent:
    """The event, or InvalidEvent saying what is wrong with it (and where, as `param`)."""
    try:
        event: ClientEvent = _client_decoder.decode(data)
        return event
    except RecursionError as exc:
        raise InvalidEvent(BadMessage("not a valid event: JSON nested too deeply")) from exc
    except msgspec.ValidationError as exc:  # before DecodeError, its base
        raise _explained(data, exc) from exc
    except msgspec.DecodeError as exc:
        raise InvalidEvent(BadMessage(f"not valid JSON: {exc}")) from exc


def _explained(data: str | bytes, exc: msgspec.ValidationError) -> InvalidEvent:
    try:
        envelope = _envelope_decoder.decode(data)
    except (msgspec.ValidationError, RecursionError):
        return InvalidEvent(BadMessage("an event is a JSON object with a `type`"))
    if envelope.type is None:
        return InvalidEvent(BadMessage("an event needs a `type`"), "type", envelope.event_id)
    if envelope.type in CONVERSATION_EVENTS:
        error = ProtocolViolation(
            f"{envelope.type} belongs to conversation sessions: this server only transcribes"
        )
        return InvalidEvent(error, "type", envelope.event_id)
    if envelope.type not in _KNOWN_TYPES:
        return InvalidEvent(BadMessage(f"unknown event type {envelope.type!r}"), "type", envelope.event_id)
    reason = str(exc)
    match = _ERROR_PATH.search(reason)
    param = (match["param"] or None) if match else None
    return InvalidEvent(BadMessage(f"invalid {envelope.type}: {reason}"), param, envelope.event_id)


# ---- server to client ----------------------------------------------------------------------------


class AudioInputObject(msgspec.Struct, frozen=True):
    format: PcmFormat
    transcription: TranscriptionSettings
    turn_detection: ServerVadSettings | None
    noise_reduction: NoiseReduction | None


class AudioObject(msgspec.Struct, frozen=True):
    input: AudioInputObject


class SessionObject(msgspec.Struct, frozen=True, kw_only=True):
    """A GA transcription session; `id` is the stored transcript's id too."""

    id: str
    object: str = "realtime.transcription_session"
    type: str = "transcription"
    audio: AudioObject


class BetaSessionObject(msgspec.Struct, frozen=True, kw_only=True):
    """A beta transcription session."""

    id: str
    object: str = "realtime.transcription_session"
    input_audio_format: str = "pcm16"
    input_audio_transcription: TranscriptionSettings
    turn_detection: ServerVadSettings | None
    input_audio_noise_reduction: NoiseReduction | None
    modalities: tuple[str, ...] = ("text",)


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    """invalid_request_error (the client's doing) or server_error."""
    code: str
    """One of errors.py's codes, or OpenAI's input_audio_buffer_commit_empty."""
    message: str
    param: str | None = None
    event_id: str | None = None
    """The client's event_id of the event at fault."""


class DurationUsage(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "duration"
    seconds: float


class ServerEvent(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    event_id: str


class SessionCreated(ServerEvent, tag="session.created", frozen=True):
    session: SessionObject


class SessionUpdated(ServerEvent, tag="session.updated", frozen=True):
    session: SessionObject


class BetaSessionUpdated(ServerEvent, tag="transcription_session.updated", frozen=True):
    session: BetaSessionObject


class InputSpeechStarted(ServerEvent, tag="input_audio_buffer.speech_started", frozen=True):
    audio_start_ms: int
    item_id: str


class InputSpeechStopped(ServerEvent, tag="input_audio_buffer.speech_stopped", frozen=True):
    audio_end_ms: int
    item_id: str


class InputCommitted(ServerEvent, tag="input_audio_buffer.committed", frozen=True):
    item_id: str
    previous_item_id: str | None


class InputCleared(ServerEvent, tag="input_audio_buffer.cleared", frozen=True):
    pass


class TranscriptDelta(ServerEvent, tag="conversation.item.input_audio_transcription.delta", frozen=True):
    item_id: str
    delta: str
    content_index: int = 0


class TranscriptCompleted(
    ServerEvent, tag="conversation.item.input_audio_transcription.completed", frozen=True
):
    item_id: str
    transcript: str
    usage: DurationUsage
    content_index: int = 0


class TranscriptFailed(ServerEvent, tag="conversation.item.input_audio_transcription.failed", frozen=True):
    item_id: str
    error: ErrorDetail
    content_index: int = 0


class ErrorEvent(ServerEvent, tag="error", frozen=True):
    error: ErrorDetail


_encoder = msgspec.json.Encoder()


def encode_event(event: ServerEvent) -> str:
    return _encoder.encode(event).decode()
