"""A client's second-pass overrides (finalize/overrides.py): checked before anything runs."""

import pytest

from streamscribe.config import load_settings
from streamscribe.errors import InvalidRequest, UnknownModel
from streamscribe.finalize.overrides import apply_overrides, check_overrides, offered_models

SETTINGS = load_settings({"model": "tiny.en", "allowed_models": ["large-v3"]}, environ={})


def test_overrides_apply_over_the_server_defaults() -> None:
    applied = check_overrides(SETTINGS, b'{"num_speakers": 2, "diarize": false}')
    assert (applied.num_speakers, applied.diarize, applied.model) == (2, False, SETTINGS.finalize.model)
    assert apply_overrides(SETTINGS.finalize, None) == SETTINGS.finalize


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("enabled", "false"),
        ("pyannote_checkpoint", '"/tmp/x"'),
        ("rewrite_url", '"http://x"'),
        ("rewrite_model", '"m"'),
    ],
)
def test_settings_that_name_server_files_or_endpoints_are_the_operators(field: str, value: str) -> None:
    with pytest.raises(InvalidRequest, match=f"{field} can only be set by the server's operator"):
        check_overrides(SETTINGS, f'{{"{field}": {value}}}'.encode())


def test_a_model_must_be_one_the_server_offers() -> None:
    assert offered_models(SETTINGS) == ("tiny.en", "base", "large-v3")
    assert check_overrides(SETTINGS, b'{"model": "large-v3"}').model == "large-v3"
    with pytest.raises(UnknownModel, match="'/etc/passwd' is not offered here"):
        check_overrides(SETTINGS, b'{"model": "/etc/passwd"}')


@pytest.mark.parametrize("body", [b"not json", b'{"no_such_setting": 1}', b'{"beam_size": "five"}', b"[1]"])
def test_malformed_or_unknown_overrides_are_invalid_requests(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="bad finalize settings"):
        check_overrides(SETTINGS, body)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"beam_size": 1600}', "beam_size"),
        (b'{"beam_size": 0}', "beam_size"),
        (b'{"num_speakers": 1000000}', "num_speakers"),
        (b'{"num_speakers": -1}', "num_speakers"),
        (b'{"min_speakers": 5, "max_speakers": 2}', "min_speakers 5 is more than max_speakers 2"),
        (b'{"num_speakers": 6, "max_speakers": 3}', "num_speakers 6 is outside"),
        (b'{"language": "zz"}', "language 'zz'"),
        (b'{"caption_max_chars": 0}', "caption_max_chars"),
        (b'{"caption_max_lines": 9}', "caption_max_lines"),
        (b'{"paragraph_pause_s": -2}', "paragraph_pause_s"),
    ],
)
def test_every_setting_is_range_checked_and_the_refusal_names_it(body: bytes, named: str) -> None:
    with pytest.raises(InvalidRequest, match="bad finalize settings") as refused:
        check_overrides(SETTINGS, body)
    assert named in refused.value.message
