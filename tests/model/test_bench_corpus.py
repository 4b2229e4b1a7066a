"""The benchmarks' LibriSpeech stream, and the same stream started further in (other speakers)."""

from __future__ import annotations

import pytest

from streamscribe.bench.corpus import librispeech_stream

from ..conftest import speech_file


def test_a_skipped_stream_goes_on_where_the_skipped_minutes_end() -> None:
    testdata = speech_file("librispeech-dev-clean").parent
    first = librispeech_stream(testdata, minutes=1)
    later = librispeech_stream(testdata, minutes=0.5, skip_minutes=1)
    both = librispeech_stream(testdata, minutes=2)
    assert later.duration_s >= 30
    assert later.name == "librispeech-from1min-0.5min"
    assert both.reference.startswith(f"{first.reference} {later.reference}")


def test_skipping_past_the_corpus_says_so() -> None:
    testdata = speech_file("librispeech-dev-clean").parent
    with pytest.raises(ValueError, match="less than 1000 minutes"):
        librispeech_stream(testdata, minutes=1, skip_minutes=1000)
