"""faster-whisper (CTranslate2) on CPU or CUDA."""

from __future__ import annotations

from typing import Any

from ..audio import SAMPLE_RATE, Samples
from ..errors import UnknownModel
from .engine import AsrWord, DecodeOptions, Progress

_MAX_COMPRESSION_RATIO = 2.4
_NO_SPEECH_PROB = 0.6
_MIN_AVG_LOGPROB = -1.0
_MAX_TAIL_WORDS = 4
_END_MARGIN_S = 0.05
"""Words Whisper places at the very end of the audio are squeezed-in guesses, not speech."""


def _cuda_available() -> bool:
    import ctranslate2

    return int(ctranslate2.get_cuda_device_count()) > 0


class FasterWhisperEngine:
    """One WhisperModel (`whisper`, also for reference decodes outside the live path); `transcribe`
    consumes the segment generator in the calling thread."""

    def __init__(self, name: str, model_path: str, device: str, compute_type: str, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel

        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
        if compute_type == "default":
            compute_type = "float16" if device == "cuda" else "int8"
        self.name = name
        self.device = device
        self.compute_type = compute_type
        try:
            self.whisper: Any = WhisperModel(
                model_path, device=device, compute_type=compute_type, cpu_threads=cpu_threads
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise UnknownModel(f"cannot load model {name!r} ({model_path}): {exc}") from exc
        self.multilingual = bool(self.whisper.model.is_multilingual)

    def transcribe(
        self, audio: Samples, options: DecodeOptions, on_progress: Progress | None = None
    ) -> list[AsrWord]:
        segments, _info = self.whisper.transcribe(
            audio,
            language=options.language,
            initial_prompt=options.prompt or None,
            beam_size=options.beam_size,
            word_timestamps=True,
            condition_on_previous_text=options.whole_recording,
            vad_filter=options.whole_recording,
            temperature=0.0,
        )
        audio_s = audio.size / SAMPLE_RATE
        words: list[AsrWord] = []
        for segment in segments:  # the generator decodes as it is consumed: in this thread
            if on_progress is not None and audio_s > 0:
                on_progress(min(1.0, float(segment.end) / audio_s))
            if _looks_hallucinated(segment):
                continue
            words.extend(
                AsrWord(word.word.strip(), float(word.start), float(word.end), float(word.probability))
                for word in segment.words or []
                if _has_letters(word.word) and word.start < audio_s - _END_MARGIN_S
            )
        return words[: _squeezed_tail_start(words)]


def _anomaly(word: AsrWord) -> float:
    """Whisper's word anomaly score: improbable, squeezed into almost no time, or stretched."""
    duration = word.end_s - word.start_s
    score = 1.0 if word.probability < 0.15 else 0.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def _squeezed_tail_start(words: list[AsrWord]) -> int:
    """Where a trailing run of anomalous words begins (the "Thank you." Whisper appends to the
    silence after speech), or len(words) when the hypothesis ends in real words. Every word of
    the run must be anomalous itself, so one squeezed word does not take real ones with it."""
    run = 0
    while run < min(_MAX_TAIL_WORDS, len(words)) and _anomaly(words[-run - 1]) > 0:
        run += 1
    for length in range(run, 0, -1):
        score = sum(_anomaly(word) for word in words[-length:])
        if score >= 3 or score + 0.01 >= length:
            return len(words) - length
    return len(words)


def _has_letters(text: str) -> bool:
    """Punctuation-only pieces (a lone "." after a pause) are not words."""
    return any(character.isalnum() for character in text)


def _looks_hallucinated(segment: Any) -> bool:
    """Whisper's own failure signs: a repetition loop, or 'no speech' decoded with low confidence."""
    if segment.compression_ratio > _MAX_COMPRESSION_RATIO:
        return True
    return bool(segment.no_speech_prob > _NO_SPEECH_PROB and segment.avg_logprob < _MIN_AVG_LOGPROB)
