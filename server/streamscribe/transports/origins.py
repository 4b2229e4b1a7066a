"""Which browser pages may call this server, and which names it answers to.

A browser sends `Origin` with every cross-site request and every WebSocket handshake, and a page
on another site cannot forge it. A request whose Origin is neither this server's own (its Host)
nor one of `allowed_origins` is refused with 403 `forbidden_origin` before any handler or
WebSocket upgrade: otherwise any site a user visits could stream to, read from or delete on a
server their browser can reach. Allowed cross-origin callers get CORS headers (and preflights an
answer) so their pages can read the responses. Requests without Origin (SDKs, curl) pass. The
Host header is checked too: a loopback server answers only to loopback names, so a site that
rebinds its own name to 127.0.0.1 is refused.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..config import ServerSettings
from ..errors import ForbiddenHost, ForbiddenOrigin

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_PREFLIGHT_MAX_AGE_S = 600
_EXPOSED = "Location, Retry-After"


def is_loopback(host: str) -> bool:
    """Whether a listening address (or a Host name) is reachable only from this machine."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OriginPolicy:
    """`middleware` refuses what the settings do not allow; `add_cors_headers` (an
    on_response_prepare signal) lets allowed pages read every answer, error bodies included."""

    def __init__(self, settings: ServerSettings) -> None:
        self._origins = frozenset(settings.allowed_origins)
        self._hosts: frozenset[str] | None = (
            frozenset(name.lower() for name in settings.allowed_hosts)
            if settings.allowed_hosts
            else (_LOOPBACK_NAMES if is_loopback(settings.host) else None)
        )

    def middleware(self) -> Middleware:
        """Put it inside `json_errors` and before the key check (a preflight carries no key)."""

        @web.middleware
        async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
            self._check_host(request)
            origin = request.headers.get("Origin")
            if origin is not None and not self._same_origin(origin, request):
                if not self._allows(origin):
                    raise ForbiddenOrigin(
                        f"pages on {origin} may not call this server (its operator can allow them with "
                        "--allowed-origins)"
                    )
                if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                    return _preflight(request)
            return await handler(request)

        return check_origin

    async def add_cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is None or self._same_origin(origin, request) or not self._allows(origin):
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
        response.headers.add("Vary", "Origin")

    def _allows(self, origin: str) -> bool:
        return "*" in self._origins or origin in self._origins

    def _check_host(self, request: web.Request) -> None:
        if self._hosts is None:
            return
        name = _host_name(request.host)
        if name.lower() not in self._hosts and not is_loopback(name):
            raise ForbiddenHost(
                f"this server does not answer to {name!r} (its operator can add names with --allowed-hosts)"
            )

    @staticmethod
    def _same_origin(origin: str, request: web.Request) -> bool:
        try:
            return urlsplit(origin).netloc.lower() == request.host.lower()
        except ValueError:  # not a URL ("http://["): no page's origin, so not the server's own
            return False


def _host_name(host: str) -> str:
    """The name in a Host header; empty when it is not a host at all ("[")."""
    try:
        return urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return ""


def _preflight(request: web.Request) -> web.Response:
    """The answer to a CORS preflight (its Allow-Origin is added with every other response's)."""
    asked = request.headers.get("Access-Control-Request-Headers", "")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": asked or "Authorization, Content-Type",
            "Access-Control-Max-Age": str(_PREFLIGHT_MAX_AGE_S),
        },
    )
