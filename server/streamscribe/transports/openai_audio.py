"""POST /v1/audio/transcriptions, compatible with OpenAI's API: the official SDKs and tools built
on them work unchanged against `base_url=http://host:port/v1`.

The file takes the same path as POST /v1/transcriptions (replayed at max speed, then the second
pass) and the answer is the final version in OpenAI's response formats. Parameters this server
has no use for (temperature, include[], chunking_strategy, ...) are accepted and ignored.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection
from typing import Literal

import msgspec
from aiohttp import web

from ..exports import to_srt, to_vtt
from ..languages import LANGUAGES
from ..transcript import Transcript, Word
from ..wire import Prompt, RetentionHours
from .uploads import accept_upload

OPENAI_MODELS = frozenset(
    {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize"}
)
"""OpenAI's model names: they mean this server's default second-pass model."""
_SEGMENT_MAX_S = 30.0
_SENTENCE_ENDS = (".", "?", "!")


class OpenAIOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The form fields of OpenAI's transcription request that change the result here."""

    model: str | None = None
    language: str | None = None
    prompt: Prompt | None = None
    response_format: Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"] = "json"
    timestamp_granularities: list[Literal["word", "segment"]] = msgspec.field(
        default_factory=lambda: ["segment"]
    )
    stream: bool = False
    speed: Literal["max", "realtime"] = "max"
    audio_retention_h: RetentionHours | None = None
    """Not OpenAI's: how long to keep the audio (send it in the SDK's extra_body)."""

    def __post_init__(self) -> None:
        if self.stream:
            raise ValueError(
                "stream=true is not offered here; POST /v1/transcriptions and follow /v1/sessions/{id}/events"
            )

    def finalize_overrides(self) -> bytes:
        values: dict[str, str] = {}
        if self.model is not None and self.model not in OPENAI_MODELS:
            values["model"] = self.model
        if self.prompt is not None:
            values["prompt"] = self.prompt
        return msgspec.json.encode(values)


async def audio_transcriptions(request: web.Request) -> web.Response:
    session, _upload, options = await accept_upload(request, OpenAIOptions)
    transcript = await session.transcript()
    headers = {"X-Transcript-Id": transcript.id, "X-Transcript-Version": str(transcript.version)}
    match options.response_format:
        case "text":
            return web.Response(text=_text(transcript.words) + "\n", headers=headers)
        case "srt":
            return web.Response(text=to_srt(transcript), headers=headers)
        case "vtt":
            return web.Response(text=to_vtt(transcript), content_type="text/vtt", headers=headers)
        case "verbose_json":
            return web.json_response(_verbose(transcript, options.timestamp_granularities), headers=headers)
        case "diarized_json":
            return web.json_response(_diarized(transcript), headers=headers)
    return web.json_response({"text": _text(transcript.words), "usage": _usage(transcript)}, headers=headers)


def _text(words: list[Word]) -> str:
    return " ".join(word.text for word in words)


def _usage(transcript: Transcript) -> dict[str, object]:
    return {"type": "duration", "seconds": math.ceil(transcript.duration_s)}


def _sentences(transcript: Transcript) -> list[list[Word]]:
    """Words cut into Whisper-like segments: at a sentence end, a speaker change, or 30 s."""
    segments: list[list[Word]] = []
    for paragraph in transcript.segments:
        current: list[Word] = []
        for line in paragraph.lines:
            for word in line.words:
                if current and word.end - current[0].start > _SEGMENT_MAX_S:
                    segments.append(current)
                    current = []
                current.append(word)
                if word.text.endswith(_SENTENCE_ENDS):
                    segments.append(current)
                    current = []
        if current:
            segments.append(current)
    return segments


def _verbose(transcript: Transcript, granularities: Collection[str]) -> dict[str, object]:
    body: dict[str, object] = {
        "task": "transcribe",
        "language": LANGUAGES.get(transcript.language or "", transcript.language or "").replace("_", " "),
        "duration": transcript.duration_s,
        "text": _text(transcript.words),
        "usage": _usage(transcript),
    }
    if "segment" in granularities:
        body["segments"] = [
            _verbose_segment(index, words) for index, words in enumerate(_sentences(transcript))
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": word.text, "start": word.start, "end": word.end} for word in transcript.words
        ]
    return body


def _verbose_segment(index: int, words: list[Word]) -> dict[str, object]:
    text = " " + _text(words)
    confidence = sum(word.confidence for word in words) / len(words)
    return {
        "id": index,
        "seek": int(words[0].start * 100),
        "start": words[0].start,
        "end": words[-1].end,
        "text": text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": round(math.log(max(confidence, 1e-6)), 4),
        "compression_ratio": round(len(text.encode()) / len(zlib.compress(text.encode())), 4),
        "no_speech_prob": 0.0,
    }


def _diarized(transcript: Transcript) -> dict[str, object]:
    """OpenAI's diarized_json: speakers are A, B, ... in the order they first speak."""
    letters: dict[str | None, str] = {}
    segments = []
    for index, words in enumerate(_sentences(transcript)):
        speaker = letters.setdefault(words[0].speaker, chr(ord("A") + len(letters) % 26))
        segments.append(
            {
                "type": "transcript.text.segment",
                "id": f"seg_{index}",
                "start": words[0].start,
                "end": words[-1].end,
                "text": _text(words),
                "speaker": speaker,
            }
        )
    return {
        "task": "transcribe",
        "duration": transcript.duration_s,
        "text": _text(transcript.words),
        "segments": segments,
        "usage": _usage(transcript),
    }


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/audio/transcriptions", audio_transcriptions)
