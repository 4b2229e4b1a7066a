"""POST /v1/listen: Deepgram's prerecorded API. The body is the file (any Content-Type but JSON);
it takes the path of every upload (replayed at max speed, then the second pass), and the answer
is the final version in Deepgram's response shape. A JSON body naming a URL is refused: this
server never fetches what a client points it at.
"""

from __future__ import annotations

import asyncio
import hashlib
from io import BufferedReader

import msgspec
from aiohttp import web

from ..errors import InvalidRequest
from ..transcript import Segment, Transcript, Word
from .deepgram_shape import (
    REPEATED_PARAMETERS,
    Alternative,
    ListenMetadata,
    ListenParams,
    ListenWord,
    alternative,
    created_now,
    listen_word,
    model_info,
    model_uuid,
    speaker_numbers,
    utterance_id,
)
from .responses import struct_response
from .uploads import accept_upload

_SENTENCE_ENDS = (".", "?", "!")
_CLOSING_MARKS = '"\u201d\u2019)'
"""What may follow a sentence's end in its last word (quotes, a parenthesis)."""


class Sentence(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    start: float
    end: float


class Paragraph(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    sentences: list[Sentence]
    num_words: int
    start: float
    end: float
    speaker: int | None = None


class Paragraphs(msgspec.Struct, frozen=True, kw_only=True):
    transcript: str
    paragraphs: list[Paragraph]


class FileAlternative(Alternative, frozen=True, kw_only=True, omit_defaults=True):
    paragraphs: Paragraphs | None = None


class FileChannel(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    alternatives: list[FileAlternative]
    detected_language: str | None = None


class Utterance(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    start: float
    end: float
    confidence: float
    channel: int
    transcript: str
    words: list[ListenWord]
    id: str
    speaker: int | None = None


class FileResults(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    channels: list[FileChannel]
    utterances: list[Utterance] | None = None


class FileResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of POST /v1/listen (the SDK's ListenV1Response)."""

    metadata: ListenMetadata
    results: FileResults


def file_response(transcript: Transcript, params: ListenParams, sha256: str, created: str) -> FileResponse:
    """`transcript` (its newest version) as Deepgram answers a file: one channel, one alternative,
    with paragraphs (paragraphs or smart_format), utterances (utterances) and speakers (diarize)."""
    words = transcript.words
    speakers = speaker_numbers([word.speaker for word in words]) if params.wants_diarization else {}
    shaped = [_shaped(word, speakers) for word in words]
    paragraphs = (
        _paragraphs(transcript.segments, speakers, params.punctuated)
        if params.paragraphs or params.smart_format
        else None
    )
    whole = alternative(shaped, params.punctuated)
    channel = FileChannel(
        alternatives=[
            FileAlternative(
                transcript=whole.transcript,
                confidence=whole.confidence,
                words=whole.words,
                paragraphs=paragraphs,
            )
        ],
        detected_language=transcript.language if params.detect_language else None,
    )
    utterances = (
        [
            _utterance(transcript.id, index, segment, speakers, params.punctuated)
            for index, segment in enumerate(transcript.segments)
        ]
        if params.utterances
        else None
    )
    models = transcript.info.models
    model_name = models.get("second_pass") or models.get("live") or "unknown"
    return FileResponse(
        metadata=ListenMetadata(
            request_id=transcript.id,
            sha256=sha256,
            created=created,
            duration=round(transcript.duration_s, 3),
            channels=1,
            models=[model_uuid(model_name)],
            model_info={model_uuid(model_name): model_info(model_name)},
        ),
        results=FileResults(channels=[channel], utterances=utterances),
    )


def _shaped(word: Word, speakers: dict[str, int]) -> ListenWord:
    speaker = None if word.speaker is None else speakers.get(word.speaker)
    return listen_word(word.text, word.start, word.end, word.confidence, speaker)


def _segment_words(segment: Segment) -> list[Word]:
    return [word for line in segment.lines for word in line.words]


def _sentences(words: list[Word]) -> list[list[Word]]:
    sentences: list[list[Word]] = [[]]
    for word in words:
        sentences[-1].append(word)
        if word.text.rstrip(_CLOSING_MARKS).endswith(_SENTENCE_ENDS):
            sentences.append([])
    return [sentence for sentence in sentences if sentence]


def _paragraphs(segments: list[Segment], speakers: dict[str, int], punctuated: bool) -> Paragraphs:
    """One paragraph per segment (one speaker, no long pause), cut into sentences."""
    paragraphs: list[Paragraph] = []
    texts: list[str] = []
    for segment in segments:
        words = _segment_words(segment)
        if not words:
            continue
        speaker = None if segment.speaker is None else speakers.get(segment.speaker)
        sentences = [
            Sentence(
                text=alternative([_shaped(word, {}) for word in sentence], punctuated).transcript,
                start=round(sentence[0].start, 3),
                end=round(sentence[-1].end, 3),
            )
            for sentence in _sentences(words)
        ]
        paragraphs.append(
            Paragraph(
                sentences=sentences,
                num_words=len(words),
                start=round(words[0].start, 3),
                end=round(words[-1].end, 3),
                speaker=speaker,
            )
        )
        label = "" if speaker is None else f"Speaker {speaker}: "
        texts.append(label + " ".join(sentence.text for sentence in sentences))
    return Paragraphs(transcript="\n" + "\n\n".join(texts), paragraphs=paragraphs)


def _utterance(
    transcript_id: str, index: int, segment: Segment, speakers: dict[str, int], punctuated: bool
) -> Utterance:
    shaped = [_shaped(word, speakers) for word in _segment_words(segment)]
    whole = alternative(shaped, punctuated)
    return Utterance(
        start=round(segment.start, 3),
        end=round(segment.end, 3),
        confidence=whole.confidence,
        channel=0,
        transcript=whole.transcript,
        words=shaped,
        id=utterance_id(transcript_id, index),
        speaker=None if segment.speaker is None else speakers.get(segment.speaker),
    )


def _with_repeated_parameters_as_lists(request: web.Request) -> web.Request:
    """The request with keyterm=a&keyterm=b renamed keyterm[]=a&keyterm[]=b: the upload path
    takes every value of a repeated field only under a `[]` name."""
    query = [
        (f"{name}[]" if name in REPEATED_PARAMETERS else name, value) for name, value in request.query.items()
    ]
    return request.clone(rel_url=request.rel_url.with_query(query))


def _sha256(handle: BufferedReader) -> str:
    return hashlib.file_digest(handle, "sha256").hexdigest()


async def transcribe_file(request: web.Request) -> web.Response:
    """The file in the body, transcribed; refusals are raised (the Deepgram error middleware
    answers them)."""
    if request.content_type == "application/json":
        raise InvalidRequest(
            'a JSON body ({"url": ...}) asks the server to fetch a URL, which this server never does: '
            "POST the audio itself as the body (Content-Type audio/* or application/octet-stream)"
        )
    created = created_now()
    session, upload, params = await accept_upload(_with_repeated_parameters_as_lists(request), ListenParams)
    # Opened before anything awaits (a quick open, as the spool's unlink): the replay removes the
    # spool file once it is done with it.
    audio = upload.path.open("rb")
    try:
        transcript = await session.transcript()
        sha256 = await asyncio.to_thread(_sha256, audio)
    finally:
        audio.close()
    body = file_response(transcript, params, sha256, created)
    headers = {
        "dg-request-id": transcript.id,
        "X-Transcript-Id": transcript.id,
        "X-Transcript-Version": str(transcript.version),
    }
    return struct_response(body, headers=headers)
