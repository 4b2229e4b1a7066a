"""`--engine` on the command line reaches the settings every command builds (README: whisper.cpp
and Metal): serve, worker and transcribe parsed as `main` parses them."""

from __future__ import annotations

import pytest

from streamscribe.cli.main import _settings_overrides, build_parser
from streamscribe.config import ServerSettings, load_settings


def settings_of(argv: list[str], environ: dict[str, str] | None = None) -> ServerSettings:
    """The settings a command would run with, from its arguments and only `environ`."""
    args = build_parser().parse_args(argv)
    return load_settings(_settings_overrides(args), environ=environ or {})


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["transcribe", "jfk.wav"]])
def test_the_engine_flag_reaches_the_settings(command: list[str]) -> None:
    assert settings_of(command).engine == "faster-whisper"
    assert settings_of([*command, "--engine", "whisper.cpp"]).engine == "whisper.cpp"
    from_env = {"STREAMSCRIBE_ENGINE": "whisper.cpp"}
    assert settings_of(command, from_env).engine == "whisper.cpp"
    assert settings_of([*command, "--engine", "faster-whisper"], from_env).engine == "faster-whisper", (
        "the flag wins over the environment"
    )


def test_an_engine_that_does_not_exist_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["worker", "--engine", "whisper-cpp"])
    assert exited.value.code == 2
    errors = capsys.readouterr().err
    assert "invalid choice" in errors and "whisper-cpp" in errors
