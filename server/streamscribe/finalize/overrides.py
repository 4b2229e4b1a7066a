"""A client's FinalizeSettings overrides (JSON), checked and applied: pure logic, no I/O.

Settings that name files or endpoints on the server's side are the operator's, and a model must
be one the server offers.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..asr.models import EMBEDDED
from ..config import FinalizeSettings, ServerSettings
from ..errors import InvalidRequest, UnknownModel

OPERATOR_ONLY_SETTINGS = frozenset(
    {"enabled", "pyannote_checkpoint", "rewrite_url", "rewrite_model", "rewrite_timeout_s"}
)
"""Not accepted from clients: a checkpoint path is code the server would load, and a URL is a
place the server would send the transcript."""


SERVER_SIDE_SETTINGS = ("pyannote_checkpoint", "rewrite_url")
"""Where the server's files and endpoints are (a URL may carry credentials): never recorded
in a version, which every reader of the transcript sees."""


def recorded_settings(settings: FinalizeSettings) -> dict[str, Any]:
    """The settings a version records of the second pass that made it."""
    values = msgspec.structs.asdict(settings)
    for name in SERVER_SIDE_SETTINGS:
        values.pop(name)
    return values


def offered_models(settings: ServerSettings) -> tuple[str, ...]:
    """Second-pass models a client may ask for: embedded, the server's own, and allowed ones."""
    names = (*EMBEDDED, settings.model, settings.finalize.model, *settings.allowed_models)
    return tuple(dict.fromkeys(names))


def apply_overrides(defaults: FinalizeSettings, overrides: bytes | None) -> FinalizeSettings:
    """The defaults with a job's overrides applied; raises msgspec errors on unknown or bad fields."""
    values = msgspec.structs.asdict(defaults)
    values.update(msgspec.json.decode(overrides or b"{}", type=dict[str, Any]))
    return msgspec.convert(values, FinalizeSettings)


def check_overrides(settings: ServerSettings, overrides: bytes) -> FinalizeSettings:
    """The second-pass settings a client's overrides give; raises InvalidRequest for a bad or
    operator-only field and UnknownModel for a model the server does not offer."""
    try:
        applied = apply_overrides(settings.finalize, overrides)
        fields = set(msgspec.json.decode(overrides or b"{}", type=dict[str, Any]))
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:  # deep nesting recurses
        raise InvalidRequest(f"bad finalize settings: {exc}") from exc
    if fields & OPERATOR_ONLY_SETTINGS:
        names = ", ".join(sorted(fields & OPERATOR_ONLY_SETTINGS))
        raise InvalidRequest(f"{names} can only be set by the server's operator")
    offered = offered_models(settings)
    if "model" in fields and applied.model not in offered:
        raise UnknownModel(f"model {applied.model!r} is not offered here; choose one of {', '.join(offered)}")
    return applied
