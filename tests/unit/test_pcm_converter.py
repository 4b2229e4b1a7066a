import numpy as np
import pytest

from streamscribe.audio import SAMPLE_RATE, PcmConverter
from streamscribe.errors import UnsupportedAudio


def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_a_frame_may_end_in_the_middle_of_a_sample() -> None:
    converter = PcmConverter("pcm_s16le", SAMPLE_RATE, 1)
    data = (tone(SAMPLE_RATE, 0.1) * 32767).astype("<i2").tobytes()
    first, second = converter.convert(data[:101]), converter.convert(data[101:])
    assert first.size + second.size == SAMPLE_RATE // 10
    np.testing.assert_allclose(np.concatenate([first, second]), tone(SAMPLE_RATE, 0.1), atol=1e-4)


def test_stereo_48k_float_becomes_16k_mono_keeping_the_pitch() -> None:
    converter = PcmConverter("pcm_f32le", 48000, 2)
    left = tone(48000, 1.0, hz=440.0)
    stereo = np.stack([left, left], axis=1).astype("<f4").tobytes()
    samples = np.concatenate([converter.convert(stereo), converter.flush()])
    assert abs(samples.size - SAMPLE_RATE) <= 64
    spectrum = np.abs(np.fft.rfft(samples[: SAMPLE_RATE // 2]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / (SAMPLE_RATE // 2)
    assert abs(peak_hz - 440.0) < 5


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [("opus", 16000, 1), ("pcm_s16le", 4000, 1), ("pcm_s16le", 96000, 1), ("pcm_s16le", 16000, 6)],
)
def test_unsupported_formats_are_refused_with_a_reason(encoding: str, rate: int, channels: int) -> None:
    with pytest.raises(UnsupportedAudio) as caught:
        PcmConverter(encoding, rate, channels)
    assert caught.value.code == "unsupported_audio" and caught.value.message
