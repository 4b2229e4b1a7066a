"""When an upload body is cut off (transports/upload_body.BodyLimits), pure logic."""

from streamscribe.errors import IdleTimeout, UploadTooLarge
from streamscribe.transports.upload_body import BodyLimits

LIMITS = BodyLimits(max_file_bytes=10 << 20, idle_timeout_s=10.0, min_bytes_per_s=8192.0)


def test_a_steady_body_goes_on() -> None:
    assert LIMITS.problem(total_bytes=1 << 20, elapsed_s=20.0, quiet_s=0.5) is None


def test_a_slow_start_is_forgiven_for_the_first_idle_timeout() -> None:
    assert LIMITS.problem(total_bytes=10, elapsed_s=9.0, quiet_s=0.1) is None


def test_a_trickle_is_cut_off_once_its_average_is_under_the_minimum() -> None:
    problem = LIMITS.problem(total_bytes=20 * 1024, elapsed_s=20.0, quiet_s=0.1)
    assert isinstance(problem, IdleTimeout) and "1.0 KiB/s" in problem.message


def test_a_silent_body_is_cut_off_after_the_idle_timeout() -> None:
    problem = LIMITS.problem(total_bytes=1 << 20, elapsed_s=30.0, quiet_s=10.0)
    assert isinstance(problem, IdleTimeout) and "no byte" in problem.message


def test_fields_and_preambles_count_against_the_size() -> None:
    assert isinstance(LIMITS.problem(LIMITS.max_body_bytes + 1, 1.0, 0.0), UploadTooLarge)
