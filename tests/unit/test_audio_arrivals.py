"""The bookkeeping behind the final-word lag: when each stretch of a session's audio arrived, and
one session's share of the metrics."""

from streamscribe.live.meter import AudioArrivals, SessionMeter
from streamscribe.metrics import Metrics
from streamscribe.wire import Word


def test_each_sample_is_found_in_the_frame_that_brought_it() -> None:
    arrivals = AudioArrivals(resolution_samples=800)
    for index, at_s in enumerate((10.0, 10.1, 10.2)):
        arrivals.receive((index + 1) * 1600, at_s)
    assert arrivals.arrived_by_s(1) == 10.0
    assert arrivals.arrived_by_s(1600) == 10.0, "the end is exclusive: sample 1599 came in the first frame"
    assert arrivals.arrived_by_s(1601) == 10.1
    assert arrivals.arrived_by_s(4800) == 10.2
    assert arrivals.arrived_by_s(99_999) == 10.2, "a word timed past the audio: the newest audio"


def test_nothing_has_arrived_before_any_audio() -> None:
    assert AudioArrivals().arrived_by_s(0) is None


def test_short_frames_are_merged_to_the_resolution_keeping_the_later_time() -> None:
    arrivals = AudioArrivals(resolution_samples=800)
    for index in range(20):  # 10 ms frames (160 samples), each read 10 ms after the one before
        arrivals.receive((index + 1) * 160, index * 0.01)
    assert arrivals.arrived_by_s(100) == 0.04, "by then the first 800 samples had all arrived"
    assert arrivals.arrived_by_s(900) == 0.09
    assert arrivals.arrived_by_s(3200) == 0.19


def test_the_marks_are_bounded_and_audio_older_than_them_counts_as_arriving_later() -> None:
    arrivals = AudioArrivals(resolution_samples=1, max_marks=4)
    for index in range(10):
        arrivals.receive((index + 1) * 100, float(index))
    assert arrivals.arrived_by_s(50) == 6.0, "the oldest kept mark: a later time, never an earlier one"
    assert arrivals.arrived_by_s(1000) == 9.0


def test_a_lookup_lets_go_of_the_marks_before_it() -> None:
    arrivals = AudioArrivals(resolution_samples=1)
    for index in range(10):
        arrivals.receive((index + 1) * 100, float(index))
    assert arrivals.arrived_by_s(550) == 5.0
    assert arrivals.arrived_by_s(100) == 5.0, "finals come in order: what is before them is gone"


def test_a_meter_counts_the_audio_the_words_and_a_lag_per_word() -> None:
    metrics = Metrics()
    meter = SessionMeter(metrics, "websocket")
    meter.took_audio(16_000, 100.0)
    meter.took_audio(24_000, 100.5)
    meter.sent_final([Word("ask", 0.2, 0.9, 0.9), Word("not", 1.0, 1.4, 0.9)], 101.25)
    labels = {"transport": "websocket"}
    value = metrics.registry.get_sample_value
    assert value("streamscribe_audio_received_seconds_total", labels) == 1.5
    assert value("streamscribe_final_words_total", labels) == 2
    assert value("streamscribe_final_word_lag_seconds_count", labels) == 2
    assert value("streamscribe_final_word_lag_seconds_sum", labels) == 1.25 + 0.75
    assert value("streamscribe_final_words_total", {"transport": "upload"}) is None
