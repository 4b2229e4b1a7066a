"""whisper.cpp (through pywhispercpp's C-API binding) on CPU, or Metal on Apple silicon.

whisper.cpp decodes one audio per call; there is no batch across streams to build. Each decode
worker owns a context (its own copy of the weights: 78 MB for tiny.en), and a batch of live
windows is decoded one window after another on it. Word times come from whisper.cpp's DTW over
the model's alignment heads (a token's DTW time is where it ends), word probabilities are the
mean of their tokens', as in faster-whisper.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import platform
import queue
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audio import SAMPLE_RATE, Samples
from ..errors import UnknownModel
from .engine import AsrWord, DecodeOptions, LiveWindow, Progress
from .filters import END_MARGIN_S, has_letters, looks_hallucinated, without_squeezed_tail
from .windows import encoder_input_frames

log = logging.getLogger(__name__)

_CENTISECONDS = 100.0
_FRAMES_PER_CONTEXT = 2
"""Mel frames per encoder position (Whisper's convolution strides by 2)."""
_NO_SPEECH_PROB = 0.6
_MIN_AVG_LOGPROB = -1.0
"""whisper.cpp drops a segment itself when both hold (the thresholds of filters.py)."""
_MAX_PROMPT_WORDS = 100
"""A prompt's newest words: whisper.cpp keeps at most half its 448-token context of it anyway."""
_UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})
"""Written without spaces between words: Whisper splits these at each token."""
_PREPENDED = "\"'\u201c\u00bf([{-"
"""Punctuation that belongs to the next word (Whisper's own set, full-width forms as escapes)."""


@dataclass(frozen=True, slots=True)
class GgmlHeader:
    """The hyper-parameters at the head of a ggml Whisper file."""

    n_vocab: int
    n_audio_layer: int
    n_text_state: int
    n_text_layer: int
    n_mels: int

    @classmethod
    def read(cls, path: Path) -> GgmlHeader:
        with path.open("rb") as source:
            fields = struct.unpack("<12i", source.read(48))
        _magic, n_vocab, _, _, _, n_audio_layer, _, n_text_state, _, n_text_layer, n_mels, _ = fields
        return cls(n_vocab, n_audio_layer, n_text_state, n_text_layer, n_mels)

    @property
    def multilingual(self) -> bool:
        return self.n_vocab >= 51865

    def alignment_heads(self) -> str:
        """The name of whisper.cpp's alignment-head preset for the OpenAI model of these
        dimensions; the top half of the text layers where the size is ambiguous (large v1/v2) or
        the decoder is not OpenAI's (distil-whisper: whisper.cpp refuses a preset naming a layer
        the model lacks)."""
        sizes = {384: ("TINY", 4), 512: ("BASE", 6), 768: ("SMALL", 12), 1024: ("MEDIUM", 24)}
        size, text_layers = sizes.get(self.n_text_state, ("", 0))
        if size and self.n_text_layer == text_layers and self.n_vocab in (51864, 51865):
            return f"WHISPER_AHEADS_{size}{'' if self.multilingual else '_EN'}"
        if self.n_text_state == 1280 and self.n_vocab == 51866 and self.n_text_layer in (4, 32):
            return "WHISPER_AHEADS_LARGE_V3_TURBO" if self.n_text_layer == 4 else "WHISPER_AHEADS_LARGE_V3"
        return "WHISPER_AHEADS_N_TOP_MOST"


def _apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _binding() -> Any:
    try:
        import _pywhispercpp
    except ImportError as exc:
        raise UnknownModel(
            "the whisper.cpp engine needs pywhispercpp (pip install pywhispercpp; on a Mac run "
            "scripts/install-macos.sh)"
        ) from exc
    return _pywhispercpp


class WhisperCppEngine:
    """A ggml Whisper model in `workers` whisper.cpp contexts (0: one per core on the CPU, one
    on a GPU); `decode_windows` and `transcribe` may be called from that many threads at once."""

    runtime = "whisper.cpp"
    batch_size = 1
    """A window's words are out as soon as it is decoded: a batch would only hold them back."""

    def __init__(self, name: str, ggml_path: Path, device: str, cpu_threads: int, workers: int = 1) -> None:
        self._binding = _binding()
        _route_logs(self._binding)
        if device == "auto":
            device = "metal" if _apple_silicon() else "cpu"
        if device == "metal" and not _apple_silicon():
            raise UnknownModel("device metal needs a Mac with Apple silicon; use cpu (or auto) here")
        if device == "cuda" and "CUDA" not in str(self._binding.whisper_print_system_info()):
            raise UnknownModel(
                "this pywhispercpp build has no CUDA backend: use --engine faster-whisper on CUDA"
            )
        cores = os.cpu_count() or 1
        if workers == 0:
            workers = cores if device == "cpu" else 1
        self.name = name
        self.device = device
        self.parallel_decodes = workers
        self.header = GgmlHeader.read(ggml_path)
        self.multilingual = self.header.multilingual
        self._threads = cpu_threads or max(1, cores // workers)
        self._contexts: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(workers):
            self._contexts.put(self._load(ggml_path))

    def _load(self, ggml_path: Path) -> Any:
        binding = self._binding
        params = binding.whisper_context_default_params()
        params.use_gpu = self.device != "cpu"
        params.flash_attn = False  # whisper.cpp's DTW word times need the attention weights
        params.dtw_token_timestamps = True
        preset = self.header.alignment_heads()
        params.dtw_aheads_preset = getattr(binding.whisper_alignment_heads_preset, preset)
        params.dtw_n_top = max(1, self.header.n_text_layer // 2)
        context = binding.whisper_init_from_file_with_params(str(ggml_path), params)
        if context is None:
            raise UnknownModel(f"whisper.cpp cannot load {ggml_path}")
        return context

    def decode_windows(self, windows: Sequence[LiveWindow]) -> list[list[AsrWord]]:
        with self._context() as context:
            return [self._decode(context, window.audio, window.options) for window in windows]

    def transcribe(
        self, audio: Samples, options: DecodeOptions, on_progress: Progress | None = None
    ) -> list[AsrWord]:
        with self._context() as context:
            return self._decode(context, audio, options, on_progress)

    @contextmanager
    def _context(self) -> Iterator[Any]:
        context = self._contexts.get()
        try:
            yield context
        finally:
            self._contexts.put(context)

    def _decode(
        self, context: Any, audio: Samples, options: DecodeOptions, on_progress: Progress | None = None
    ) -> list[AsrWord]:
        binding = self._binding
        params = self._params(options, audio.size)
        duration_s = audio.size / SAMPLE_RATE
        if on_progress is not None and duration_s > 0:

            def segment_done(callback_context: Any, new: int, _user_data: Any = None) -> None:
                last = binding.whisper_full_n_segments(callback_context) - 1
                on_progress(
                    min(
                        1.0,
                        binding.whisper_full_get_segment_t1(callback_context, last)
                        / _CENTISECONDS
                        / duration_s,
                    )
                )

            binding.assign_new_segment_callback(params, segment_done)
        if binding.whisper_full(context, params, audio, audio.size) != 0:
            raise RuntimeError(f"whisper.cpp failed to decode {duration_s:.1f} s of audio")
        words: list[AsrWord] = []
        for segment in range(binding.whisper_full_n_segments(context)):
            words.extend(self._segment_words(context, segment, duration_s))
        return without_squeezed_tail(words)

    def _params(self, options: DecodeOptions, samples: int) -> Any:
        binding = self._binding
        beam = options.beam_size > 1
        strategy = binding.whisper_sampling_strategy
        params = binding.whisper_full_default_params(
            strategy.WHISPER_SAMPLING_BEAM_SEARCH if beam else strategy.WHISPER_SAMPLING_GREEDY
        )
        if beam:
            params.beam_search = {"beam_size": options.beam_size, "patience": -1.0}
        params.n_threads = self._threads
        params.print_progress = params.print_realtime = params.print_timestamps = False
        params.language = options.language or ("auto" if self.multilingual else "en")
        if options.prompt and options.prompt.strip():
            params.initial_prompt = " ".join(options.prompt.split()[-_MAX_PROMPT_WORDS:])
        params.no_context = not options.whole_recording
        params.token_timestamps = True
        params.suppress_nst = True
        params.temperature = 0.0
        params.temperature_inc = 0.0
        params.no_speech_thold = _NO_SPEECH_PROB
        params.logprob_thold = _MIN_AVG_LOGPROB
        if not options.whole_recording:
            content_frames = -(-samples * 100 // SAMPLE_RATE)
            params.audio_ctx = encoder_input_frames(content_frames) // _FRAMES_PER_CONTEXT
        return params

    def _segment_words(self, context: Any, segment: int, duration_s: float) -> list[AsrWord]:
        """The segment's words, none if it shows Whisper's failure signs."""
        binding = self._binding
        end_of_text = binding.whisper_token_eot(context)
        tokens = [
            binding.whisper_full_get_token_data(context, segment, index)
            for index in range(binding.whisper_full_n_tokens(context, segment))
        ]
        tokens = [token for token in tokens if token.id < end_of_text]
        if not tokens:
            return []
        pieces = [binding.whisper_token_to_bytes(context, token.id) for token in tokens]
        text = b"".join(pieces)
        avg_logprob = sum(token.plog for token in tokens) / len(tokens)
        if looks_hallucinated(_compression_ratio(text), 0.0, avg_logprob):
            return []
        words: list[AsrWord] = []
        previous_end_s = binding.whisper_full_get_segment_t0(context, segment) / _CENTISECONDS
        language = binding.whisper_lang_str(binding.whisper_full_lang_id(context))
        for group in (_unspaced_groups if language in _UNSPACED_LANGUAGES else _word_groups)(pieces):
            members = [tokens[index] for index in group]
            end_s = _token_end_s(members[-1])
            onset_s = members[0].t0 / _CENTISECONDS
            start_s = onset_s if previous_end_s <= onset_s < end_s else previous_end_s
            previous_end_s = end_s
            word = b"".join(pieces[index] for index in group).decode("utf-8", errors="replace").strip()
            probability = sum(token.p for token in members) / len(members)
            if has_letters(word) and start_s < duration_s - END_MARGIN_S:
                words.append(AsrWord(word, start_s, end_s, probability))
        return words


def _unspaced_groups(pieces: list[bytes]) -> list[list[int]]:
    """Token indices grouped into whole characters: in a language written without spaces each
    token is a word of its own, as Whisper splits them, once the UTF-8 bytes of a character that
    straddles tokens are all in."""
    groups: list[list[int]] = []
    pending: list[int] = []
    for index in range(len(pieces)):
        pending.append(index)
        try:
            b"".join(pieces[member] for member in pending).decode("utf-8")
        except UnicodeDecodeError:
            continue
        groups.append(pending)
        pending = []
    if pending:
        groups.append(pending)
    return groups


def _word_groups(pieces: list[bytes]) -> list[list[int]]:
    """Token indices grouped into words: a word starts at a token with a leading space, except
    punctuation, which joins the word before it (or, if it opens after a space, the word after
    it: a closing quote has none, as in Whisper's merge_punctuations)."""
    groups: list[list[int]] = []
    opening: list[int] = []
    for index, piece in enumerate(pieces):
        stripped = piece.strip()
        is_punctuation = bool(stripped) and not any(chr(byte).isalnum() or byte >= 0x80 for byte in stripped)
        opens = piece.startswith(b" ") or not groups
        if is_punctuation and opens and stripped.decode("utf-8", errors="replace") in _PREPENDED:
            opening.append(index)
        elif is_punctuation and groups and not opening:
            groups[-1].append(index)
        elif piece.startswith(b" ") or not groups or opening:
            groups.append([*opening, index])
            opening = []
        else:
            groups[-1].append(index)
    if opening:
        groups.append(opening)
    return groups


def _token_end_s(token: Any) -> float:
    """Where a token ends: its DTW time, or whisper.cpp's timestamp estimate without one."""
    return float(token.t_dtw if token.t_dtw >= 0 else token.t1) / _CENTISECONDS


def _compression_ratio(text: bytes) -> float:
    return len(text) / len(zlib.compress(text)) if text else 0.0


@functools.cache
def _route_logs(binding: Any) -> None:
    """whisper.cpp's messages go to this module's logger (debug), once a process; the default
    stderr logger is restored at exit, before contexts freed late would call back into a
    finalising interpreter."""
    binding.whisper_log_set(lambda _level, text: log.debug("%s", str(text).rstrip()))
    atexit.register(binding.whisper_log_set, None)
