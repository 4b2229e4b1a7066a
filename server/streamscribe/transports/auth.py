"""API keys and browser tokens: how they are made and checked, and the middleware that asks every
request for one and remembers who asked (`caller`).

Until the first key exists the server is open (a loopback server on a developer's machine), and
so is one started with `--auth off`. Otherwise every route needs `Authorization: Bearer KEY` or
`Authorization: Token KEY` (what Deepgram's SDKs send), except the health check, the schema and
the page with its SDK files. A short-lived token from POST /v1/tokens stands for its key in the
same header, or as `?token=` on the URLs a browser cannot set headers on (the stream WebSocket,
the event stream, the WebRTC offer, recorded audio in an <audio> element); a key is never taken from a URL, where it would end up in
logs and histories. A missing, unknown, revoked or expired credential is refused with 401
`unauthorized` before any WebSocket upgrade. Only a SHA-256 of each key or token is stored: they
are 256 random bits, so a slow password hash adds nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..errors import InvalidRequest, Unauthorized
from ..store.base import ApiKey, KeyStore
from ..wire import TokenAnswer, TokenRequest
from .limits import json_body
from .responses import struct_response

KEY_PREFIX = "sk-ss-"
"""Marks a string as a streamscribe key (for a secret scanner's rules)."""
TOKEN_PREFIX = "tk-ss-"
_OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/v1/schema"})
_OPEN_PREFIXES = ("/client/",)
_SCHEMES = ("bearer", "token")
_CALLER = web.RequestKey("caller", ApiKey)
_token_request = msgspec.json.Decoder(TokenRequest)


def new_api_key() -> str:
    """A fresh key; show it to its owner once and store only `key_hash` of it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """The SHA-256 a key or token is stored and looked up by."""
    return hashlib.sha256(key.encode()).hexdigest()


def credential(authorization: str | None) -> str | None:
    """The key in an Authorization header (`Bearer KEY` or `Token KEY`, any case), else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in _SCHEMES or not value.strip():
        return None
    return value.strip()


def caller(request: web.Request) -> ApiKey | None:
    """The key a request authenticated with (None where the server checks no keys)."""
    return request.get(_CALLER)


def _takes_url_token(path: str) -> bool:
    """The URLs a browser cannot set headers on (see the module)."""
    return path.startswith(("/v1/stream", "/v1/sessions/", "/v1/webrtc/offer")) or (
        path.startswith("/v1/transcripts/") and path.endswith("/audio")
    )


def requiring_keys(keys: KeyStore, open_without_keys: bool) -> Middleware:
    """The middleware: put it inside `json_errors` so that a refusal is the JSON error body.
    `open_without_keys`: a store with no key asks no credential (a loopback server); otherwise
    it refuses everyone (a network server whose last key was revoked stays shut)."""

    @web.middleware
    async def require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS or request.path.startswith(_OPEN_PREFIXES):
            return await handler(request)
        presented = credential(request.headers.get("Authorization"))
        from_url = presented is None and _takes_url_token(request.path) and "token" in request.query
        if from_url:
            presented = request.query["token"]
        known, any_key = await asyncio.to_thread(_lookup, keys, presented, from_url)
        if known is not None:
            request[_CALLER] = known
        elif not any_key and not open_without_keys:
            raise Unauthorized(
                "this server has no API key yet: its operator creates one with `streamscribe keys create NAME`"
            )
        elif any_key:
            raise Unauthorized(_refusal(presented, from_url))
        return await handler(request)

    return require_key


def _refusal(presented: str | None, from_url: bool) -> str:
    if presented is None:
        return "this server needs an API key: send it as 'Authorization: Bearer KEY'"
    if presented.startswith(TOKEN_PREFIX):
        return "the token is not valid (expired, or its key was revoked): ask POST /v1/tokens for a new one"
    if from_url:
        return "?token= takes a token from POST /v1/tokens, never an API key"
    return "the API key is not valid (unknown or revoked)"


def _lookup(keys: KeyStore, presented: str | None, from_url: bool) -> tuple[ApiKey | None, bool]:
    """The key a credential stands for (from a URL, only a token), and whether any key exists."""
    found = None
    if presented is not None and presented.startswith(TOKEN_PREFIX):
        found = keys.key_for_token(key_hash(presented), time.time())
    elif presented is not None and not from_url:
        found = keys.key_for_hash(key_hash(presented))
    return (found, True) if found is not None else (None, keys.has_keys())


def token_route(keys: KeyStore) -> web.RouteDef:
    """POST /v1/tokens: a token for the calling key, JSON `{"ttl_s": N}` (1-600, default 60); a
    token cannot make another (it would never expire)."""

    async def create_token(request: web.Request) -> web.Response:
        owner = caller(request)
        if owner is None:
            raise InvalidRequest("this server checks no keys: a browser needs no token")
        if (credential(request.headers.get("Authorization")) or "").startswith(TOKEN_PREFIX):
            raise Unauthorized("a token cannot make tokens: ask with the API key")
        try:
            asked = _token_request.decode(await json_body(request) or b"{}")
        except (msgspec.DecodeError, RecursionError) as exc:  # msgspec recurses on deep nesting
            raise InvalidRequest(f'the body must be {{"ttl_s": 1-600}}: {exc}') from exc
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = time.time() + asked.ttl_s
        await asyncio.to_thread(keys.create_token, key_hash(token), owner.name, expires_at)
        return struct_response(TokenAnswer(token=token, expires_at=expires_at), 201)

    return web.post("/v1/tokens", create_token)
