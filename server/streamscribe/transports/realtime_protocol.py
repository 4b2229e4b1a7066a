"""OpenAI Realtime transcription sessions, sans I/O: a client's events and our live session's
events in, OpenAI's server events out (`events_to_send`).

Items. OpenAI transcribes the input audio buffer one *item* at a time. With turn detection on
(`server_vad`, the default) an item is one utterance of our session: its `speech_started` is
`input_audio_buffer.speech_started`, its `utterance_end` (sent once its last final is out) is
`speech_stopped`, `committed` and `completed`, in that order. With turn detection off an item is
the audio between two `input_audio_buffer.commit`s: `committed` answers the commit at once, and
`completed` follows when the words heard before the commit are all final. A commit cuts the
utterance going on (LiveSession.receive_cut), so the words of an item are exactly those our
session sends before the `utterance_end` the cut points at. Speech after the cut is a new
utterance (with turn detection on, a new item) only once the VAD says it goes on past the cut: a
push-to-talk commit right after the last word leaves no empty item behind when the VAD's late end
of that word arrives.

Deltas. `...input_audio_transcription.delta` carries an item's final words as our session
commits them, so deltas stream while the person speaks, and may come before the item's
`committed` (as with OpenAI's live transcription models); deltas only ever append, so our
revisable partials are never sent. `completed` carries the whole item: the deltas joined.

Clear. Audio already taken cannot be un-heard: `input_audio_buffer.clear` cuts like a commit,
and the item in progress is dropped: it never gets `committed` or `completed`, and its words not
yet sent as deltas are not sent. The audio and the words stay in the stored recording and
transcript.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from msgspec import UNSET, UnsetType

from ..errors import (
    BadMessage,
    FrameTooLarge,
    ProtocolViolation,
    StreamscribeError,
    UnknownModel,
    UnsupportedAudio,
    error_for,
)
from ..wire import MAX_FRAME_BYTES, Closed, Error, Final, ServerMessage, SpeechStarted, UtteranceEnd, Word
from .openai_audio import OPENAI_MODELS
from .realtime_events import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    AudioInputObject,
    AudioInputUpdate,
    AudioObject,
    BetaSessionObject,
    BetaSessionUpdate,
    BetaSessionUpdated,
    BetaTurnDetection,
    DurationUsage,
    ErrorDetail,
    ErrorEvent,
    InputCleared,
    InputCommitted,
    InputSpeechStarted,
    InputSpeechStopped,
    InvalidEvent,
    NoiseReduction,
    PcmaFormat,
    PcmFormat,
    PcmuFormat,
    ServerEvent,
    ServerVadSettings,
    SessionCreated,
    SessionObject,
    SessionUpdate,
    SessionUpdated,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptFailed,
    TranscriptionSettings,
    parse_client_event,
)

INPUT_SAMPLE_RATE = 24000
"""OpenAI's one PCM rate: 16-bit little-endian mono at 24 kHz."""
MAX_APPEND_BYTES = MAX_FRAME_BYTES
"""Audio one append may carry (about 21 s); a larger one is refused with an `error`."""
_MIN_COMMIT_SAMPLES = INPUT_SAMPLE_RATE // 10
"""A commit needs 100 ms of audio since the last commit or clear, as OpenAI's does."""
REALTIME_MODELS = OPENAI_MODELS | {
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-realtime-whisper",
}
"""OpenAI's transcription models: each means this server's live model."""
_SERVER_CLOSE_CODES = frozenset({1001, 1011, 1013})
"""Going away, internal error, try again later."""


class CommitEmpty(ProtocolViolation):
    """OpenAI's code for a commit with (almost) nothing to commit."""

    code = "input_audio_buffer_commit_empty"


class SessionControl(Protocol):
    """What the protocol asks of the live session behind it (live/driver.py's SessionDriver)."""

    @property
    def speech_start_s(self) -> float | None:
        """Where the speech going on started (its `speech_started` at), or None in silence."""
        ...

    def cut(self) -> float | None:
        """End the utterance here; the `at` of the `utterance_end` after which every word heard
        so far has been sent (None: no speech yet)."""
        ...

    def update_decoding(self, language: str | None, prompt: str | None) -> None: ...


def error_event(
    error: StreamscribeError, param: str | None = None, event_id: str | None = None
) -> ErrorEvent:
    """OpenAI's `error` event for one of our errors: a server_error where the server is at fault
    or going away, an invalid_request_error otherwise."""
    kind = "server_error" if error.close_code in _SERVER_CLOSE_CODES else "invalid_request_error"
    detail = ErrorDetail(type=kind, code=error.code, message=error.message, param=param, event_id=event_id)
    return ErrorEvent(event_id=_new_id("event"), error=detail)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass(slots=True, eq=False)
class _Item:
    """One item of the input audio buffer, from its first audio to its `completed`."""

    id: str
    start_s: float
    words: list[str] = field(default_factory=list)
    """The words sent as its deltas."""
    closed: bool = False
    """Committed or cleared (turn detection off): its words are in once the utterance_end at
    `final_at_s` was seen."""
    final_at_s: float | None = None
    end_s: float = 0.0
    dropped: bool = False
    """Cleared: no more deltas, no `committed`, no `completed`."""


@dataclass(slots=True)
class _Settings:
    """The session's configuration, as session.created and session.updated report it."""

    model: str
    language: str | None
    prompt: str | None
    server_vad: bool = True
    noise_reduction: NoiseReduction | None = None


@dataclass(frozen=True, slots=True)
class _Change:
    """A session.update of either form, checked for what this server serves."""

    transcription: tuple[str | None, str | None, str | None] | None
    """model, language, prompt; None: unchanged."""
    transcription_param: str
    server_vad: bool | None
    """None: unchanged."""
    turn_detection_param: str
    noise_reduction: NoiseReduction | UnsetType | None


class RealtimeProtocol:
    """One transcription session. Feed `receive_client_event` (it returns the audio to feed the
    live session) and `receive_session_event` (every event of the live session, in order); send
    `events_to_send()` after each. `session.created` is queued at once. `check_language` gives the
    language to decode for the one a client asks for (the server's default for None), or raises
    UnsupportedLanguage."""

    def __init__(
        self,
        session_id: str,
        engine_name: str,
        vad: ServerVadSettings,
        control: SessionControl,
        check_language: Callable[[str | None], str | None],
    ) -> None:
        self._session_id = session_id
        self._engine_name = engine_name
        self._vad = vad
        self._control = control
        self._check_language = check_language
        self._settings = _Settings(model=engine_name, language=check_language(None), prompt=None)
        self._items: deque[_Item] = deque()
        """Items not completed yet, oldest first: our session's words go to the first."""
        self._dropped_starts: set[float] = set()
        """Utterances cleared (turn detection on) whose speech_started is still to come."""
        self._previous_item_id: str | None = None
        self._last_utterance_end_s = -1.0
        self._appended_samples = 0
        self._cut_at_samples = 0
        """Audio appended up to the last commit or clear."""
        self._end_error: ErrorDetail | None = None
        self._events: list[ServerEvent] = [SessionCreated(event_id=_new_id("event"), session=self._session())]

    def events_to_send(self) -> list[ServerEvent]:
        events, self._events = self._events, []
        return events

    # ---- the client's events --------------------------------------------------------------------

    def receive_client_event(self, data: str | bytes) -> bytes:
        """One event from the client; returns the 24 kHz PCM it appends (b"" for other events).
        A bad event is answered with an `error`; the session goes on."""
        try:
            match parse_client_event(data):
                case AudioAppend() as append:
                    return self._append(append)
                case AudioCommit(event_id=event_id):
                    self._commit(event_id)
                case AudioClear():
                    self._clear()
                case SessionUpdate(event_id=event_id, session=session):
                    audio_input = session.audio.input if session.audio and session.audio.input else None
                    self._update(self._ga_change(audio_input or AudioInputUpdate(), event_id), event_id)
                    self._emit(SessionUpdated, session=self._session())
                case BetaSessionUpdate(event_id=event_id) as update:
                    self._update(self._beta_change(update), event_id)
                    self._emit(BetaSessionUpdated, session=self._beta_session())
        except InvalidEvent as refused:
            self._events.append(error_event(refused.error, refused.param, refused.event_id))
        return b""

    def _append(self, append: AudioAppend) -> bytes:
        if len(append.audio) // 4 * 3 > MAX_APPEND_BYTES:
            too_large = FrameTooLarge(f"an append carries at most {MAX_APPEND_BYTES} bytes of audio")
            raise InvalidEvent(too_large, "audio", append.event_id)
        try:
            audio = base64.b64decode(append.audio, validate=True)
        except binascii.Error as exc:
            raise InvalidEvent(
                BadMessage(f"audio is not valid base64 ({exc})"), "audio", append.event_id
            ) from exc
        self._appended_samples += len(audio) // 2
        return audio

    def _commit(self, event_id: str | None) -> None:
        uncut_samples = self._appended_samples - self._cut_at_samples
        if uncut_samples < _MIN_COMMIT_SAMPLES:
            uncut_ms = uncut_samples * 1000 // INPUT_SAMPLE_RATE
            error = CommitEmpty(
                f"nothing to commit: 100 ms of audio is needed, {uncut_ms} ms came since the last commit"
            )
            raise InvalidEvent(error, None, event_id)
        if self._settings.server_vad:
            if self._control.speech_start_s is None:
                raise InvalidEvent(
                    CommitEmpty("nothing to commit: no speech since the last item"), None, event_id
                )
            self._control.cut()  # the utterance's utterance_end completes its item as usual
        else:
            item = self._close_uncommitted_item()
            self._emit(InputCommitted, item_id=item.id, previous_item_id=self._previous_item_id)
            self._previous_item_id = item.id
            self._complete_items()
        self._cut_at_samples = self._appended_samples

    def _clear(self) -> None:
        if self._appended_samples > self._cut_at_samples:
            if not self._settings.server_vad:
                self._close_uncommitted_item().dropped = True
                self._complete_items()
            elif (speech_start_s := self._control.speech_start_s) is not None:
                self._control.cut()
                self._drop_utterance(speech_start_s)
        self._cut_at_samples = self._appended_samples
        self._emit(InputCleared)

    def _close_uncommitted_item(self) -> _Item:
        """Turn detection off: cut the audio here; the item it ends waits for its last words."""
        last = self._items[-1] if self._items else None
        item = last if last is not None and not last.closed else self._add_item(self._cut_at_s)
        item.closed = True
        item.final_at_s = self._control.cut()
        item.end_s = self._appended_samples / INPUT_SAMPLE_RATE
        return item

    def _drop_utterance(self, start_s: float) -> None:
        """Turn detection on: the utterance that started at `start_s` is cleared."""
        item = next((item for item in self._items if item.start_s == start_s), None)
        if item is None:
            self._dropped_starts.add(start_s)
        else:
            item.dropped = True

    @property
    def _cut_at_s(self) -> float:
        return self._cut_at_samples / INPUT_SAMPLE_RATE

    # ---- session.update -------------------------------------------------------------------------

    def _ga_change(self, audio_input: AudioInputUpdate, event_id: str | None) -> _Change:
        match audio_input.format:
            case PcmFormat(rate=rate) if rate != INPUT_SAMPLE_RATE:
                error = UnsupportedAudio(f"audio/pcm is taken at {INPUT_SAMPLE_RATE} Hz only, not {rate} Hz")
                raise InvalidEvent(error, "session.audio.input.format.rate", event_id)
            case PcmuFormat() | PcmaFormat():
                error = UnsupportedAudio(
                    f"G.711 (audio/pcmu, audio/pcma) is not supported: send audio/pcm at {INPUT_SAMPLE_RATE} Hz"
                )
                raise InvalidEvent(error, "session.audio.input.format.type", event_id)
        wanted = audio_input.transcription
        return _Change(
            transcription=None if wanted is None else (wanted.model, wanted.language, wanted.prompt),
            transcription_param="session.audio.input.transcription",
            server_vad=None
            if audio_input.turn_detection is UNSET
            else audio_input.turn_detection is not None,
            turn_detection_param="session.audio.input.turn_detection",
            noise_reduction=audio_input.noise_reduction,
        )

    def _beta_change(self, update: BetaSessionUpdate) -> _Change:
        session = update.session
        if session.input_audio_format not in (UNSET, "pcm16"):
            error: StreamscribeError = UnsupportedAudio(
                f"input_audio_format {session.input_audio_format!r} is not supported: send pcm16 at 24 kHz"
            )
            raise InvalidEvent(error, "session.input_audio_format", update.event_id)
        turn = session.turn_detection
        if isinstance(turn, BetaTurnDetection) and turn.type not in (None, "server_vad", "semantic_vad"):
            error = ProtocolViolation(
                f"turn_detection type {turn.type!r} is not supported: use server_vad or null"
            )
            raise InvalidEvent(error, "session.turn_detection.type", update.event_id)
        wanted = session.input_audio_transcription
        return _Change(
            transcription=None if wanted is None else (wanted.model, wanted.language, wanted.prompt),
            transcription_param="session.input_audio_transcription",
            server_vad=None if turn is UNSET else turn is not None,
            turn_detection_param="session.turn_detection",
            noise_reduction=session.input_audio_noise_reduction,
        )

    def _update(self, change: _Change, event_id: str | None) -> None:
        """Check the whole change, then apply it (a refused update changes nothing)."""
        settings = self._settings
        if (
            change.server_vad is not None
            and change.server_vad != settings.server_vad
            and self._appended_samples
        ):
            error: StreamscribeError = ProtocolViolation(
                "turn_detection cannot change once audio was appended: set it first, or connect again"
            )
            raise InvalidEvent(error, change.turn_detection_param, event_id)
        if change.transcription is not None:
            model, requested_language, prompt = change.transcription
            model = model or settings.model
            if model not in REALTIME_MODELS and model != self._engine_name:
                error = UnknownModel(
                    f"this server transcribes with {self._engine_name!r}: ask for it, or for one of OpenAI's "
                    f"transcription models (whisper-1, gpt-4o-transcribe, ...), not {model!r}"
                )
                raise InvalidEvent(error, change.transcription_param + ".model", event_id)
            try:
                language = self._check_language(requested_language)
            except StreamscribeError as exc:
                raise InvalidEvent(exc, change.transcription_param + ".language", event_id) from exc
            if (language, prompt) != (settings.language, settings.prompt):
                self._control.update_decoding(language, prompt)
            settings.model, settings.language, settings.prompt = model, language, prompt
        if change.server_vad is not None:
            settings.server_vad = change.server_vad
        if change.noise_reduction is not UNSET:
            settings.noise_reduction = change.noise_reduction

    def _transcription(self) -> TranscriptionSettings:
        settings = self._settings
        return TranscriptionSettings(model=settings.model, language=settings.language, prompt=settings.prompt)

    def _session(self) -> SessionObject:
        audio_input = AudioInputObject(
            format=PcmFormat(rate=INPUT_SAMPLE_RATE),
            transcription=self._transcription(),
            turn_detection=self._vad if self._settings.server_vad else None,
            noise_reduction=self._settings.noise_reduction,
        )
        return SessionObject(id=self._session_id, audio=AudioObject(input=audio_input))

    def _beta_session(self) -> BetaSessionObject:
        return BetaSessionObject(
            id=self._session_id,
            input_audio_transcription=self._transcription(),
            turn_detection=self._vad if self._settings.server_vad else None,
            input_audio_noise_reduction=self._settings.noise_reduction,
        )

    # ---- our session's events -------------------------------------------------------------------

    def receive_session_event(self, event: ServerMessage) -> None:
        """The next event of the live session (partials and the rest are not OpenAI's)."""
        match event:
            case SpeechStarted(at=at) if self._settings.server_vad:
                item = self._add_item(at)
                if at in self._dropped_starts:
                    self._dropped_starts.discard(at)
                    item.dropped = True
            case Final(words=words):
                self._add_words(self._items[0] if self._items else self._add_item(self._cut_at_s), words)
            case UtteranceEnd(at=at):
                self._last_utterance_end_s = at
                if self._settings.server_vad:
                    self._end_utterance(at)
                else:
                    self._complete_items()
            case Error(code=code, message=message):
                refusal = error_event(error_for(code, message))
                self._end_error = refusal.error
                self._events.append(refusal)
            case Closed():
                self._fail_waiting_items()

    def _add_item(self, start_s: float) -> _Item:
        item = _Item(_new_id("item"), start_s)
        self._items.append(item)
        if len(self._items) == 1:
            self._announce(item)
        return item

    def _announce(self, item: _Item) -> None:
        """Turn detection on: an utterance's speech_started goes out once the one before it is
        completed, so that each item's events come together."""
        if self._settings.server_vad:
            self._emit(InputSpeechStarted, audio_start_ms=round(item.start_s * 1000), item_id=item.id)

    def _add_words(self, item: _Item, words: list[Word]) -> None:
        if item.dropped or not words:
            return
        text = " ".join(word.text for word in words)
        self._emit(TranscriptDelta, item_id=item.id, delta=f" {text}" if item.words else text)
        item.words.extend(word.text for word in words)

    def _end_utterance(self, at: float) -> None:
        if not self._items:
            return
        item = self._items.popleft()
        item.end_s = at
        self._emit(InputSpeechStopped, audio_end_ms=round(at * 1000), item_id=item.id)
        if not item.dropped:
            self._emit(InputCommitted, item_id=item.id, previous_item_id=self._previous_item_id)
            self._previous_item_id = item.id
            self._complete(item)
        if self._items:
            self._announce(self._items[0])

    def _complete_items(self) -> None:
        """Turn detection off: complete the items, oldest first, whose last words are in."""
        while self._items and self._items[0].closed:
            final_at_s = self._items[0].final_at_s
            if final_at_s is not None and final_at_s > self._last_utterance_end_s:
                return
            item = self._items.popleft()
            if not item.dropped:
                self._complete(item)

    def _complete(self, item: _Item) -> None:
        usage = DurationUsage(seconds=round(max(0.0, item.end_s - item.start_s), 3))
        self._emit(TranscriptCompleted, item_id=item.id, transcript=" ".join(item.words), usage=usage)

    def _fail_waiting_items(self) -> None:
        """The session ended (an error) before the last words of committed items came."""
        reason = self._end_error or ErrorDetail(
            type="server_error",
            code="internal_error",
            message="the session ended before the item was transcribed",
        )
        for item in self._items:
            if item.closed and not item.dropped:
                self._emit(TranscriptFailed, item_id=item.id, error=reason)
        self._items.clear()

    def _emit(self, kind: type[ServerEvent], **fields: Any) -> None:
        self._events.append(kind(event_id=_new_id("event"), **fields))
