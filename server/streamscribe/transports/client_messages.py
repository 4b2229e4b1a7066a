"""A client's JSON message, from a WebSocket text frame or a WebRTC data channel, parsed once."""

from __future__ import annotations

import msgspec

from ..errors import BadMessage
from ..wire import ClientMessage, decode_client


def parse_client_message(data: str | bytes) -> ClientMessage:
    """The message, or BadMessage saying why it is none (JSON nested past what the decoder
    recurses into included)."""
    try:
        return decode_client(data)
    except RecursionError as exc:
        raise BadMessage("not a valid message: JSON nested too deeply") from exc
    except msgspec.DecodeError as exc:
        raise BadMessage(f"not valid JSON: {exc}") from exc
    except msgspec.ValidationError as exc:
        raise BadMessage(f"not a valid message: {exc}") from exc
