"""`streamscribe transcribe --engine whisper.cpp` as a user runs it (README: whisper.cpp and Metal):
both passes decode with whisper.cpp, on tiny.en and on base, each converted to ggml on first use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamscribe.bench.metrics import word_error_rate
from streamscribe.cli.main import main

from ..conftest import speech_file

pytestmark = pytest.mark.model


def test_transcribe_runs_both_passes_on_whisper_cpp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("STREAMSCRIBE_MODEL_CACHE_DIR", str(cache))
    monkeypatch.setenv("STREAMSCRIBE_DATA_DIR", str(tmp_path / "data"))
    reference = speech_file("jfk/jfk.txt").read_text()

    status = main(["transcribe", "--engine", "whisper.cpp", str(speech_file("jfk/jfk.wav")), "--no-diarize"])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    final = printed.out
    live = "\n".join(line for line in printed.err.splitlines() if not line.startswith(("warning", "error")))
    assert final.strip() and not final.startswith("Speaker"), final
    assert word_error_rate(reference, final) < 0.1, f"second pass: {final!r}"
    assert word_error_rate(reference, live) < 0.1, f"live pass (shown on stderr): {printed.err!r}"
    converted = sorted(re.sub(r"-[0-9a-f]{12}\.bin$", "", path.name) for path in (cache / "ggml").iterdir())
    assert converted == ["ggml-base", "ggml-tiny.en"], "not both models were converted for whisper.cpp"
