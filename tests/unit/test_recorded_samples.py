"""A recording read a slice at a time (store/recording.RecordedSamples) gives the samples the
recorder wrote, whichever slice is asked for."""

from pathlib import Path

import numpy as np
import pytest

from streamscribe.store.recording import AudioRecorder, RecordedSamples


def test_slices_of_a_recording_are_the_samples_written(tmp_path: Path) -> None:
    written = np.random.default_rng(0).uniform(-1, 1, 50_000).astype(np.float32)
    recorder = AudioRecorder(tmp_path / "a.wav")
    for offset in range(0, written.size, 7_000):
        recorder.write(written[offset : offset + 7_000])
    recorder.close()
    recording = RecordedSamples(tmp_path / "a.wav")
    whole = recording[0 : recording.size]
    assert recording.size == written.size and whole.dtype == np.float32
    assert np.allclose(whole, written, atol=1e-4)  # 16-bit PCM on disk
    for part in (slice(0, 1), slice(12_345, 23_456), slice(49_000, 60_000), slice(10, 5)):
        assert np.array_equal(recording[part], whole[part]), part
    with pytest.raises(ValueError):
        recording[::2]
