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


def test_engine_comes_from_the_environment_and_a_bad_one_is_named() -> None:
    assert load_settings(environ={}).engine == "faster-whisper"
    assert load_settings(environ={"STREAMSCRIBE_ENGINE": "whisper.cpp"}).engine == "whisper.cpp"
    flag = load_settings({"engine": "faster-whisper"}, environ={"STREAMSCRIBE_ENGINE": "whisper.cpp"})
    assert flag.engine == "faster-whisper", "the command line wins over the environment"
    with pytest.raises(msgspec.ValidationError, match=r"'whisper-cpp'.*\$\.engine"):
        load_settings(environ={"STREAMSCRIBE_ENGINE": "whisper-cpp"})


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


def test_scale_out_settings_come_from_the_environment_and_are_checked() -> None:
    environ = {
        "STREAMSCRIBE_REDIS_URL": "redis://redis:6379/0",
        "STREAMSCRIBE_DATABASE_URL": "postgresql://streamscribe:secret@db/streamscribe",
        "STREAMSCRIBE_AUDIO_URL": "s3://recordings/streamscribe",
        "STREAMSCRIBE_SECOND_PASS_WORKERS": "0",
    }
    settings = load_settings(environ=environ)
    assert (settings.redis_url, settings.audio_url, settings.second_pass_workers) == (
        "redis://redis:6379/0",
        "s3://recordings/streamscribe",
        0,
    )
    for refused, named in (
        ({"STREAMSCRIBE_DATABASE_URL": "mysql://root:secret@db/x"}, "database_url must start with"),
        ({"STREAMSCRIBE_AUDIO_URL": "ftp://host/x"}, "audio_url must start with"),
        ({"STREAMSCRIBE_AUDIO_URL": None}, "redis_url needs database_url and audio_url"),
        ({"STREAMSCRIBE_REDIS_URL": None}, "second_pass_workers 0 needs redis_url"),
    ):
        changed = {key: value for key, value in (environ | refused).items() if value is not None}
        with pytest.raises(msgspec.ValidationError, match=named) as raised:
            load_settings(environ=changed)
        assert "secret" not in str(raised.value), "a URL's password was echoed"
