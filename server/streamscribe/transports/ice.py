"""WebRTC across networks: the ICE servers, the UDP port range and the public address that the
`webrtc_*` settings name, applied to aiortc.

aioice (aiortc's ICE) binds each host candidate to a port the OS picks and has no setting for a
range yet (aiortc/aioice#47); `use_port_range` gives it one by handing aioice's module a view of
the event loop whose UDP binds to port 0 take the first free port of the range instead.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import re
import types
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from ..config import ServerSettings
from ..wire import IceServer


def ice_servers(settings: ServerSettings) -> list[IceServer]:
    """The STUN and TURN servers the settings name, as both ends of a peer connection use them."""
    servers: list[IceServer] = []
    if settings.webrtc_stun_url:
        servers.append(IceServer(urls=[settings.webrtc_stun_url]))
    if settings.webrtc_turn_url:
        servers.append(
            IceServer(
                urls=[settings.webrtc_turn_url],
                username=settings.webrtc_turn_username,
                credential=settings.webrtc_turn_password,
            )
        )
    return servers


def peer_configuration(settings: ServerSettings) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=server.urls, username=server.username, credential=server.credential)
            for server in ice_servers(settings)
        ]
    )


_HOST_CANDIDATE = re.compile(
    r"^a=candidate:(?P<foundation>\S+) (?P<component>\d+) (?P<transport>\S+) (?P<priority>\d+) "
    r"(?P<address>\S+) (?P<port>\d+) typ host(?P<rest>.*)$"
)


def announce_address(sdp: str, address: str) -> str:
    """The SDP with each host candidate of the same address family offered a second time at
    `address` (the port a container publishes, or a NAT forwards, to the same port here), just
    below it in priority."""
    family = ipaddress.ip_address(address).version
    lines: list[str] = []
    for line in sdp.splitlines():
        lines.append(line)
        match = _HOST_CANDIDATE.match(line)
        if match is None or match["address"] == address or _family(match["address"]) != family:
            continue
        foundation = match["foundation"][:31] + "p"  # a foundation of its own, in at most 32 chars
        lines.append(
            f"a=candidate:{foundation} {match['component']} {match['transport']} "
            f"{int(match['priority']) - 1} {address} {match['port']} typ host{match['rest']}"
        )
    return "\r\n".join(lines) + "\r\n"


def _family(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:  # an mDNS name
        return None


def use_port_range(ports: range | None) -> None:
    """From now on, aioice binds its host candidates in `ports` (None: wherever the OS picks),
    for the whole process. A session that finds the range full gets no host candidate there."""
    if ports is None:
        aioice.ice.asyncio = asyncio  # type: ignore[attr-defined]
        return
    view = types.ModuleType("asyncio")
    view.__dict__.update(asyncio.__dict__)
    view.get_running_loop = lambda: _RangedLoop(asyncio.get_running_loop(), ports)  # type: ignore[attr-defined]
    aioice.ice.asyncio = view  # type: ignore[attr-defined]


class _RangedLoop:
    """The running loop, but a UDP bind to port 0 tries the ports of the range in turn."""

    _next = itertools.count()

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: range) -> None:
        self._loop = loop
        self._ports = ports

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, protocol_factory: Any, local_addr: Any = None, **kwargs: Any
    ) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(
                protocol_factory, local_addr=local_addr, **kwargs
            )
        offset = next(self._next)  # start where the last bind left off: the low ports are likely taken
        for index in range(len(self._ports)):
            port = self._ports[(offset + index) % len(self._ports)]
            try:
                return await self._loop.create_datagram_endpoint(
                    protocol_factory, local_addr=(local_addr[0], port), **kwargs
                )
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):  # taken, or reserved
                    raise
        raise OSError(
            errno.EADDRINUSE, f"every UDP port of {self._ports.start}-{self._ports.stop - 1} is taken"
        )
