"""A long recording redecoded in pieces: faster-whisper computes the features of all the speech it
is given at once (a 3 h 50 min recording peaked at 3.65 GB), so the second pass hands it at most
`PIECE_S` at a time, cut in the quietest second near each piece's end, and carries the text so far
over as the next piece's prompt.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..asr.engine import AsrWord, DecodeOptions, Engine, Progress
from ..audio import SAMPLE_RATE, SampleSource

PIECE_S = 600.0
_PROMPT_CHARS = 200


def cut_points(audio: SampleSource, piece_s: float = PIECE_S) -> list[int]:
    """Sample offsets of the pieces' starts (0 first): each piece at most `piece_s` long, cut at
    the middle of the quietest second in its last tenth."""
    piece, search, second = int(piece_s * SAMPLE_RATE), int(piece_s * SAMPLE_RATE) // 10, SAMPLE_RATE
    starts = [0]
    while audio.size - starts[-1] > piece:
        window_start = starts[-1] + piece - search
        window = audio[window_start : starts[-1] + piece]
        energy = np.add.reduceat(window.astype(np.float64) ** 2, np.arange(0, window.size, second))
        starts.append(window_start + int(np.argmin(energy)) * second + second // 2)
    return starts


def redecode(
    engine: Engine,
    audio: SampleSource,
    options: DecodeOptions,
    on_progress: Progress,
    piece_s: float = PIECE_S,
) -> list[AsrWord]:
    """The words of the whole recording, decoded piece by piece (see the module); blocking."""
    starts = cut_points(audio, piece_s)
    ends = [*starts[1:], audio.size]
    words: list[AsrWord] = []
    for start, end in zip(starts, ends, strict=True):
        said = " ".join(word.text for word in words)[-_PROMPT_CHARS:]
        prompt = " ".join(part for part in (options.prompt, said) if part) or None
        offset_s = start / SAMPLE_RATE

        def progress(done: float, start: int = start, end: int = end) -> None:
            on_progress((start + done * (end - start)) / audio.size)

        piece = engine.transcribe(audio[start:end], replace(options, prompt=prompt), progress)
        words.extend(
            replace(word, start_s=word.start_s + offset_s, end_s=word.end_s + offset_s) for word in piece
        )
    return words
