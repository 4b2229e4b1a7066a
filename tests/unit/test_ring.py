import numpy as np
import pytest

from streamscribe.stream.ring import AudioRing


def test_reads_across_the_wrap_point() -> None:
    ring = AudioRing(10)
    ring.write(np.arange(7, dtype=np.float32))
    ring.write(np.arange(7, 13, dtype=np.float32))
    assert ring.start_samples == 3 and ring.end_samples == 13
    np.testing.assert_array_equal(ring.read(5, 13), np.arange(5, 13, dtype=np.float32))


def test_a_write_larger_than_the_ring_keeps_the_newest() -> None:
    ring = AudioRing(4)
    ring.write(np.arange(9, dtype=np.float32))
    np.testing.assert_array_equal(ring.read(5, 9), np.arange(5, 9, dtype=np.float32))


def test_evicted_or_future_ranges_are_refused() -> None:
    ring = AudioRing(4)
    ring.write(np.zeros(6, dtype=np.float32))
    with pytest.raises(ValueError):
        ring.read(1, 5)
    with pytest.raises(ValueError):
        ring.read(3, 7)
