"""Progress of a replayed file's live pass (stream/progress.py), pure logic."""

from streamscribe.audio import SAMPLE_RATE
from streamscribe.stream.progress import FileProgress


def test_steps_are_a_hundredth_of_the_declared_length_but_at_least_a_second() -> None:
    progress = FileProgress(total_s=300.0)
    assert progress.receive_processed(2 * SAMPLE_RATE) is None
    assert progress.receive_processed(3 * SAMPLE_RATE) == (3.0, 300.0)
    assert progress.receive_processed(5 * SAMPLE_RATE) is None
    assert progress.receive_processed(6 * SAMPLE_RATE) == (6.0, 300.0)
    assert FileProgress(total_s=20.0).receive_processed(SAMPLE_RATE) == (1.0, 20.0)


def test_without_a_declared_length_steps_are_five_seconds_and_the_end_says_the_real_length() -> None:
    progress = FileProgress(total_s=None)
    assert progress.receive_processed(4 * SAMPLE_RATE) is None
    assert progress.receive_processed(5 * SAMPLE_RATE) == (5.0, None)
    assert progress.receive_finished(7 * SAMPLE_RATE + 8000) == (7.5, 7.5)
    assert progress.receive_finished(8 * SAMPLE_RATE) is None, "the last report comes once"
    assert progress.receive_processed(20 * SAMPLE_RATE) is None


def test_processed_audio_never_exceeds_what_the_file_declares() -> None:
    assert FileProgress(total_s=10.0).receive_processed(12 * SAMPLE_RATE) == (10.0, 10.0)
