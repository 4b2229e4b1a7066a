"""The speech the benchmarks play: LibriSpeech dev-clean joined into one stream, the two-speaker
conversation, pyannote's meeting sample and JFK, from ../shared/testdata; and mp3 encoding for
uploads, as a voice memo would be."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..audio import SAMPLE_RATE, Samples, read_file

DEFAULT_TESTDATA = Path(__file__).resolve().parents[4] / "shared" / "testdata"
"""../shared/testdata beside a source checkout."""
GAP_S = 0.6


@dataclass(frozen=True, slots=True)
class Corpus:
    name: str
    audio: Samples
    reference: str
    """Empty where only speaker turns are known."""
    rttm: Path | None = None
    """The reference speaker turns, where known."""

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE


def librispeech_stream(testdata: Path, minutes: float, skip_minutes: float = 0.0) -> Corpus:
    """dev-clean utterances in a fixed order, joined with short silences, up to `minutes`, after
    the utterances that fill the first `skip_minutes` (other speakers than the start's)."""
    pieces: list[Samples] = []
    texts: list[str] = []
    skipped = total = 0
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    for flac, text in _librispeech_utterances(testdata / "librispeech-dev-clean"):
        audio = read_file(flac)
        if skipped < skip_minutes * 60 * SAMPLE_RATE:
            skipped += audio.size + gap.size
            continue
        pieces += [audio, gap]
        texts.append(text)
        total += audio.size + gap.size
        if total >= minutes * 60 * SAMPLE_RATE:
            break
    if not pieces:
        raise ValueError(f"dev-clean holds less than {skip_minutes:g} minutes")
    skip = f"-from{skip_minutes:g}min" if skip_minutes else ""
    return Corpus(f"librispeech{skip}-{minutes:g}min", np.concatenate(pieces), " ".join(texts))


def _librispeech_utterances(root: Path) -> Iterator[tuple[Path, str]]:
    for listing in sorted(root.glob("*/*/*.trans.txt")):
        for line in listing.read_text().splitlines():
            utterance_id, text = line.split(" ", 1)
            yield listing.parent / f"{utterance_id}.flac", text


def conversation(testdata: Path) -> Corpus:
    base = testdata / "conversations" / "conv2spk_1272_84"
    with base.with_suffix(".transcript.tsv").open() as handle:
        reference = " ".join(row["text"] for row in csv.DictReader(handle, delimiter="\t"))
    return Corpus(
        "conversation-2spk", read_file(base.with_suffix(".wav")), reference, base.with_suffix(".rttm")
    )


def meeting(testdata: Path) -> Corpus:
    """pyannote's 30 s two-person sample: real conversation with overlap; speaker turns only."""
    base = testdata / "pyannote" / "sample"
    return Corpus(
        "meeting-pyannote-sample", read_file(base.with_suffix(".wav")), "", base.with_suffix(".rttm")
    )


def load_corpus(name: str, testdata: Path, minutes: float, skip_minutes: float = 0.0) -> Corpus:
    loaders = {
        "librispeech": lambda: librispeech_stream(testdata, minutes, skip_minutes),
        "conversation": lambda: conversation(testdata),
        "jfk": lambda: jfk(testdata),
        "meeting": lambda: meeting(testdata),
    }
    return loaders[name]()


def jfk(testdata: Path) -> Corpus:
    return Corpus("jfk", read_file(testdata / "jfk" / "jfk.wav"), (testdata / "jfk" / "jfk.txt").read_text())


def write_mp3(audio: Samples, path: Path) -> None:
    """16 kHz mono audio as a 64 kbit/s mp3."""
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = 64000
        frame_samples = 1152
        for offset in range(0, audio.size, frame_samples):
            piece = audio[offset : offset + frame_samples].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = offset
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
