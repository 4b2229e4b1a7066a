"""A long recording cut into pieces for the second pass (finalize/pieces.py), pure logic: the
cuts fall in the quietest second, and words come back in recording time with the text so far as
each next piece's prompt."""

from collections.abc import Sequence

import numpy as np

from streamscribe.asr.engine import AsrWord, DecodeOptions, LiveWindow, Progress
from streamscribe.audio import SAMPLE_RATE, Samples
from streamscribe.finalize.pieces import cut_points, redecode


def loud(seconds: float) -> Samples:
    return np.full(int(seconds * SAMPLE_RATE), 0.5, dtype=np.float32)


def test_a_short_recording_is_one_piece() -> None:
    assert cut_points(loud(30), piece_s=60) == [0]


def test_each_cut_falls_in_the_quietest_second_before_the_piece_limit() -> None:
    audio = loud(150)
    audio[55 * SAMPLE_RATE : 56 * SAMPLE_RATE] = 0.0  # a pause 55-56 s, in the last tenth of 60 s
    starts = cut_points(audio, piece_s=60)
    assert starts[:2] == [0, 55 * SAMPLE_RATE + SAMPLE_RATE // 2]
    assert all(b - a <= 60 * SAMPLE_RATE for a, b in zip(starts, [*starts[1:], audio.size], strict=True))


class Recorder:
    """An engine that says "word" once per piece, 1 s in, and keeps the prompts it was given."""

    name = "fake"
    parallel_decodes = 1
    batch_size = 1

    def __init__(self) -> None:
        self.prompts: list[str | None] = []

    def transcribe(
        self, audio: Samples, options: DecodeOptions, on_progress: Progress | None = None
    ) -> list[AsrWord]:
        self.prompts.append(options.prompt)
        if on_progress is not None:
            on_progress(1.0)
        return [AsrWord(f"w{len(self.prompts)}", 1.0, 1.5, 0.9)]

    def decode_windows(self, windows: Sequence[LiveWindow]) -> list[list[AsrWord]]:
        raise NotImplementedError


def test_words_come_back_in_recording_time_with_the_text_so_far_as_prompt() -> None:
    engine = Recorder()
    progress: list[float] = []
    words = redecode(engine, loud(150), DecodeOptions(prompt="Kennedy."), progress.append, piece_s=60)  # type: ignore[arg-type]
    assert len(words) == 3 and words[0].start_s == 1.0 and words[1].start_s > 50.0
    assert engine.prompts[0] == "Kennedy." and engine.prompts[2] == "Kennedy. w1 w2"
    assert progress[-1] == 1.0 and progress == sorted(progress)
