"""Deepgram's /v1/listen as data: its query parameters, the JSON it sends and takes, its error
bodies and close codes, and how our words look in it. Pure: no I/O (deepgram_live.py and
deepgram_prerecorded.py move the bytes).

The shapes follow what the official SDKs parse (deepgram-sdk 7.x: ListenV1Results,
ListenV1Response...). Fields this server has no value for are left out where the SDK allows it.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from .. import __version__
from ..errors import (
    EmptyUpload,
    FrameTooLarge,
    IdleTimeout,
    InvalidRequest,
    NoAudioStream,
    StreamscribeError,
    UnknownModel,
    UnsupportedAudio,
    UnsupportedLanguage,
    UnsupportedMediaType,
    UploadInterrupted,
    error_for,
)

# ---- query parameters ---------------------------------------------------------------------------

ENCODINGS = {"linear16": "pcm_s16le", "linear32": "pcm_f32le", "mulaw": "pcm_mulaw", "alaw": "pcm_alaw"}
"""Deepgram's raw encodings this server decodes, as our PcmConverter names them (linear32 is
Deepgram's 32-bit float; mulaw and alaw are telephony's G.711)."""
REPEATED_PARAMETERS = frozenset({"keyterm", "keywords"})
"""Parameters a client repeats for several values (keyterm=a&keyterm=b)."""
DEEPGRAM_MODEL_FAMILIES = ("nova-3", "nova-2", "nova", "enhanced", "base", "whisper")
DEEPGRAM_USE_CASES = frozenset(
    {
        "general", "meeting", "phonecall", "finance", "conversationalai", "voicemail", "video",
        "medical", "drivethru", "automotive", "atc",
    }
)  # fmt: skip
"""Deepgram's model names (nova-3, nova-2-meeting, whisper-large, phonecall...): all of them
mean this server's own model."""
_PROMPT_CHARS = 1000
"""The bound of a prompt a client may give (wire.Prompt)."""


class ListenParams(msgspec.Struct, frozen=True, kw_only=True):
    """The query parameters of /v1/listen (live and prerecorded) that change what this server
    does; Deepgram's others are accepted and ignored. Implements uploads.ReplayRequest."""

    model: str | None = None
    requested_language: str | None = msgspec.field(default=None, name="language")
    """A BCP-47 tag (en-US) or `multi`."""
    encoding: str | None = None
    sample_rate: Annotated[int, msgspec.Meta(ge=1)] | None = None
    channels: Annotated[int, msgspec.Meta(ge=1)] = 1
    multichannel: bool = False
    interim_results: bool = False
    punctuate: bool = False
    smart_format: bool = False
    endpointing: Annotated[int, msgspec.Meta(ge=0)] | bool = True
    """Milliseconds, or false: no result is marked speech_final (utterances end where this
    server's voice detection hears silence, whatever the milliseconds)."""
    utterance_end_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    vad_events: bool = False
    diarize: bool = False
    diarize_model: str | None = None
    paragraphs: bool = False
    utterances: bool = False
    detect_language: bool = False
    keyterm: list[str] = msgspec.field(default_factory=list)
    keywords: list[str] = msgspec.field(default_factory=list)
    callback: str | None = None

    def __post_init__(self) -> None:
        if self.callback is not None:
            raise ValueError("callback is not offered: this server never calls a URL a client names")
        if self.multichannel:
            raise ValueError("multichannel=true is not offered: the channels are mixed into one")
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise ValueError(
                f"encoding {self.encoding!r} is not decoded here; stream {' or '.join(ENCODINGS)}"
            )
        if self.encoding is not None and self.sample_rate is None:
            raise ValueError("sample_rate is required with encoding")

    @property
    def language(self) -> str | None:
        """The Whisper code of the requested language (en-US: en); None: the server's default."""
        tag = self.requested_language
        if tag is None or tag.lower() == "multi":
            return None
        return tag.replace("_", "-").split("-")[0].lower()

    @property
    def prompt(self) -> str | None:
        """keyterm and keywords (intensifiers cut off) as one decode prompt, of whole terms."""
        terms = [*self.keyterm, *(_without_intensifier(word) for word in self.keywords)]
        prompt = ""
        for term in filter(None, (term.strip() for term in terms)):
            joined = f"{prompt}, {term}" if prompt else term
            if len(joined) > _PROMPT_CHARS:
                break
            prompt = joined
        return prompt or None

    @property
    def speed(self) -> Literal["max", "realtime"]:
        return "max"

    @property
    def audio_retention_h(self) -> float | None:
        return None

    @property
    def wants_diarization(self) -> bool:
        return self.diarize or self.diarize_model is not None

    @property
    def punctuated(self) -> bool:
        """Transcripts are made of punctuated words (else of plain, lower-case ones)."""
        return self.punctuate or self.smart_format

    def finalize_overrides(self) -> bytes:
        """The second pass of a file: diarized only when asked (Deepgram's default is off), with
        the prompt, and with a model of ours when one is named."""
        values: dict[str, object] = {"diarize": self.wants_diarization}
        if self.model is not None and not is_deepgram_model(self.model):
            values["model"] = self.model
        if self.prompt is not None:
            values["prompt"] = self.prompt
        return msgspec.json.encode(values)


def _without_intensifier(keyword: str) -> str:
    """`snuffleupagus:5` -> `snuffleupagus` (a keyword's boost means nothing to Whisper)."""
    term, _, boost = keyword.rpartition(":")
    try:
        float(boost)
    except ValueError:
        return keyword
    return term


def is_deepgram_model(name: str) -> bool:
    return name in DEEPGRAM_USE_CASES or any(
        name == family or name.startswith(f"{family}-") for family in DEEPGRAM_MODEL_FAMILIES
    )


def parse_params(query: Mapping[str, list[str]]) -> ListenParams:
    """The parameters of a query (every value of each name); raises InvalidRequest naming the
    bad one. A repeated name other than keyterm and keywords counts with its last value."""
    values = {
        name.removesuffix("[]"): found if name.removesuffix("[]") in REPEATED_PARAMETERS else found[-1]
        for name, found in query.items()
    }
    try:
        return msgspec.convert(values, ListenParams, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"bad query parameter: {exc}") from exc


def check_live_model(params: ListenParams, engine_name: str) -> None:
    """Raises UnknownModel unless the live model asked for is Deepgram's or this server's."""
    if params.model is not None and params.model != engine_name and not is_deepgram_model(params.model):
        raise UnknownModel(
            f"No such model/language/tier combination found: this server streams with {engine_name!r} "
            f"(Deepgram's model names mean it too), not {params.model!r}"
        )


# ---- words and results --------------------------------------------------------------------------


class ListenWord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    word: str
    """Lower-case, without punctuation."""
    start: float
    end: float
    confidence: float
    punctuated_word: str
    """As the model wrote it."""
    speaker: int | None = None


class Alternative(msgspec.Struct, frozen=True, kw_only=True):
    transcript: str
    confidence: float
    words: list[ListenWord]


def listen_word(
    text: str, start: float, end: float, confidence: float, speaker: int | None = None
) -> ListenWord:
    """One of our words as Deepgram's: `word` plain, `punctuated_word` as the model wrote it."""
    punctuated = text.strip()
    return ListenWord(
        word=plain_word(punctuated),
        start=round(start, 3),
        end=round(end, 3),
        confidence=round(confidence, 4),
        punctuated_word=punctuated,
        speaker=speaker,
    )


def plain_word(text: str) -> str:
    """A word as Deepgram writes it without punctuate: lower-case, no punctuation around it."""
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    return (text[start:end] or text).lower()


def alternative(words: list[ListenWord], punctuated: bool) -> Alternative:
    """The one alternative of a result: its transcript from punctuated or plain words."""
    texts = [word.punctuated_word if punctuated else word.word for word in words]
    confidence = sum(word.confidence for word in words) / len(words) if words else 0.0
    return Alternative(transcript=" ".join(texts), confidence=round(confidence, 4), words=words)


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    arch: str


class ListenMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """What a stream's closing Metadata message and a file's answer (its `metadata`) say of it."""

    transaction_key: str = "deprecated"
    request_id: str
    sha256: str
    """Of the audio bytes received."""
    created: str
    duration: float
    channels: int
    models: list[str]
    model_info: dict[str, ModelInfo]


def model_uuid(model_name: str) -> str:
    """A stable id for one of our models, where Deepgram names its models by UUID."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"streamscribe:model:{model_name}"))


def model_info(model_name: str) -> ModelInfo:
    return ModelInfo(name=model_name, version=__version__, arch="whisper")


def created_now() -> str:
    """The time now as Deepgram's `created` writes it (2024-08-29T22:37:55.202Z)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- errors -------------------------------------------------------------------------------------


class ListenErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """How Deepgram refuses a request: {"err_code", "err_msg", "request_id"}."""

    err_code: str
    err_msg: str
    request_id: str


_BAD_REQUESTS = (
    InvalidRequest,
    UnknownModel,
    UnsupportedLanguage,
    UnsupportedAudio,
    UnsupportedMediaType,
    EmptyUpload,
    NoAudioStream,
)
"""Refused as 400 Bad Request, as Deepgram refuses bad parameters and audio it cannot decode."""
_ERR_CODES = {
    400: "Bad Request",
    401: "INVALID_AUTH",
    422: "ASR_UNPROCESSABLE_ENTITY",
    429: "TOO_MANY_REQUESTS",
}


def http_refusal(error: StreamscribeError, request_id: str) -> tuple[int, ListenErrorBody]:
    """The HTTP status and body Deepgram would answer `error` with; err_code is Deepgram's where
    it has one for the status, else our code in capitals."""
    if isinstance(error, _BAD_REQUESTS):
        status = 400
    elif isinstance(error, UploadInterrupted):
        status = 422  # Deepgram: audio incomplete or interrupted
    else:
        status = error.http_status
    code = _ERR_CODES.get(status, error.code.upper())
    return status, ListenErrorBody(err_code=code, err_msg=error.message, request_id=request_id)


_STREAM_CLOSES: dict[str, tuple[int, str]] = {
    UnsupportedAudio.code: (1008, "DATA-0000"),
    FrameTooLarge.code: (1008, "DATA-0000"),
    IdleTimeout.code: (1011, "NET-0001"),
}
"""Our stream errors that Deepgram has a close of its own for: audio it cannot decode
(DATA-0000) and a client that sent nothing in time (NET-0001)."""


def stream_close(error_code: str | None, message: str) -> tuple[int, str]:
    """The WebSocket close code and reason (at most 120 bytes) of a stream that ended with
    `error_code` (None: normally): Deepgram's code and payload where it has one, else ours."""
    if error_code is None:
        return 1000, ""
    close_code, payload = _STREAM_CLOSES.get(error_code, (error_for(error_code, "").close_code, error_code))
    reason = f"{payload}: {message}".encode()[:120].decode(errors="ignore")
    return close_code, reason


def deepgram_error_code(error_code: str) -> str | None:
    """Deepgram's payload code (DATA-0000, NET-0001) for one of our stream errors, if it has one."""
    found = _STREAM_CLOSES.get(error_code)
    return None if found is None else found[1]


def utterance_id(transcript_id: str, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"streamscribe:{transcript_id}:utterance:{index}"))


def speaker_numbers(labels: list[str | None]) -> dict[str, int]:
    """Our speaker labels ("Speaker 1", ...) as Deepgram's numbers from 0, in order of first word."""
    numbers: dict[str, int] = {}
    for label in labels:
        if label is not None:
            numbers.setdefault(label, len(numbers))
    return numbers
