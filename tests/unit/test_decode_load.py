"""Admission's load measure (live/load.py): pure logic over given times."""

from streamscribe.live.load import DecodeLoad


def test_with_no_recent_decode_every_stream_is_admitted() -> None:
    load = DecodeLoad(window_s=20.0)
    assert load.recent_p95_s(100.0) is None
    assert load.admits(100.0, live_streams=50, limit_s=1.0)
    load.record(100.0, 5.0)
    assert load.recent_p95_s(121.0) is None, "a turnaround older than the window no longer counts"
    assert load.admits(121.0, live_streams=50, limit_s=1.0)


def test_one_more_stream_is_predicted_to_stretch_the_p95_by_n_plus_one_over_n() -> None:
    load = DecodeLoad(window_s=20.0)
    for n in range(100):
        load.record(10.0 + n * 0.1, 0.2 if n < 90 else 0.8)
    assert 0.2 < (load.recent_p95_s(20.0) or 0) <= 0.8
    load = DecodeLoad(window_s=20.0)
    for _ in range(20):
        load.record(10.0, 0.8)
    assert load.admits(10.0, live_streams=4, limit_s=1.0), "0.8 * 5/4 = 1.0"
    assert not load.admits(10.0, live_streams=3, limit_s=1.0), "0.8 * 4/3 > 1.0"
