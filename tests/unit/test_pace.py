"""The pace of a live stream's audio (live/pace.py), pure logic."""

import math

from streamscribe.live.pace import AudioPace


def test_a_burst_is_taken_at_once_then_audio_comes_at_the_speed() -> None:
    pace = AudioPace(speed=10.0, burst_s=60.0, now_s=0.0)
    assert [pace.delay_s(30.0, 0.0) for _ in range(2)] == [0.0, 0.0]
    assert pace.delay_s(20.0, 0.0) == 2.0, "20 s past the burst wait 2 s at 10x"
    assert pace.delay_s(10.0, 2.0) == 1.0, "the wait was spent: the next 10 s wait their own second"


def test_a_client_at_real_time_never_waits() -> None:
    pace = AudioPace(speed=10.0, burst_s=5.0, now_s=0.0)
    assert all(pace.delay_s(0.5, step * 0.5) == 0.0 for step in range(1, 2000))


def test_the_allowance_refills_up_to_the_burst_only() -> None:
    pace = AudioPace(speed=10.0, burst_s=5.0, now_s=0.0)
    assert pace.delay_s(5.0, 1000.0) == 0.0
    assert pace.delay_s(10.0, 1000.0) == 1.0, "an hour idle saves no more than the burst"


def test_infinite_speed_takes_everything() -> None:
    pace = AudioPace(speed=math.inf, burst_s=0.0, now_s=0.0)
    assert pace.delay_s(3600.0, 0.0) == 0.0
