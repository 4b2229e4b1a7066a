"""Every store a node or worker uses, chosen by its settings: embedded (SQLite, the store's job
table, in-process events, files in the data directory) unless database_url, redis_url or
audio_url name shared ones. The distributed drivers are imported only when named, so the
embedded server needs none of them installed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import ServerSettings
from .audio import open_audio_store
from .base import AudioStore, Cluster, EventBus, JobBackends, JobQueue, KeyStore, TranscriptStore
from .events import InProcessEventBus

log = logging.getLogger(__name__)

_CHECK_TIMEOUT_S = 3.0
_READINESS_REUSE_S = 1.0
_REDIS_TIMEOUT_S = 10.0
"""A Redis reply later than this is a failure (blocking reads wait 2 s at most)."""


class Store(TranscriptStore, KeyStore, Protocol):
    """Transcripts and keys in one database."""


@dataclass
class Backends:
    """`async with backends.running():` around the process's life (the node lease is held and
    renewed inside); `readiness()` for /readyz."""

    store: Store
    jobs: JobQueue
    audio: AudioStore
    events: EventBus
    cluster: Cluster | None = None
    _redis: Any = None
    """The asyncio Redis client (events, job events, lease), when scaled out."""
    _lease: Any = None
    _closers: list[Any] = field(default_factory=list)
    _readiness: asyncio.Future[dict[str, str]] | None = None
    _readiness_until: float = 0.0

    @property
    def for_jobs(self) -> JobBackends:
        return JobBackends(self.store, self.jobs, self.audio)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Hold this node's lease (raises NodeNameInUse when a running process has its name);
        on the way out: release it and close the Redis connections."""
        if self._lease is None:
            yield
            return
        await self._lease.acquire()
        renewing = asyncio.create_task(self._lease.renew_forever())
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await self._lease.release()
            await self._redis.aclose()
            for close in self._closers:
                await asyncio.to_thread(close)

    async def readiness(self) -> dict[str, str]:
        """ "ok" or what failed, for each dependency this process needs (the database, the audio
        store, Redis and this node's lease), each check bounded by a few seconds. Probes that come
        while one runs share its answer, so a dependency that hangs holds one thread per check."""
        if self._readiness is None or (self._readiness.done() and time.monotonic() > self._readiness_until):
            self._readiness = asyncio.ensure_future(self._check_all())
            self._readiness_until = time.monotonic() + _READINESS_REUSE_S
        return dict(await asyncio.shield(self._readiness))

    async def _check_all(self) -> dict[str, str]:
        checks: dict[str, Awaitable[Any]] = {
            "database": asyncio.to_thread(self.store.check),
            "audio": asyncio.to_thread(self.audio.check),
        }
        if self._redis is not None:
            checks["redis"] = self._redis.ping()
        results = await asyncio.gather(
            *(asyncio.wait_for(check, _CHECK_TIMEOUT_S) for check in checks.values()), return_exceptions=True
        )
        answers = {  # the reason is the failure's kind: never a URL or a password
            name: f"unavailable ({type(result).__name__})" if isinstance(result, BaseException) else "ok"
            for name, result in zip(checks, results, strict=True)
        }
        if self._lease is not None:
            answers["lease"] = "ok" if self._lease.held else "lost (another process took this node's name)"
        return answers


def open_backends(settings: ServerSettings) -> Backends:
    """Connect to (or open) every store the settings name; the caller must then enter
    `running()`. Raises StorageUnavailable or BackendFailure when one cannot be opened."""
    audio = open_audio_store(settings.audio_url, settings.data_dir / "audio", settings.min_free_disk_mb)
    events_bus: EventBus = InProcessEventBus(settings.event_log_max_events, settings.event_log_linger_s)
    if settings.database_url is None:
        from .sqlite import open_store
        from .table_jobs import TableJobQueue

        sqlite_store = open_store(settings.data_dir)
        return Backends(sqlite_store, TableJobQueue(sqlite_store), audio, events_bus)
    from .postgres import open_postgres_store

    store = open_postgres_store(settings.database_url)
    if settings.redis_url is None:
        from .table_jobs import TableJobQueue

        return Backends(store, TableJobQueue(store), audio, events_bus)
    return _scaled_out(settings, store, audio)


def _scaled_out(settings: ServerSettings, store: Store, audio: AudioStore) -> Backends:
    import redis
    import redis.asyncio as aioredis

    from .redis_events import RedisEventBus
    from .redis_job_events import RedisJobEvents
    from .redis_jobs import RedisJobQueue
    from .redis_nodes import RedisNodeLease

    assert settings.redis_url is not None
    node_id = node_name(settings)
    async_redis = aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=_REDIS_TIMEOUT_S, socket_connect_timeout=_REDIS_TIMEOUT_S
    )
    sync_redis = redis.Redis.from_url(
        settings.redis_url, socket_timeout=_REDIS_TIMEOUT_S, socket_connect_timeout=_REDIS_TIMEOUT_S
    )
    lease = RedisNodeLease(async_redis, node_id, settings.node_lease_s)
    return Backends(
        store,
        RedisJobQueue(sync_redis, store, settings.job_visibility_timeout_s),
        audio,
        RedisEventBus(
            async_redis,
            node_id,
            lease.is_alive,
            max_events=settings.event_log_max_events,
            linger_s=settings.event_log_linger_s,
        ),
        Cluster(node_id, lease, RedisJobEvents(async_redis)),
        _redis=async_redis,
        _lease=lease,
        _closers=[sync_redis.close],
    )


def node_name(settings: ServerSettings) -> str:
    """This process's name among the nodes and workers: node_id, or the host name."""
    return settings.node_id or socket.gethostname()
