"""Embedded models: tiny.en from its package, base assembled from two packages and verified."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from streamscribe.asr.engine import DecodeOptions
from streamscribe.asr.models import assemble_base, load_engine, resolve_model
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings, load_settings
from streamscribe.errors import UnknownModel


def cpu_settings(cache_dir: Path) -> ServerSettings:
    return load_settings({"device": "cpu", "model_cache_dir": cache_dir}, environ={})


def test_base_is_assembled_once_checked_and_decodes(tmp_path: Path, jfk: tuple[np.ndarray, str]) -> None:
    folder = assemble_base(tmp_path)
    model_bin = folder / "model.bin"
    assert {"config.json", "tokenizer.json", "vocabulary.json"} <= {p.name for p in folder.iterdir()}
    first_mtime = model_bin.stat().st_mtime_ns
    assert assemble_base(tmp_path) == folder and model_bin.stat().st_mtime_ns == first_mtime, (
        "assembled again"
    )

    engine = load_engine(cpu_settings(tmp_path), "base")
    audio, reference = jfk
    words = engine.transcribe(audio, DecodeOptions(language="en"))
    assert engine.multilingual
    assert word_error_rate(reference, " ".join(w.text for w in words)) < 0.1


def test_a_truncated_base_is_reassembled(tmp_path: Path) -> None:
    model_bin = assemble_base(tmp_path) / "model.bin"
    size = model_bin.stat().st_size
    with model_bin.open("r+b") as handle:
        handle.truncate(size // 2)
    assemble_base(tmp_path)
    assert model_bin.stat().st_size == size
    assert not [p for p in model_bin.parent.iterdir() if p.suffix == ".tmp"]


def test_tiny_en_comes_from_its_package_and_is_english_only(tmp_path: Path) -> None:
    path = Path(resolve_model("tiny.en", tmp_path))
    assert (path / "model.bin").is_file() and "site-packages" in str(path)
    assert not load_engine(cpu_settings(tmp_path), "tiny.en").multilingual


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel):
        resolve_model(str(tmp_path), tmp_path)


def test_an_unknown_name_fails_clearly_when_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "HF_HUB_OFFLINE", "1")
    with pytest.raises(UnknownModel) as caught:
        load_engine(cpu_settings(tmp_path), "no-such-model-xyz")
    assert "no-such-model-xyz" in caught.value.message
