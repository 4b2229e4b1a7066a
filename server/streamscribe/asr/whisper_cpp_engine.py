"""whisper.cpp (through pywhispercpp's C-API binding) on the CPU, or Metal on Apple silicon.

whisper.cpp decodes one audio per call; there is no batch across streams to build. Each decode
worker owns a context (its own copy of the weights: about 110 MB for tiny.en), and a batch of
live windows is decoded one window after another on it. Word times come from whisper.cpp's DTW
over the model's alignment heads (a token's DTW time is where it ends); a word's probability is
the mean of its tokens', as in faster-whisper.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import platform
import queue
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..audio import SAMPLE_RATE, Samples
from ..errors import UnknownModel
from .engine import AsrWord, DecodeOptions, LiveWindow, Progress
from .filters import (
    END_MARGIN_S,
    MIN_AVG_LOGPROB,
    NO_SPEECH_PROB,
    compression_ratio,
    has_letters,
    looks_hallucinated,
    without_squeezed_tail,
)
from .ggml_file import GgmlHparams, check_ggml_file
from .windows import APPENDED, PREPENDED, encoder_input_frames

log = logging.getLogger(__name__)

_CENTISECONDS = 100.0
_FRAMES_PER_CONTEXT = 2
"""Mel frames per encoder position (Whisper's convolution strides by 2)."""
_MAX_BEAM = 8
"""whisper.cpp's WHISPER_MAX_DECODERS: a larger beam fails the whole decode."""
_CORES_PER_DEFAULT_WORKER = 4
"""whisper.cpp gains from a decode's threads where CTranslate2 gains from decodes at once: on 2
cores one 8 s window took 0.73 s with 2 threads and 1.24 s with 1 (loadtests/README.md, "Engines")."""
_MAX_DEFAULT_WORKERS = 4
"""Each context holds its own weights: not 64 copies of a large model."""
_CHUNK_S = 30.0
"""Repetition is judged over runs of segments of at most Whisper's 30 s window."""
_MIN_AUDIO_S = 0.1
_UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})
"""Written without spaces between words: Whisper splits these at each token."""
_ERROR = 4
_LOG_LEVELS = {3: logging.WARNING, _ERROR: logging.ERROR}
"""ggml's warning and error levels; the rest (info, debug, continuations) is debug here."""
_GPU_BACKEND = re.compile(r"using ([A-Za-z]+)\d* backend")
"""whisper.cpp names the GPU device it decodes on as it loads: "using MTL0 backend"."""
_DEVICES = {"MTL": "metal", "CUDA": "cuda"}


def alignment_heads(hparams: GgmlHparams) -> str:
    """The name of whisper.cpp's alignment-head preset for the OpenAI model of these dimensions;
    the top half of the text layers where the size is ambiguous (large v1/v2) or the decoder is
    not OpenAI's (distil-whisper: a preset naming a layer the model lacks crashes whisper.cpp)."""
    sizes = {384: ("TINY", 4), 512: ("BASE", 6), 768: ("SMALL", 12), 1024: ("MEDIUM", 24)}
    size, text_layers = sizes.get(hparams.n_text_state, ("", 0))
    if size and hparams.n_text_layer == text_layers and hparams.n_vocab in (51864, 51865):
        return f"WHISPER_AHEADS_{size}{'' if hparams.multilingual else '_EN'}"
    if hparams.n_text_state == 1280 and hparams.n_vocab == 51866 and hparams.n_text_layer in (4, 32):
        return "WHISPER_AHEADS_LARGE_V3_TURBO" if hparams.n_text_layer == 4 else "WHISPER_AHEADS_LARGE_V3"
    return "WHISPER_AHEADS_N_TOP_MOST"


def load_outcome(messages: list[tuple[int, str]], use_gpu: bool) -> tuple[str, str | None]:
    """Where a context whisper.cpp just loaded decodes (cpu, metal, cuda, ...), and why it is
    unusable (None when it is usable), from what whisper.cpp logged while loading it: a failed
    load still answers with a context, one that crashes when used. An error about a Core ML
    encoder or a GPU that would not start is not fatal: whisper.cpp goes on without them."""
    lines = [(level, line.strip()) for level, message in messages for line in message.splitlines()]
    fatal = [
        line
        for level, line in lines
        if level == _ERROR
        and "Core ML" not in line
        and not ("failed to initialize" in line and "backend" in line)
    ]
    if fatal:
        return "cpu", "; ".join(dict.fromkeys(fatal))
    if not use_gpu:
        return "cpu", None
    for _, line in lines:
        if match := _GPU_BACKEND.search(line):
            return _DEVICES.get(match[1], match[1].lower()), None
    return "cpu", None


def _apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


class WhisperCppEngine:
    """A ggml Whisper model in `workers` whisper.cpp contexts (0: one per 4 cores on the CPU, at
    most 4, the cores shared among them; one on a GPU); `decode_windows` and `transcribe` may be
    called from that many threads at once. Raises UnknownModel when the file or the device cannot
    be used."""

    runtime = "whisper.cpp"
    batch_size = 1
    """A window's words are out as soon as it is decoded: a batch would only hold them back."""

    def __init__(self, name: str, ggml_path: Path, device: str, cpu_threads: int, workers: int = 1) -> None:
        self._binding = _whisper_log().binding
        self.hparams = check_ggml_file(ggml_path)
        self._requested = device
        if device == "auto":
            device = "metal" if _apple_silicon() else "cpu"
        if device == "metal" and not _apple_silicon():
            raise UnknownModel("device metal needs a Mac with Apple silicon; use cpu (or auto) here")
        cores = os.cpu_count() or 1
        if workers == 0:
            workers = (
                min(max(1, cores // _CORES_PER_DEFAULT_WORKER), _MAX_DEFAULT_WORKERS)
                if device == "cpu"
                else 1
            )
        self.name = name
        self.device = device
        self.multilingual = self.hparams.multilingual
        self.parallel_decodes = workers
        self._threads = cpu_threads or max(1, cores // workers)
        contexts: list[Any] = []
        self._contexts: queue.SimpleQueue[Any] = queue.SimpleQueue()
        weakref.finalize(self, _free, self._binding, contexts).atexit = False
        for _ in range(workers):
            contexts.append(self._load(ggml_path))
            self._contexts.put(contexts[-1])

    def _load(self, ggml_path: Path) -> Any:
        binding = self._binding
        params = binding.whisper_context_default_params()
        params.use_gpu = self.device != "cpu"
        params.flash_attn = False  # whisper.cpp's DTW word times need the attention weights
        params.dtw_token_timestamps = True
        params.dtw_aheads_preset = getattr(
            binding.whisper_alignment_heads_preset, alignment_heads(self.hparams)
        )
        params.dtw_n_top = max(1, self.hparams.n_text_layer // 2)
        with _whisper_log().capture() as messages:
            context = binding.whisper_init_from_file_with_params(str(ggml_path), params)
        used, refusal = load_outcome(messages, params.use_gpu)
        if refusal is None and used != self.device and self._requested != "auto":
            refusal = f"device {self.device} asked for, but this pywhispercpp build decodes on {used}"
        if refusal is not None:
            binding.whisper_free(context)
            raise UnknownModel(
                f"whisper.cpp cannot load {ggml_path}: {refusal} (README: whisper.cpp and Metal)"
            )
        if used != self.device:
            log.warning(
                "whisper.cpp decodes on %s: this pywhispercpp build has no %s backend", used, self.device
            )
            self.device = used
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
        duration_s = audio.size / SAMPLE_RATE
        if duration_s < _MIN_AUDIO_S:  # whisper.cpp decodes none of it (or, given none, its last audio again)
            return []
        binding = self._binding
        params = self._params(options, audio.size)
        if on_progress is not None:
            params.print_progress = True  # the callback, not a print, receives it
            params.set_progress_callback(lambda percent: on_progress(percent / 100))
        status = binding.whisper_full(context, params, audio, audio.size)
        if status != 0:
            raise RuntimeError(f"whisper.cpp failed ({status}) to decode {duration_s:.1f} s of audio")
        language = binding.whisper_lang_str(binding.whisper_full_lang_id(context))
        split = _unspaced_groups if language in _UNSPACED_LANGUAGES else _word_groups
        words: list[AsrWord] = []
        for chunk in self._chunks(context):
            words.extend(self._chunk_words(context, chunk, split, duration_s))
        return without_squeezed_tail(words)

    def _params(self, options: DecodeOptions, samples: int) -> Any:
        binding = self._binding
        beam_size = min(options.beam_size, _MAX_BEAM)
        strategy = binding.whisper_sampling_strategy
        params = binding.whisper_full_default_params(
            strategy.WHISPER_SAMPLING_BEAM_SEARCH if beam_size > 1 else strategy.WHISPER_SAMPLING_GREEDY
        )
        if beam_size > 1:
            params.beam_search = {"beam_size": beam_size, "patience": -1.0}
        params.n_threads = self._threads
        params.print_progress = params.print_realtime = params.print_timestamps = False
        params.language = options.language or ("" if self.multilingual else "en")  # "": detect it
        if options.prompt and options.prompt.strip():
            params.initial_prompt = " " + options.prompt.strip()
        # The context keeps the last call's text; a decode must not be prompted by another
        # stream's words. Within one call each 30 s is still conditioned on the one before.
        params.no_context = True
        params.token_timestamps = True
        params.suppress_nst = True
        params.temperature = 0.0
        params.temperature_inc = 0.0
        params.no_speech_thold = NO_SPEECH_PROB
        params.logprob_thold = MIN_AVG_LOGPROB
        if not options.whole_recording:
            content_frames = -(-samples * 100 // SAMPLE_RATE)
            params.audio_ctx = encoder_input_frames(content_frames) // _FRAMES_PER_CONTEXT
        return params

    def _chunks(self, context: Any) -> list[list[int]]:
        """The decode's segments in runs of consecutive ones that span at most 30 s, the window
        Whisper decodes at once (a live window is one run)."""
        binding = self._binding
        chunks: list[list[int]] = []
        chunk_start_s = 0.0
        for segment in range(binding.whisper_full_n_segments(context)):
            start_s = binding.whisper_full_get_segment_t0(context, segment) / _CENTISECONDS
            end_s = binding.whisper_full_get_segment_t1(context, segment) / _CENTISECONDS
            if not chunks or end_s - chunk_start_s > _CHUNK_S:
                chunks.append([])
                chunk_start_s = start_s
            chunks[-1].append(segment)
        return chunks

    def _chunk_words(
        self,
        context: Any,
        segments: list[int],
        split: Callable[[list[bytes]], list[list[int]]],
        duration_s: float,
    ) -> list[AsrWord]:
        """The words of one chunk's segments, none if its text is a repetition loop (whisper.cpp
        itself drops a chunk it finds to be no speech)."""
        binding = self._binding
        end_of_text = binding.whisper_token_eot(context)
        tokens = [
            token
            for segment in segments
            for token in (
                binding.whisper_full_get_token_data(context, segment, index)
                for index in range(binding.whisper_full_n_tokens(context, segment))
            )
            if token.id < end_of_text
        ]
        pieces = [binding.whisper_token_to_bytes(context, token.id) for token in tokens]
        text = b"".join(pieces).decode("utf-8", errors="replace").strip()
        if not tokens or looks_hallucinated(compression_ratio(text), 0.0, 0.0):
            return []
        words: list[AsrWord] = []
        segment_start_s = binding.whisper_full_get_segment_t0(context, segments[0]) / _CENTISECONDS
        previous_end_s = min(segment_start_s, _token_end_s(tokens[0]))
        for group in split(pieces):
            members = [tokens[index] for index in group]
            end_s = max(_token_end_s(members[-1]), previous_end_s)
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
    straddles tokens are all in, and closing punctuation joins the word before it."""
    groups: list[list[int]] = []
    pending: list[int] = []
    for index in range(len(pieces)):
        pending.append(index)
        try:
            text = b"".join(pieces[member] for member in pending).decode("utf-8").strip()
        except UnicodeDecodeError:
            continue
        if groups and text and all(character in APPENDED for character in text):
            groups[-1].extend(pending)  # closing punctuation ("。") ends the word before it
        else:
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
        if is_punctuation and opens and stripped.decode("utf-8", errors="replace") in PREPENDED:
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


def _free(binding: Any, contexts: list[Any]) -> None:
    """An engine's contexts, freed when the engine is collected (not at exit: a decode thread
    abandoned at shutdown may still use one)."""
    for context in contexts:
        binding.whisper_free(context)


class _WhisperLog:
    """whisper.cpp's messages, into this module's logger (its warnings and errors as such, the
    rest as debug), and those of a loading thread captured while it loads (`capture`)."""

    def __init__(self, binding: Any) -> None:
        self.binding = binding
        self._lock = threading.Lock()
        self._loading: tuple[int, list[tuple[int, str]]] | None = None
        binding.whisper_log_set(self._receive)

    def _receive(self, level: int, text: str) -> None:
        message = str(text).rstrip()
        loading = self._loading
        if loading is not None and loading[0] == threading.get_ident():
            loading[1].append((int(level), message))
        log.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", message)

    @contextmanager
    def capture(self) -> Iterator[list[tuple[int, str]]]:
        """The (level, message) pairs this thread logs until the block ends; one load at a time."""
        with self._lock:
            captured: list[tuple[int, str]] = []
            self._loading = (threading.get_ident(), captured)
            try:
                yield captured
            finally:
                self._loading = None

    def restore(self) -> None:
        """At exit: whisper.cpp's own logger again, before the interpreter this one calls into ends."""
        self.binding.whisper_log_set(None)


@functools.cache
def _whisper_log() -> _WhisperLog:
    """The binding with its log routed, once a process; raises UnknownModel without pywhispercpp."""
    try:
        import _pywhispercpp
    except ImportError as exc:
        raise UnknownModel(
            "the whisper.cpp engine needs pywhispercpp (pip install pywhispercpp; on a Mac run "
            "scripts/install-macos.sh)"
        ) from exc
    routed = _WhisperLog(_pywhispercpp)
    atexit.register(routed.restore)
    return routed
