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


@pytest.mark.parametrize(
    ("encoding", "silence", "loudest"),
    [("pcm_mulaw", 0xFF, 0x80), ("pcm_alaw", 0xD5, 0xAA)],
)
def test_telephony_g711_codes_decode_to_samples(encoding: str, silence: int, loudest: int) -> None:
    converter = PcmConverter(encoding, SAMPLE_RATE, 1)
    samples = converter.convert(bytes([silence, loudest]))
    assert abs(samples[0]) < 0.001, "the silent code is (nearly) zero"
    assert samples[1] > 0.97, "the loudest positive code is near full scale"


def test_an_8k_mulaw_call_becomes_16k_keeping_the_pitch() -> None:
    converter = PcmConverter("pcm_mulaw", 8000, 1)
    codes = mulaw_encode(tone(8000, 1.0, hz=440.0))
    samples = np.concatenate([converter.convert(codes), converter.flush()])
    spectrum = np.abs(np.fft.rfft(samples[: SAMPLE_RATE // 2]))
    assert abs(np.argmax(spectrum) * 2 - 440.0) < 5


def mulaw_encode(samples: np.ndarray) -> bytes:
    """The textbook mu-law compander, quantised to 8 bits as a phone line sends it."""
    compressed = np.sign(samples) * np.log1p(255 * np.abs(samples)) / np.log1p(255)
    levels = np.round((compressed + 1) / 2 * 255).astype(np.int32)  # 0..255, 255 the loudest positive
    codes = np.where(levels >= 128, 0xFF - (levels - 128), 0x7F - (127 - levels))
    return codes.astype(np.uint8).tobytes()
