"""What a failing disk or store means to a client: the one place that maps OS and SQLite errors
to `storage_full` and `storage_unavailable` (the cause goes to the server's log, never to the
client)."""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

from ..errors import StorageFull, StorageUnavailable, StreamscribeError

log = logging.getLogger(__name__)

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class BackendFailure(OSError):
    """PostgreSQL, Redis or the object store failed or cannot be reached: the distributed stores
    raise this (from the driver's error) so that callers handle it as any storage failure."""


STORAGE_FAILURES = (OSError, sqlite3.Error)
"""What a failing disk or store raises (less ConnectionError: a client that went away)."""


def is_storage_failure(exc: BaseException) -> bool:
    """ConnectionError (a client gone) and TimeoutError are OSErrors too, but no disk's."""
    return isinstance(exc, STORAGE_FAILURES) and not isinstance(exc, ConnectionError | TimeoutError)


def storage_error(exc: OSError | sqlite3.Error, doing: str) -> StreamscribeError:
    """The error to answer for `exc`, raised while `doing` (e.g. "the request"); the cause is
    logged here, the client hears only what it means."""
    log.error("%s failed: %s: %s", doing, type(exc).__name__, exc)
    if is_full(exc):
        return StorageFull(
            f"{doing} failed: the server's disk is full; what is stored stays readable, nothing new "
            "can be kept until space is freed"
        )
    return StorageUnavailable(f"{doing} failed: the server's storage cannot be used now; try again later")


def is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def ensure_room(data_dir: Path, reserve_mb: float) -> None:
    """Raise StorageFull when the disk of `data_dir` has less than `reserve_mb` free: new
    streams and uploads are refused before they fill it."""
    if _free_mb(data_dir) < reserve_mb:
        raise StorageFull(
            f"the server's disk is almost full (under {reserve_mb:g} MB free); what is stored stays "
            "readable, nothing new is taken until space is freed"
        )


def storage_state(
    data_dir: Path, reserve_mb: float, check_store: Callable[[], None]
) -> tuple[str, float | None]:
    """For /healthz (blocking: call it off the loop): "ok", "full" (under the reserve, or a write
    failed for want of space) or "unavailable" (the data directory or the store cannot be used),
    and the free space in MB. `check_store` checks the stores, the audio store included (a local
    one writes a probe file in its directory)."""
    try:
        free_mb = _free_mb(data_dir)
        check_writable(data_dir)
        check_store()
    except STORAGE_FAILURES as exc:
        log.error("storage check failed: %s: %s", type(exc).__name__, exc)
        return ("full" if is_full(exc) else "unavailable"), None
    return ("full" if free_mb < reserve_mb else "ok"), round(free_mb, 1)


def check_writable(directory: Path) -> None:
    """Write and remove a probe file: raises OSError when `directory` is full or read-only."""
    probe = directory / f".healthz-{uuid.uuid4().hex}"  # concurrent checks never share one
    probe.write_bytes(b"ok")
    probe.unlink()


def _free_mb(data_dir: Path) -> float:
    return shutil.disk_usage(data_dir).free / 2**20
