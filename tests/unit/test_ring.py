import numpy as np
import pytest

from streamscribe.stream.ring import AudioRing


def ramp(start: int, stop: int) -> np.ndarray:
    """Distinct samples in [-1, 1) that survive 16-bit storage to within one step."""
    return np.arange(start, stop, dtype=np.float32) / 100


def test_reads_across_the_wrap_point() -> None:
    ring = AudioRing(10)
    ring.write(ramp(0, 7))
    ring.write(ramp(7, 13))
    assert ring.start_samples == 3 and ring.end_samples == 13
    np.testing.assert_allclose(ring.read(5, 13), ramp(5, 13), atol=1 / 32768)


def test_a_write_larger_than_the_ring_keeps_the_newest() -> None:
    ring = AudioRing(4)
    ring.write(ramp(0, 9))
    np.testing.assert_allclose(ring.read(5, 9), ramp(5, 9), atol=1 / 32768)


def test_samples_beyond_full_scale_are_clipped() -> None:
    ring = AudioRing(4)
    ring.write(np.array([2.0, -2.0, 0.5], dtype=np.float32))
    np.testing.assert_allclose(ring.read(0, 3), [32767 / 32768, -1.0, 0.5], atol=1e-7)


def test_16_bit_input_goes_through_unchanged() -> None:
    pcm = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)
    ring = AudioRing(8)
    ring.write(pcm.astype(np.float32) / 32768)
    np.testing.assert_array_equal(ring.read(0, 6) * 32768, pcm.astype(np.float32))


def test_evicted_or_future_ranges_are_refused() -> None:
    ring = AudioRing(4)
    ring.write(np.zeros(6, dtype=np.float32))
    with pytest.raises(ValueError):
        ring.read(1, 5)
    with pytest.raises(ValueError):
        ring.read(3, 7)
