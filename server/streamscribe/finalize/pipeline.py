"""The versions of a transcript: v1 from the live finals, and the second pass that makes v(n+1)
from the recording and version n: re-decode, merge, diarize, enhance.

`SecondPass.run` blocks for as long as the decode takes; call it from a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from msgspec.structs import replace

from .. import wire
from ..asr.engine import DecodeOptions, Engine, Progress
from ..asr.models import load_engine
from ..audio import SAMPLE_RATE, SampleSource
from ..config import FinalizeSettings, ServerSettings
from ..errors import client_reason
from ..transcript import CaptionLayout, Segment, Transcript, VersionInfo, Word, stream_cut_warnings
from .diarize import Diarizer, SpeakerHints, assign_speakers, make_diarizer
from .enhance import paragraphs, readable_paragraphs, to_segments
from .merge import merge, number_words
from .overrides import recorded_settings
from .pieces import redecode
from .rewrite import RewriteClient

log = logging.getLogger(__name__)

EngineLoader = Callable[[str], Engine]

_KEPT_ENGINES = 2
# Share of the progress bar each stage gets.
_DECODE_SHARE = 0.7
_DIARIZE_SHARE = 0.25


def layout_of(settings: FinalizeSettings) -> CaptionLayout:
    return CaptionLayout(
        max_chars=settings.caption_max_chars,
        max_lines=settings.caption_max_lines,
        min_duration_s=settings.caption_min_duration_s,
        max_chars_per_s=settings.caption_max_chars_per_s,
        speaker_marks=settings.caption_speaker_marks,
    )


def first_version(
    transcript_id: str,
    finals: list[wire.Word],
    *,
    language: str | None,
    duration_s: float,
    live_model: str,
    settings: FinalizeSettings,
    warnings: list[str] | None = None,
) -> Transcript:
    """Version 1: the live finals exactly as streamed, numbered and laid out in caption lines."""
    words = number_words(
        [Word(id="", text=w.text, start=w.start, end=w.end, confidence=w.confidence) for w in finals]
    )
    return Transcript(
        id=transcript_id,
        version=1,
        language=language,
        duration_s=round(duration_s, 3),
        layout=layout_of(settings),
        segments=to_segments(paragraphs(words, settings.paragraph_pause_s), layout_of(settings)),
        info=VersionInfo(
            parent=None,
            created_at=time.time(),
            models={"live": live_model},
            settings={},
            timings_s={},
            warnings=warnings or [],
        ),
    )


class SecondPass:
    """Holds the loaded second-pass models and diarizers between jobs (one job at a time)."""

    def __init__(self, load_engine: EngineLoader, rewrite_api_key: str | None = None) -> None:
        """`load_engine` loads a model by name; prefer `for_server` unless a test needs another."""
        self._load_engine = load_engine
        self._rewrite_api_key = rewrite_api_key
        self._engines: dict[str, Engine] = {}
        self._diarizers: dict[tuple[str, str | None], Diarizer] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_server(cls, settings: ServerSettings) -> SecondPass:
        """Models loaded by name on the server's device (asr.models.load_engine), with its rewrite key."""
        return cls(lambda name: load_engine(settings, name), settings.rewrite_api_key)

    def prepare(self, settings: FinalizeSettings) -> None:
        """Load the model these settings name now, so that a wrong one (UnknownModel) is refused
        before any other work. Blocks while it loads."""
        with self._lock:
            self._engine(settings.model)

    def run(
        self, audio: SampleSource, parent: Transcript, settings: FinalizeSettings, on_progress: Progress
    ) -> Transcript:
        """Version parent.version + 1 of the same transcript (the store may renumber it)."""
        with self._lock:
            return self._run(audio, parent, settings, on_progress)

    def _run(
        self, audio: SampleSource, parent: Transcript, settings: FinalizeSettings, on_progress: Progress
    ) -> Transcript:
        timings: dict[str, float] = {}
        warnings = stream_cut_warnings(parent.info)
        began = time.perf_counter()
        language = settings.language or parent.language
        engine = self._engine(settings.model)
        decoded = [
            Word(
                id="",
                text=w.text,
                start=w.start_s,
                end=w.end_s,
                confidence=w.probability,
                source="second_pass",
            )
            for w in redecode(
                engine,
                audio,
                DecodeOptions(language, settings.prompt, settings.beam_size, whole_recording=True),
                lambda done: on_progress(_DECODE_SHARE * done),
            )
        ]
        # Speaker labels belong to this version's diarization: none carry over from the parent.
        words = [replace(word, speaker=None) for word in merge(parent.words, decoded)]
        timings["redecode_s"] = _lap(began)

        diarizer_name = "none"
        if settings.diarize:
            stage = time.perf_counter()
            words, diarizer_name = self._diarize(audio, words, settings, warnings, on_progress)
            timings["diarize_s"] = _lap(stage)
        on_progress(_DECODE_SHARE + _DIARIZE_SHARE)

        stage = time.perf_counter()
        segments = self._enhance(words, settings, warnings)
        timings["enhance_s"] = _lap(stage)
        timings["total_s"] = _lap(began)
        on_progress(1.0)
        models = {"second_pass": engine.name, "diarizer": diarizer_name}
        if settings.rewrite_url:
            models["rewrite"] = settings.rewrite_model
        return Transcript(
            id=parent.id,
            version=parent.version + 1,
            language=language,
            duration_s=round(audio.size / SAMPLE_RATE, 3),
            layout=layout_of(settings),
            segments=segments,
            info=VersionInfo(
                parent=parent.version,
                created_at=time.time(),
                models=models,
                settings=recorded_settings(settings),
                timings_s=timings,
                warnings=warnings,
            ),
        )

    def _engine(self, name: str) -> Engine:
        """Loaded models are kept for the next job, at most _KEPT_ENGINES of them."""
        if name not in self._engines:
            if len(self._engines) >= _KEPT_ENGINES:
                del self._engines[next(iter(self._engines))]
            self._engines[name] = self._load_engine(name)
        return self._engines[name]

    def _diarize(
        self,
        audio: SampleSource,
        words: list[Word],
        settings: FinalizeSettings,
        warnings: list[str],
        on_progress: Progress,
    ) -> tuple[list[Word], str]:
        """Words with speakers; a failing backend leaves them unlabelled and says why."""
        hints = SpeakerHints(settings.num_speakers, settings.min_speakers, settings.max_speakers)
        try:
            cache_key = (settings.diarizer, settings.pyannote_checkpoint)
            if cache_key not in self._diarizers:
                self._diarizers[cache_key] = make_diarizer(settings.diarizer, settings.pyannote_checkpoint)
            diarizer = self._diarizers[cache_key]
            turns = diarizer.diarize(
                audio, hints, lambda done: on_progress(_DECODE_SHARE + _DIARIZE_SHARE * done)
            )
        except Exception as exc:  # any backend failure: the version is still made, without speakers
            log.warning("diarization with %s failed: %s", settings.diarizer, exc)
            warnings.append(
                f"diarization ({settings.diarizer}) failed, no speaker labels ({client_reason(exc)})"
            )
            return words, "none"
        return assign_speakers(words, turns), diarizer.name

    def _enhance(self, words: list[Word], settings: FinalizeSettings, warnings: list[str]) -> list[Segment]:
        layout = layout_of(settings)
        try:
            groups = readable_paragraphs(words, settings.paragraph_pause_s)
        except Exception as exc:  # a bug in cleaning must not cost the transcript
            log.exception("enhancement failed")
            warnings.append(f"enhancement failed, text kept as decoded ({client_reason(exc)})")
            groups = paragraphs(words, settings.paragraph_pause_s)
        if settings.rewrite_url:
            client = RewriteClient(
                settings.rewrite_url,
                settings.rewrite_model,
                self._rewrite_api_key,
                settings.rewrite_timeout_s,
            )
            groups, rewrite_warnings = client.rewrite(groups)
            warnings.extend(rewrite_warnings)
        return to_segments(groups, layout)


def _lap(since: float) -> float:
    return round(time.perf_counter() - since, 3)
