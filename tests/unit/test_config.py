from pathlib import Path

import msgspec
import pytest

from streamscribe.config import load_settings


def test_environment_then_overrides() -> None:
    environ = {
        "STREAMSCRIBE_PORT": "9001",
        "STREAMSCRIBE_MODEL": "base",
        "STREAMSCRIBE_STREAM_DECODE_STEP_MS": "300",
    }
    settings = load_settings({"model": "tiny.en", "host": None}, environ=environ)
    assert settings.port == 9001
    assert settings.model == "tiny.en"
    assert settings.host == "127.0.0.1"
    assert settings.stream.decode_step_ms == 300


def test_paths_and_bad_values() -> None:
    assert load_settings(environ={"STREAMSCRIBE_MODEL_CACHE_DIR": "/tmp/x"}).model_cache_dir == Path("/tmp/x")
    with pytest.raises(msgspec.ValidationError):
        load_settings(environ={"STREAMSCRIBE_PORT": "eighty"})
    with pytest.raises(msgspec.ValidationError):
        load_settings(environ={"STREAMSCRIBE_DEVICE": "tpu"})
