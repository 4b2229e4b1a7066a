"""API keys: how one is made and checked, and the middleware that asks every request for one.

Until the first key exists the server is open (a loopback server on a developer's machine). Once
one does, every route needs `Authorization: Bearer KEY` or `Authorization: Token KEY` (what
Deepgram's SDKs send), except the health check, the schema and the page with its SDK files.
A missing or unknown key is refused with 401 `unauthorized` before any WebSocket upgrade. Only a
SHA-256 of each key is stored: keys are 256 random bits, so a slow password hash adds nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..errors import Unauthorized
from ..store.base import KeyStore

KEY_PREFIX = "sk-ss-"
"""Marks a string as a streamscribe key (for a secret scanner's rules)."""
_OPEN_PATHS = frozenset({"/", "/healthz", "/v1/schema"})
_OPEN_PREFIXES = ("/client/",)
_SCHEMES = ("bearer", "token")


def new_api_key() -> str:
    """A fresh key; show it to its owner once and store only `key_hash` of it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def credential(authorization: str | None) -> str | None:
    """The key in an Authorization header (`Bearer KEY` or `Token KEY`, any case), else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in _SCHEMES or not value.strip():
        return None
    return value.strip()


def requiring_keys(keys: KeyStore) -> Middleware:
    """The middleware: put it inside `json_errors` so that a refusal is the JSON error body."""

    @web.middleware
    async def require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS or request.path.startswith(_OPEN_PREFIXES):
            return await handler(request)
        key = credential(request.headers.get("Authorization"))
        if not await asyncio.to_thread(_admitted, keys, key):
            raise Unauthorized(
                "this server needs an API key: send it as 'Authorization: Bearer KEY'"
                if key is None
                else "the API key is not valid (unknown or revoked)"
            )
        return await handler(request)

    return require_key


def _admitted(keys: KeyStore, key: str | None) -> bool:
    """Whether the key is a current one, or the server has no keys at all (open)."""
    if key is not None and keys.key_for_hash(key_hash(key)) is not None:
        return True
    return not keys.has_keys()
