"""faster-whisper (CTranslate2) on CPU or CUDA."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..audio import SAMPLE_RATE, Samples
from ..errors import UnknownModel
from .engine import AsrWord, DecodeOptions, LiveWindow, Progress
from .filters import END_MARGIN_S, has_letters, looks_hallucinated, without_squeezed_tail
from .windows import WindowDecoder

_CPU_BATCH = 2
"""On a CPU only `generate` gains from a batch, and each window's words wait for its whole batch
(loadtests/README.md, "Capacity on 2 cores: small batches")."""
_GPU_BATCH = 128
"""What the H100 figures used (loadtests/README.md): on a GPU batching is the lever."""


def _cuda_available() -> bool:
    import ctranslate2

    return int(ctranslate2.get_cuda_device_count()) > 0


class FasterWhisperEngine:
    """One WhisperModel (`whisper`, also for reference decodes outside the live path): whole
    recordings through faster-whisper's `transcribe`, live windows through a WindowDecoder."""

    runtime = "faster-whisper"

    def __init__(
        self, name: str, model_path: str, device: str, compute_type: str, cpu_threads: int, workers: int = 1
    ) -> None:
        from faster_whisper import WhisperModel

        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
        if compute_type == "default":
            compute_type = "float16" if device == "cuda" else "int8"
        cores = os.cpu_count() or 1
        if workers == 0:  # one decode per core on the CPU, one on a GPU (loadtests/README.md)
            workers = cores if device == "cpu" else 1
        if device == "cpu" and cpu_threads == 0:
            cpu_threads = max(1, cores // workers)
        self.name = name
        self.device = device
        self.compute_type = compute_type
        self.parallel_decodes = workers
        self.batch_size = _CPU_BATCH if device == "cpu" else _GPU_BATCH
        try:
            self.whisper: Any = WhisperModel(
                model_path,
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=workers,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise UnknownModel(f"cannot load model {name!r} ({model_path}): {exc}") from exc
        self.multilingual = bool(self.whisper.model.is_multilingual)
        self._windows = WindowDecoder(self.whisper, batch_encoder=device != "cpu")

    def decode_windows(self, windows: Sequence[LiveWindow]) -> list[list[AsrWord]]:
        return self._windows.decode(windows)

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
            if looks_hallucinated(segment.compression_ratio, segment.no_speech_prob, segment.avg_logprob):
                continue
            words.extend(
                AsrWord(word.word.strip(), float(word.start), float(word.end), float(word.probability))
                for word in segment.words or []
                if has_letters(word.word) and word.start < audio_s - END_MARGIN_S
            )
        return without_squeezed_tail(words)
