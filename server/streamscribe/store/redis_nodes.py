"""Node identity and lease in Redis. Each node and worker holds `streamscribe:node:{name}` (its
value a token of this process, so that two running processes never share a name) and its entry in
the sorted set `streamscribe:nodes` (scored by when its lease ends, in Redis's own clock), both
renewed every third of the lease. A name whose lease has ended belongs to a process that stopped:
its cut-off streams may be recovered by anyone."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from ..errors import NodeNameInUse
from .redis_events import REDIS_FAILURES

log = logging.getLogger(__name__)

_PREFIX = "streamscribe:node:"
_DIRECTORY = "streamscribe:nodes"
_NOW_MS = "local now = redis.call('TIME'); now = now[1] * 1000 + math.floor(now[2] / 1000)\n"
_TAKE = (
    _NOW_MS
    + """
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') or redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('ZADD', KEYS[2], now + ARGV[2], ARGV[3])
    return 1
end
return 0
"""
)
"""Take or renew the name for ARGV[2] ms unless another process (another token) holds it."""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[2])
end
return 0
"""
_LIVE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
"""
)
"""The names whose lease has not ended (entries a day past theirs are dropped)."""


class RedisNodeLease:
    """`await acquire()` at start, `renew_forever()` in a task, `await release()` at shutdown;
    `live_nodes()` and `is_alive()` from any of them. `held` turns False if the lease was lost
    (this process could not renew it in time and another one took the name)."""

    def __init__(self, client: aioredis.Redis, name: str, lease_s: float) -> None:
        self.name = name
        self.held = False
        self._redis = client
        self._lease_ms = int(lease_s * 1000)
        self._token = uuid.uuid4().hex
        self._keys = [_PREFIX + name, _DIRECTORY]
        self._take = client.register_script(_TAKE)
        self._live = client.register_script(_LIVE)

    async def acquire(self) -> None:
        """Take the name; a lease left by a stopped process of the same name is waited out.
        Raises NodeNameInUse when a running process holds it."""
        deadline = time.monotonic() + self._lease_ms / 1000 + 1.0
        while not await self._take(keys=self._keys, args=[self._token, self._lease_ms, self.name]):
            if time.monotonic() > deadline:
                raise NodeNameInUse(
                    f"another running process holds the node name {self.name!r} on this Redis: give each "
                    "node and worker its own --node-id"
                )
            await asyncio.sleep(0.25)
        self.held = True

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                held = bool(await self._take(keys=self._keys, args=[self._token, self._lease_ms, self.name]))
            except REDIS_FAILURES as exc:
                log.warning("renewing the lease of node %s failed (%s)", self.name, type(exc).__name__)
                continue
            if self.held and not held:
                log.error(
                    "node %s lost its lease to another process of the same name: its streams may be "
                    "recovered by others; /readyz answers 503",
                    self.name,
                )
            self.held = held

    async def release(self) -> None:
        try:
            await self._redis.eval(_RELEASE, 2, *self._keys, self._token, self.name)
        except REDIS_FAILURES as exc:
            log.warning("releasing the lease of node %s failed (%s)", self.name, type(exc).__name__)
        self.held = False

    async def live_nodes(self) -> set[str]:
        names: Any = await self._live(keys=[_DIRECTORY])
        return {name.decode() for name in names}

    async def is_alive(self, name: str) -> bool:
        return name in await self.live_nodes()
