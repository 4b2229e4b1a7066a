"""Live windows decoded together: per group, one encode, one generate and one align.

Whisper's encoder costs what its input holds, and a live window holds a few seconds: a group's
features are padded to max(15 s, longest window + 5 s), capped at Whisper's 30 s, not to 30 s.
Less input than that makes tiny.en loop or drop words (loadtests/README.md, "Whisper's encoder
on less than 30 s"). CTranslate2 batches prompts only where <|startoftranscript|> sits at the
same position, so windows are grouped by language, prompt length and beam size, and a prompt's
text is cut to a multiple of PROMPT_BUCKET tokens so that most prompts share one group.

On a CPU only `generate` gains from a batch (8 windows: 0.49 s batched, 1.11 s one by one); the
encoder and the alignment lose (8 windows of 20 s input: encode 1.95 s batched, 1.20 s one by
one), so there they run one window at a time and the encoded windows are stacked for `generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens, merge_punctuations

from ..audio import SAMPLE_RATE
from .engine import AsrWord, LiveWindow
from .filters import END_MARGIN_S, compression_ratio, has_letters, looks_hallucinated, without_squeezed_tail

PROMPT_BUCKET = 16
"""Prompt text is kept in whole multiples of this many tokens (the newest ones)."""
_MAX_PROMPT_TOKENS = 208
"""Under half of Whisper's 448-token context, as Whisper itself keeps."""
_MIN_INPUT_FRAMES = 1500
_INPUT_MARGIN_FRAMES = 500
_FULL_FRAMES = 3000
_MAX_INITIAL_TIMESTAMP_INDEX = 50
"""The first timestamp within 1 s of the window's start, as faster-whisper allows."""
PREPENDED = "\"'\u201c\u00bf([{-"
APPENDED = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"
"""Whisper's own punctuation sets (full-width forms written as escapes)."""
_SENTENCE_ENDS = ".\u3002!\uff01?\uff1f"


def encoder_input_frames(content_frames: int) -> int:
    """Mel frames to encode for a window of `content_frames`: max(15 s, window + 5 s), even, at
    most 30 s."""
    frames = max(_MIN_INPUT_FRAMES, content_frames + _INPUT_MARGIN_FRAMES)
    return min(_FULL_FRAMES, frames + frames % 2)


class WindowDecoder:
    """Decodes batches of live windows on one faster-whisper model; `decode` may be called from
    as many threads at once as the model has workers (its tokenizer cache only ever grows).
    `batch_encoder` False encodes and aligns one window at a time (what pays on a CPU)."""

    def __init__(self, whisper: Any, batch_encoder: bool) -> None:
        self._whisper = whisper
        self._model: Any = whisper.model
        self._batch_encoder = batch_encoder
        self._tokenizers: dict[str, Tokenizer] = {}

    def decode(self, windows: Sequence[LiveWindow]) -> list[list[AsrWord]]:
        """The words of each window, in window time, in the order given."""
        features = [self._whisper.feature_extractor(window.audio) for window in windows]
        languages = self._languages(windows, features)
        groups: dict[tuple[str, int, int], list[int]] = {}
        prompts = [self._prompt(languages[n], window.options.prompt) for n, window in enumerate(windows)]
        for n, window in enumerate(windows):
            groups.setdefault((languages[n], len(prompts[n]), window.options.beam_size), []).append(n)
        words: list[list[AsrWord]] = [[] for _ in windows]
        for (language, _, beam_size), members in groups.items():
            decoded = self._decode_group(
                self._tokenizer(language),
                beam_size,
                [features[n] for n in members],
                [prompts[n] for n in members],
                [windows[n].audio.size / SAMPLE_RATE for n in members],
            )
            for n, group_words in zip(members, decoded, strict=True):
                words[n] = group_words
        return words

    def _decode_group(
        self,
        tokenizer: Tokenizer,
        beam_size: int,
        features: list[np.ndarray],
        prompts: list[list[int]],
        durations_s: list[float],
    ) -> list[list[AsrWord]]:
        content = [min(feature.shape[-1], _FULL_FRAMES) for feature in features]
        frames = encoder_input_frames(max(content))
        if self._batch_encoder:
            encoded = [self._encode(features, frames)]
        else:
            encoded = [self._encode([feature], frames) for feature in features]
        results = self._model.generate(
            _stacked(encoded),
            prompts,
            beam_size=beam_size,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, (-1,))),
            max_initial_timestamp_index=_MAX_INITIAL_TIMESTAMP_INDEX,
        )
        text_tokens = [_trusted_text_tokens(tokenizer, result) for result in results]
        if not any(text_tokens):
            return [[] for _ in features]
        if self._batch_encoder:
            alignments = self._whisper.find_alignment(tokenizer, text_tokens, encoded[0], content)
        else:
            alignments = [
                self._whisper.find_alignment(tokenizer, [tokens], one, [window_frames])[0] if tokens else []
                for tokens, one, window_frames in zip(text_tokens, encoded, content, strict=True)
            ]
        return [
            _words(alignment, duration_s)
            for alignment, duration_s in zip(alignments, durations_s, strict=True)
        ]

    def _encode(self, features: list[np.ndarray], frames: int) -> Any:
        """The encoder output of a batch: where the model runs when it is encoded as one batch, in
        host memory when windows are encoded one by one (to be stacked for `generate`)."""
        batch = np.stack([pad_or_trim(feature, frames) for feature in features]).astype(np.float32)
        return self._model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(batch)), to_cpu=not self._batch_encoder
        )

    def _languages(self, windows: Sequence[LiveWindow], features: list[np.ndarray]) -> list[str]:
        """Each window's language: the one asked for, else the one Whisper detects (an
        English-only model is always English)."""
        languages = [
            window.options.language or ("" if self._model.is_multilingual else "en") for window in windows
        ]
        unknown = [n for n, language in enumerate(languages) if not language]
        if unknown:
            encoded = self._encode([features[n] for n in unknown], _FULL_FRAMES)
            for n, ranked in zip(unknown, self._model.detect_language(encoded), strict=True):
                languages[n] = ranked[0][0][2:-2]
        return languages

    def _prompt(self, language: str, text: str | None) -> list[int]:
        tokenizer = self._tokenizer(language)
        previous = tokenizer.encode(" " + text.strip()) if text and text.strip() else []
        if len(previous) >= PROMPT_BUCKET:
            previous = previous[-min(_MAX_PROMPT_TOKENS, len(previous) - len(previous) % PROMPT_BUCKET) :]
        head = [tokenizer.sot_prev, *previous] if previous else []
        return [*head, *tokenizer.sot_sequence]

    def _tokenizer(self, language: str) -> Tokenizer:
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._whisper.hf_tokenizer, self._model.is_multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]


def _stacked(encoded: list[Any]) -> Any:
    """One batch of encoder outputs from several (those encoded one by one are in host memory)."""
    if len(encoded) == 1:
        return encoded[0]
    return ctranslate2.StorageView.from_array(np.concatenate([np.asarray(one) for one in encoded]))


def _trusted_text_tokens(tokenizer: Tokenizer, result: Any) -> list[int]:
    """The text tokens of a hypothesis, or none where it shows Whisper's failure signs."""
    tokens = result.sequences_ids[0]
    text_tokens = [token for token in tokens if token < tokenizer.eot]
    avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
    ratio = compression_ratio(tokenizer.decode(text_tokens).strip())
    if looks_hallucinated(ratio, result.no_speech_prob, avg_logprob):
        return []
    return text_tokens


def _words(alignment: list[dict[str, Any]], duration_s: float) -> list[AsrWord]:
    _shorten_sentence_boundaries(alignment)
    merge_punctuations(alignment, PREPENDED, APPENDED)
    return without_squeezed_tail(
        [
            AsrWord(
                piece["word"].strip(), float(piece["start"]), float(piece["end"]), float(piece["probability"])
            )
            for piece in alignment
            if has_letters(piece["word"]) and piece["start"] < duration_s - END_MARGIN_S
        ]
    )


def _shorten_sentence_boundaries(alignment: list[dict[str, Any]]) -> None:
    """Alignment stretches a word next to a sentence end over the pause beside it: keep such
    words within twice the median word duration (itself at most 0.7 s)."""
    durations = [piece["end"] - piece["start"] for piece in alignment]
    spoken = [duration for duration in durations if duration > 0]
    if not spoken:
        return
    longest = 2 * min(0.7, float(np.median(spoken)))
    for n in range(1, len(alignment)):
        piece = alignment[n]
        if piece["end"] - piece["start"] <= longest:
            continue
        if piece["word"] in _SENTENCE_ENDS:
            piece["end"] = piece["start"] + longest
        elif alignment[n - 1]["word"] in _SENTENCE_ENDS:
            piece["start"] = piece["end"] - longest
