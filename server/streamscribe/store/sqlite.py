"""The embedded TranscriptStore and KeyStore, with the job table the embedded JobQueue works
(`claim_queued`, `requeue_running`): one SQLite file (WAL) in the data directory."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import msgspec

from ..errors import KeyExists, StorageUnavailable, TranscriptNotFound
from ..transcript import Transcript, TranscriptListing, VersionSummary, from_json, summarise, to_json
from .base import ApiKey, TranscriptRecord
from .failures import STORAGE_FAILURES
from .rows import KEY_COLUMNS, key_of, key_values, listing_of, record_of, summary_decoder

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transcripts (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    language TEXT,
    live_model TEXT NOT NULL,
    audio_path TEXT,
    state TEXT NOT NULL,
    job_settings BLOB,
    error TEXT,
    finalized_at REAL
);
CREATE TABLE IF NOT EXISTS versions (
    transcript_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    summary BLOB NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (transcript_id, version)
);
CREATE TRIGGER IF NOT EXISTS versions_are_immutable BEFORE UPDATE ON versions
BEGIN
    SELECT RAISE(ABORT, 'transcript versions are immutable');
END;
CREATE INDEX IF NOT EXISTS transcripts_state ON transcripts(state, created_at);
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    key_name TEXT NOT NULL REFERENCES api_keys(name) ON DELETE CASCADE,
    expires_at REAL NOT NULL
);
"""
_ADDED_COLUMNS = (
    ("transcripts", "owner", "TEXT"),
    ("transcripts", "audio_retention_h", "REAL"),
    ("api_keys", "max_streams", "INTEGER"),
    ("api_keys", "max_replays", "INTEGER"),
    ("api_keys", "audio_retention_h", "REAL"),
    ("api_keys", "max_audio_mb", "REAL"),
    ("transcripts", "node", "TEXT"),
    ("transcripts", "job_id", "TEXT"),
    ("versions", "job_id", "TEXT"),
)
"""Columns added since the first schema, in order (a store made before them gets them at open)."""


def store_path(data_dir: Path) -> Path:
    return data_dir / "transcripts.sqlite3"


def open_store(data_dir: Path) -> SqliteTranscriptStore:
    """The store of a data directory (the server's, or the `keys` command's), made if it is not
    there; `close()` it."""
    path = store_path(data_dir)
    try:
        return SqliteTranscriptStore(path)
    except STORAGE_FAILURES as exc:
        raise StorageUnavailable(
            f"the transcript store {path} cannot be opened ({type(exc).__name__}: {' '.join(str(exc).split())}). If the file "
            "is damaged, restore it from a backup, or move it away to start with an empty store (its "
            "transcripts and keys are then not served); if the directory is read-only, give the "
            "server write access to it"
        ) from exc


class SqliteTranscriptStore:
    """One connection shared under a lock (SQLite serialises writers anyway)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            damage = self._db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if damage != "ok":
                raise sqlite3.DatabaseError(f"the file is damaged: {damage}")
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        for table, column, kind in _ADDED_COLUMNS:
            existing = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in existing:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS transcripts_owner ON transcripts(owner, created_at)")
        # one version per job (NULLs, the versions stored outside a job, are distinct)
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS versions_job ON versions(transcript_id, job_id)")
        # jobs queued by a version without job ids get one, so that they can be finished
        self._db.execute(
            "UPDATE transcripts SET job_id = id WHERE job_id IS NULL AND state IN ('queued', 'running')"
        )

    def create(
        self,
        transcript_id: str,
        *,
        language: str | None,
        live_model: str,
        audio_path: str,
        owner: str | None,
        audio_retention_h: float | None,
        node: str | None = None,
    ) -> None:
        self._write(
            "INSERT INTO transcripts (id, created_at, language, live_model, audio_path, state, owner, "
            "audio_retention_h, node) VALUES (?, ?, ?, ?, ?, 'live', ?, ?, ?)",
            (transcript_id, time.time(), language, live_model, audio_path, owner, audio_retention_h, node),
        )

    def get(self, transcript_id: str) -> TranscriptRecord | None:
        rows = self._read("SELECT * FROM transcripts WHERE id = ?", (transcript_id,))
        return record_of(rows[0]) if rows else None

    def listing(self, owner: str | None, limit: int, before: float | None) -> list[TranscriptListing]:
        rows = self._read(
            "SELECT t.id, t.created_at, t.state, t.language, t.audio_path IS NOT NULL, v.summary "
            "FROM transcripts t LEFT JOIN versions v ON v.transcript_id = t.id AND v.version = "
            "(SELECT MAX(version) FROM versions WHERE transcript_id = t.id) "
            "WHERE (? IS NULL OR t.owner = ?) AND t.created_at < ? ORDER BY t.created_at DESC LIMIT ?",
            (owner, owner, math.inf if before is None else before, limit),
        )
        return [listing_of(row) for row in rows]

    def add_version(self, transcript: Transcript, job_id: str | None = None) -> Transcript:
        """Raises TranscriptNotFound when the transcript is gone (deleted while its job ran)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if (
                    self._db.execute("SELECT 1 FROM transcripts WHERE id = ?", (transcript.id,)).fetchone()
                    is None
                ):
                    raise TranscriptNotFound(f"transcript {transcript.id} is gone")
                if job_id is not None:
                    done = self._db.execute(
                        "SELECT body FROM versions WHERE transcript_id = ? AND job_id = ?",
                        (transcript.id, job_id),
                    ).fetchone()
                    if done is not None:  # the job was delivered twice: its version is stored already
                        self._db.execute("COMMIT")
                        return from_json(done[0])
                (latest,) = self._db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM versions WHERE transcript_id = ?", (transcript.id,)
                ).fetchone()
                stored = msgspec.structs.replace(transcript, version=latest + 1)
                self._db.execute(
                    "INSERT INTO versions (transcript_id, version, job_id, summary, body) VALUES (?, ?, ?, ?, ?)",
                    (
                        transcript.id,
                        stored.version,
                        job_id,
                        msgspec.json.encode(summarise(stored)),
                        to_json(stored),
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    def version(self, transcript_id: str, version: int | None = None) -> Transcript | None:
        if version is None:
            rows = self._read(
                "SELECT body FROM versions WHERE transcript_id = ? ORDER BY version DESC LIMIT 1",
                (transcript_id,),
            )
        else:
            rows = self._read(
                "SELECT body FROM versions WHERE transcript_id = ? AND version = ?", (transcript_id, version)
            )
        return from_json(rows[0][0]) if rows else None

    def versions(self, transcript_id: str) -> list[VersionSummary]:
        rows = self._read(
            "SELECT summary FROM versions WHERE transcript_id = ? ORDER BY version", (transcript_id,)
        )
        return [summary_decoder.decode(row[0]) for row in rows]

    def queue_job(self, transcript_id: str, job_settings: bytes, job_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE transcripts SET state = 'queued', job_settings = ?, job_id = ?, error = NULL "
                "WHERE id = ? AND state NOT IN ('queued', 'running')",
                (job_settings, job_id, transcript_id),
            )
            return cursor.rowcount == 1

    def start_job(self, transcript_id: str, job_id: str) -> TranscriptRecord | None:
        with self._lock:
            row = self._db.execute(
                "UPDATE transcripts SET state = 'running' "
                "WHERE id = ? AND job_id = ? AND state IN ('queued', 'running') RETURNING *",
                (transcript_id, job_id),
            ).fetchone()
        return record_of(row) if row else None

    def end_job(self, transcript_id: str, job_id: str | None, error: str | None) -> None:
        self._write(
            "UPDATE transcripts SET state = ?, error = ?, finalized_at = ?, job_settings = NULL "
            "WHERE id = ? AND (? IS NULL OR job_id = ?)",
            ("failed" if error else "done", error, time.time(), transcript_id, job_id, job_id),
        )

    def orphaned_streams(self, live_nodes: Collection[str], created_before: float = math.inf) -> list[str]:
        rows = self._read(
            "SELECT id, node FROM transcripts WHERE state = 'live' AND created_at < ? ORDER BY created_at, id",
            (created_before,),
        )
        alive = set(live_nodes)
        return [transcript_id for transcript_id, node in rows if node is None or node not in alive]

    def unfinished_jobs(self) -> list[tuple[str, str]]:
        rows = self._read(
            "SELECT id, job_id FROM transcripts WHERE state IN ('queued', 'running') AND job_id IS NOT NULL",
            (),
        )
        return [(transcript_id, job_id) for transcript_id, job_id in rows]

    def claim_queued(self) -> TranscriptRecord | None:
        """For the embedded JobQueue: the oldest queued transcript, now 'running' (its `job_id`
        is the job's); None when none is queued."""
        with self._lock:
            row = self._db.execute(
                "UPDATE transcripts SET state = 'running' WHERE id = (SELECT id FROM transcripts "
                "WHERE state = 'queued' ORDER BY created_at, id LIMIT 1) RETURNING *"
            ).fetchone()
        return record_of(row) if row else None

    def requeue_running(self) -> None:
        """For the embedded JobQueue, at start: the jobs a stopped process left running are queued
        again (their job ids kept, so a version one of them stored is not stored twice)."""
        self._write("UPDATE transcripts SET state = 'queued' WHERE state = 'running'", ())

    def audio_expired(self, now: float, default_retention_h: float) -> list[TranscriptRecord]:
        rows = self._read(
            "SELECT * FROM transcripts WHERE audio_path IS NOT NULL AND state IN ('done', 'failed') "
            "AND finalized_at + COALESCE(audio_retention_h, ?) * 3600 <= ?",
            (default_retention_h, now),
        )
        return [record_of(row) for row in rows]

    def forget_audio(self, transcript_id: str) -> None:
        self._write("UPDATE transcripts SET audio_path = NULL WHERE id = ?", (transcript_id,))

    def audio_paths(self, owner: str | None) -> list[str]:
        rows = self._read(
            "SELECT audio_path FROM transcripts WHERE owner IS ? AND audio_path IS NOT NULL", (owner,)
        )
        return [path for (path,) in rows]

    def delete(self, transcript_id: str) -> TranscriptRecord | None:
        with self._lock:
            row = self._db.execute(
                "DELETE FROM transcripts WHERE id = ? RETURNING *", (transcript_id,)
            ).fetchone()
        return record_of(row) if row else None

    def create_key(self, key: ApiKey, key_hash: str) -> None:
        try:
            self._write(
                f"INSERT INTO api_keys (key_hash, {KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key_hash, *key_values(key)),
            )
        except sqlite3.IntegrityError as exc:
            raise KeyExists(f"a key named {key.name!r} exists already; revoke it first") from exc

    def keys(self) -> list[ApiKey]:
        rows = self._read(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, rowid", ())
        return [key_of(row) for row in rows]

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        rows = self._read(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,))
        return key_of(rows[0]) if rows else None

    def create_token(self, token_hash: str, key_name: str, expires_at: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tokens WHERE expires_at <= ?", (time.time(),))
            self._db.execute(
                "INSERT INTO tokens (token_hash, key_name, expires_at) VALUES (?, ?, ?)",
                (token_hash, key_name, expires_at),
            )

    def key_for_token(self, token_hash: str, now: float) -> ApiKey | None:
        columns = ", ".join(f"k.{column}" for column in KEY_COLUMNS.split(", "))
        rows = self._read(
            f"SELECT {columns} FROM tokens t JOIN api_keys k ON k.name = t.key_name "
            "WHERE t.token_hash = ? AND t.expires_at > ?",
            (token_hash, now),
        )
        return key_of(rows[0]) if rows else None

    def has_keys(self) -> bool:
        return bool(self._read("SELECT 1 FROM api_keys LIMIT 1", ()))

    def revoke_key(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount == 1

    def check(self) -> None:
        self._read("SELECT 1 FROM transcripts LIMIT 1", ())

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, parameters: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(sql, parameters)

    def _read(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()
