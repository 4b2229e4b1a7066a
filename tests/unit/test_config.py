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


def test_webrtc_network_settings_are_checked() -> None:
    settings = load_settings(
        {"webrtc_ports": "50000-50100", "webrtc_public_address": "203.0.113.4"}, environ={}
    )
    assert settings.webrtc_port_range == range(50000, 50101)
    assert load_settings(environ={}).webrtc_port_range is None
    for bad, named in (
        ({"webrtc_ports": "50100-50000"}, "webrtc_ports"),
        ({"webrtc_ports": "80-90"}, "webrtc_ports"),
        ({"webrtc_public_address": "example.org"}, "webrtc_public_address"),
        ({"webrtc_turn_url": "https://turn.example.org"}, "webrtc_turn_url"),
        ({"webrtc_turn_url": "turn:turn.example.org:3478"}, "webrtc_turn_password"),
    ):
        with pytest.raises(msgspec.ValidationError, match=named):
            load_settings(bad, environ={})


def test_catch_up_settings_that_could_never_move_on_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="catch_up_margin_s"):
        load_settings({"stream": {"catch_up_margin_s": 20.0}}, environ={})
    with pytest.raises(msgspec.ValidationError, match="catch_up_after_s"):
        load_settings(environ={"STREAMSCRIBE_STREAM_CATCH_UP_AFTER_S": "0"})
