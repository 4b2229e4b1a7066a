"""One server process per data directory: an exclusive lock on `<data_dir>/.lock`, held for as
long as the process keeps the directory. Two processes on one directory would each recover the
other's live streams as crashed ones."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import DataDirInUse


class DataDirLock:
    """`acquire()` before the store is opened (raises DataDirInUse naming the other process);
    `release()` after it is closed."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._path = data_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"the data directory {self._data_dir} is in use by another streamscribe process (pid "
                f"{holder}); stop that server or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
