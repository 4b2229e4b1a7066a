"""What every HTTP call of the clients shares: the credential's header, and the server's refusal
(its JSON error body) as the matching StreamscribeError."""

from __future__ import annotations

import msgspec

from ..errors import StreamscribeError, error_for
from ..wire import ErrorBody


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The header that carries an API key (or a browser token), none without one."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def refusal(status: int, body: bytes) -> StreamscribeError:
    """The server's error body as the matching StreamscribeError; a body that is not one (a proxy's
    page, say) as the root error with the HTTP status and the start of the body."""
    try:
        detail = msgspec.json.decode(body, type=ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return StreamscribeError(f"HTTP {status}: {body[:200].decode(errors='replace').strip()}")
    return error_for(detail.code, detail.message)
