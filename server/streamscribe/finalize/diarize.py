"""Who spoke when. Embedded default: resemblyzer's bundled speaker encoder over VAD speech,
clustered with an automatic speaker count. pyannote.audio when the operator supplies a local
pipeline checkpoint.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from msgspec.structs import replace

from ..audio import SAMPLE_RATE, SampleSource
from ..errors import DiarizationUnavailable
from ..transcript import Word
from ..vad import SpeechEnd, SpeechGate, SpeechStart, VoiceDetector

Progress = Callable[[float], None]

_FRAME_S = 0.01
_WINDOWS_PER_S = 4
"""resemblyzer embeds 1.6 s windows; this many start each second."""
_MAX_CLUSTERED_WINDOWS = 2000
_DETECT_SAMPLES = 60 * SAMPLE_RATE
"""Agglomerative clustering is quadratic: beyond this, cluster a spread subset, assign the rest."""
_MIN_SILHOUETTE = 0.25
"""Below this, the windows are one voice: one speaker (one speaker's windows score ~0.15, two ~0.45)."""
_SILHOUETTE_TOLERANCE = 0.1
"""Take the fewest speakers whose score is this close to the best: extra clusters of a few windows
score a little higher without being new voices."""
_MIN_SPEAKER_WINDOWS = 4 * _WINDOWS_PER_S
"""Without a speaker-count hint, each speaker must have ~4 s of speech: on short single-voice clips
(one LibriSpeech sentence, the JFK quote) smaller clusters split one voice in two."""
_DEFAULT_MAX_SPEAKERS = 8


@dataclass(frozen=True, slots=True)
class SpeakerHints:
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def candidates(self, windows: int) -> range:
        """The speaker counts to try; never more than there are windows."""
        if self.num_speakers is not None:
            return range(min(self.num_speakers, windows), min(self.num_speakers, windows) + 1)
        low = max(1, self.min_speakers or 1)
        high = max(low, self.max_speakers or _DEFAULT_MAX_SPEAKERS)
        return range(min(low, windows), min(high, windows) + 1)


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    start_s: float
    end_s: float
    speaker: str


class Diarizer(Protocol):
    name: str

    def diarize(self, audio: SampleSource, hints: SpeakerHints, on_progress: Progress) -> list[SpeakerTurn]:
        """Blocking; call from a worker thread."""
        ...


class ResemblyzerDiarizer:
    """Speaker embeddings of sliding windows over speech, clustered; no download, CPU only."""

    name = "resemblyzer"

    def __init__(self) -> None:
        self._encoder: Any = None
        self._lock = threading.Lock()

    def diarize(self, audio: SampleSource, hints: SpeakerHints, on_progress: Progress) -> list[SpeakerTurn]:
        encoder = self._load()
        regions = speech_regions(audio)
        embeddings: list[np.ndarray] = []
        spans: list[tuple[int, int]] = []
        for index, (start, end) in enumerate(regions):
            _whole, partials, slices = encoder.embed_utterance(
                audio[start:end], return_partials=True, rate=_WINDOWS_PER_S
            )
            for embedding, window in zip(partials, slices, strict=True):
                embeddings.append(embedding)
                spans.append((start + window.start, min(start + window.stop, end)))
            on_progress((index + 1) / len(regions))
        if not embeddings:
            return []
        labels = cluster(np.asarray(embeddings), hints)
        return _vote_turns(spans, labels, regions, audio.size)

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                try:
                    with warnings.catch_warnings():  # webrtcvad's pkg_resources deprecation notice
                        warnings.simplefilter("ignore", UserWarning)
                        from resemblyzer import VoiceEncoder
                except ImportError as exc:
                    raise DiarizationUnavailable(f"resemblyzer is not installed ({exc})") from exc
                self._encoder = VoiceEncoder("cpu", verbose=False)
            return self._encoder


class PyannoteDiarizer:
    """A pyannote.audio pipeline loaded from a local checkpoint (never downloaded)."""

    name = "pyannote"

    def __init__(self, checkpoint: str) -> None:
        self._checkpoint = checkpoint
        self._pipeline: Any = None

    def diarize(self, audio: SampleSource, hints: SpeakerHints, on_progress: Progress) -> list[SpeakerTurn]:
        pipeline = self._load()
        import torch

        options = {
            name: value
            for name, value in (
                ("num_speakers", hints.num_speakers),
                ("min_speakers", hints.min_speakers),
                ("max_speakers", hints.max_speakers),
            )
            if value is not None
        }
        waveform = torch.from_numpy(audio[0 : audio.size]).unsqueeze(0)  # pyannote takes it whole
        output = pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **options)
        annotation = getattr(output, "speaker_diarization", output)
        on_progress(1.0)
        return [
            SpeakerTurn(float(turn.start), float(turn.end), str(label))
            for turn, _track, label in annotation.itertracks(yield_label=True)
        ]

    def _load(self) -> Any:
        if self._pipeline is None:
            if not Path(self._checkpoint).exists():
                raise DiarizationUnavailable(f"pyannote checkpoint {self._checkpoint} does not exist")
            try:
                from pyannote.audio import Pipeline
            except ImportError as exc:
                raise DiarizationUnavailable(
                    "pyannote.audio is not installed (pip install 'streamscribe[pyannote]')"
                ) from exc
            self._pipeline = Pipeline.from_pretrained(self._checkpoint)
        return self._pipeline


def make_diarizer(backend: str, pyannote_checkpoint: str | None) -> Diarizer:
    if backend == "pyannote":
        if not pyannote_checkpoint:
            raise DiarizationUnavailable("the pyannote backend needs a local pipeline checkpoint")
        return PyannoteDiarizer(pyannote_checkpoint)
    return ResemblyzerDiarizer()


def speech_regions(audio: SampleSource) -> list[tuple[int, int]]:
    """Speech turns [start, end) in samples; short pauses (200 ms) already separate turns. The
    audio is read a minute at a time."""
    gate = SpeechGate(threshold=0.5, release=0.35, min_silence_samples=SAMPLE_RATE // 5, pad_samples=480)
    detector = VoiceDetector(gate)
    regions: list[tuple[int, int]] = []
    start: int | None = None
    events = (
        event
        for offset in range(0, audio.size, _DETECT_SAMPLES)
        for event in detector.receive_audio(audio[offset : offset + _DETECT_SAMPLES])
    )
    for event in events:
        if isinstance(event, SpeechStart):
            start = event.at_samples
        elif isinstance(event, SpeechEnd) and start is not None:
            regions.append((start, min(event.at_samples, audio.size)))
            start = None
    if start is not None:
        regions.append((start, audio.size))
    return regions


def cluster(embeddings: np.ndarray, hints: SpeakerHints) -> np.ndarray:
    """A speaker index per embedding: Ward clustering, the count chosen by silhouette score.
    The tree and the distances are computed once; each candidate count is a cut of the tree."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import pairwise_distances, silhouette_score

    subset = embeddings
    if len(embeddings) > _MAX_CLUSTERED_WINDOWS:
        subset = embeddings[np.linspace(0, len(embeddings) - 1, _MAX_CLUSTERED_WINDOWS).astype(int)]
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int)
    scored: list[tuple[float, np.ndarray]] = []
    candidates = hints.candidates(len(subset))
    tree = linkage(subset, method="ward")
    distances = pairwise_distances(subset, metric="cosine")
    for count in candidates:
        if count < 2:
            continue
        labels = fcluster(tree, count, criterion="maxclust") - 1
        if hints.num_speakers is None and np.bincount(labels).min() < _MIN_SPEAKER_WINDOWS:
            continue  # a "speaker" heard for a couple of seconds is one voice's variation
        clusters = int(labels.max()) + 1
        score = (
            float(silhouette_score(distances, labels, metric="precomputed"))
            if 1 < clusters < len(subset)
            else 0.0
        )
        scored.append((score, labels))
    best_score = max((score for score, _labels in scored), default=0.0)
    if not scored or (candidates.start < 2 and best_score < _MIN_SILHOUETTE):
        best_labels = np.zeros(len(subset), dtype=int)
    else:
        best_labels = next(labels for score, labels in scored if score >= best_score - _SILHOUETTE_TOLERANCE)
    if subset is embeddings:
        return best_labels
    centroids = np.stack(
        [subset[best_labels == label].mean(axis=0) for label in range(best_labels.max() + 1)]
    )
    return np.asarray(np.argmax(embeddings @ centroids.T, axis=1))


def _vote_turns(
    spans: list[tuple[int, int]], labels: np.ndarray, regions: list[tuple[int, int]], total_samples: int
) -> list[SpeakerTurn]:
    """Each 10 ms frame of speech goes to the speaker whose windows cover it most."""
    hop = int(_FRAME_S * SAMPLE_RATE)
    frames = total_samples // hop + 1
    votes = np.zeros((int(labels.max()) + 1, frames), dtype=np.int32)
    for (start, end), label in zip(spans, labels, strict=True):
        votes[label, start // hop : end // hop + 1] += 1
    winner = np.argmax(votes, axis=0)
    turns: list[SpeakerTurn] = []
    for start, end in regions:
        frame = start // hop
        while frame < end // hop:
            label = int(winner[frame])
            run_end = frame
            while run_end < end // hop and winner[run_end] == label:
                run_end += 1
            turns.append(SpeakerTurn(frame * _FRAME_S, run_end * _FRAME_S, f"cluster-{label}"))
            frame = run_end
    return turns


def assign_speakers(words: list[Word], turns: list[SpeakerTurn]) -> list[Word]:
    """Each word gets the speaker it overlaps most; a word in no turn gets the nearest turn's."""
    if not turns:
        return words
    names = _speaker_names(turns)
    starts = np.array([turn.start_s for turn in turns])
    ends = np.array([turn.end_s for turn in turns])
    labelled = []
    for word in words:
        overlap = np.minimum(ends, word.end) - np.maximum(starts, word.start)
        if overlap.max() > 0:
            index = int(np.argmax(overlap))
        else:
            middle = (word.start + word.end) / 2
            index = int(np.argmin(np.minimum(np.abs(starts - middle), np.abs(ends - middle))))
        labelled.append(replace(word, speaker=names[turns[index].speaker]))
    return labelled


def _speaker_names(turns: list[SpeakerTurn]) -> dict[str, str]:
    """Backend labels -> "Speaker 1", "Speaker 2"... in order of first appearance."""
    names: dict[str, str] = {}
    for turn in sorted(turns, key=lambda turn: turn.start_s):
        names.setdefault(turn.speaker, f"Speaker {len(names) + 1}")
    return names
