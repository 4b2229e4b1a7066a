"""`streamscribe models export-ggml` on the embedded tiny.en: the file whisper.cpp loads, and one
line on stderr for what cannot be converted or written."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from streamscribe.asr.ctranslate2_model import Ctranslate2Model
from streamscribe.asr.ggml_export import plan_export
from streamscribe.asr.ggml_file import GGML_MAGIC, GgmlHparams, check_ggml_file
from streamscribe.asr.models import resolve_model
from streamscribe.asr.whisper_cpp_engine import alignment_heads
from streamscribe.cli.main import main

TINY_EN_HPARAMS = (51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The settings' model cache, where `base` would be assembled: a fresh one per test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("STREAMSCRIBE_MODEL_CACHE_DIR", str(cache))
    return cache


def test_tiny_en_is_written_at_its_planned_size_with_its_hyper_parameters(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ggml-tiny.en.bin"
    assert main(["models", "export-ggml", "tiny.en", str(out)]) == 0
    printed, errors = capsys.readouterr()
    assert errors == ""
    plan = plan_export(Ctranslate2Model(Path(resolve_model("tiny.en", cache_dir))))
    size = out.stat().st_size
    assert size == plan.size()
    with out.open("rb") as source:
        magic, *hparams = struct.unpack("<12i", source.read(48))
    assert magic == GGML_MAGIC
    assert tuple(hparams) == TINY_EN_HPARAMS
    assert check_ggml_file(out) == plan.hparams == GgmlHparams(*TINY_EN_HPARAMS)
    assert alignment_heads(plan.hparams) == "WHISPER_AHEADS_TINY_EN"
    assert printed == f"wrote {out} ({size / 1e6:.1f} MB): 4+4 layers, 384 wide, 51864 tokens, float16\n"
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left"


def test_a_directory_without_model_bin_is_one_line_and_a_failure(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ggml.bin"
    assert main(["models", "export-ggml", str(tmp_path), str(out)]) != 0
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.count("\n") == 1 and "model.bin" in printed.err and str(tmp_path) in printed.err
    assert not out.exists()


def test_a_name_that_is_not_embedded_is_one_line_and_a_failure(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "export-ggml", "large-v3", str(tmp_path / "ggml.bin")]) != 0
    errors = capsys.readouterr().err
    assert errors.count("\n") == 1 and "'large-v3'" in errors and "tiny.en, base" in errors


def test_an_unwritable_out_is_one_line_and_a_failure(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = blocker / "ggml.bin"  # its parent is a file: nothing can be created there, not even as root
    assert main(["models", "export-ggml", "tiny.en", str(out)]) != 0
    errors = capsys.readouterr().err
    assert errors.count("\n") == 1 and errors.startswith(
        f"error unknown_model: cannot write {out}: {blocker} is not a directory"
    )
    assert "server" not in errors


def test_a_cache_where_base_cannot_be_assembled_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the model cache should be")  # refused even to root
    monkeypatch.setenv("STREAMSCRIBE_MODEL_CACHE_DIR", str(blocker))
    assert main(["models", "export-ggml", "base", str(tmp_path / "ggml-base.bin")]) == 2
    errors = capsys.readouterr().err
    assert errors.count("\n") == 1, errors
    assert errors.startswith(
        f"error unknown_model: cannot assemble Whisper base in {blocker / 'whisper-base'}: "
    )
    assert "server" not in errors and not (tmp_path / "ggml-base.bin").exists()
