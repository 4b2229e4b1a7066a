"""The distributed TranscriptStore and KeyStore: PostgreSQL through a psycopg connection pool, so
that any number of nodes and workers share transcripts, versions and keys. Its schema is made and
upgraded by the Alembic migrations in migrations/ (`migrate`, run by `open_postgres_store`).

Versions are JSONB rows that a trigger keeps from ever being changed; a version's number is
assigned under a lock on its transcript's row, so concurrent writers from several processes never
take the same number, and a job's version is stored once however often the job is delivered.
Driver failures (the server down, unreachable, out of connections) are raised as BackendFailure,
whose message never holds the URL or its password.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import unquote, urlsplit

import msgspec
import psycopg
import psycopg.errors
import sqlalchemy
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout
from sqlalchemy.pool import NullPool

from ..errors import KeyExists, TranscriptNotFound
from ..transcript import Transcript, TranscriptListing, VersionSummary, from_json, summarise, to_json
from .base import ApiKey, TranscriptRecord
from .failures import BackendFailure
from .rows import KEY_COLUMNS, RECORD_FIELDS, key_of, key_values, listing_of, record_of, summary_decoder

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
"""The Alembic script directory (env.py, versions/)."""
_MIGRATION_LOCK = 0x5354_5343_5249_4245  # "STSCRIBE": the advisory lock nodes take turns under
_alembic_lock = threading.Lock()  # Alembic's `context` is one per process: one run at a time
_DRIVER_FAILURES = (
    psycopg.OperationalError,  # PoolTimeout and PoolClosed among them
    psycopg.InterfaceError,
    PoolTimeout,
    psycopg.errors.ReadOnlySqlTransaction,  # a failover left the URL on a standby
)
_RECORD_COLUMNS: LiteralString = ", ".join(RECORD_FIELDS)


def open_postgres_store(url: str, *, max_size: int = 10) -> PostgresTranscriptStore:
    """The store of the database at `url` (postgresql://...), its schema migrated first; `close()`
    it. Raises BackendFailure when the database cannot be reached."""
    migrate(url)
    return PostgresTranscriptStore(url, max_size=max_size)


def migrate(url: str) -> None:
    """Bring the database's schema to the newest migration (nothing happens when it is there).
    Nodes starting at once take turns under an advisory lock, so that only the first one changes
    anything. Raises BackendFailure when the database cannot be reached."""
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=NullPool
    )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a line per plugin and revision, at every start
    try:
        with _alembic_lock, engine.begin() as connection:
            connection.execute(
                sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
            )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except (sqlalchemy.exc.DBAPIError, psycopg.Error, PoolTimeout) as exc:  # a malformed URL too
        raise _failure(exc, "migrating the schema", url) from exc
    finally:
        engine.dispose()


class PostgresTranscriptStore:
    """A TranscriptStore and KeyStore on a pool of connections (`max_size` at most); blocking
    calls, safe from any thread. `timeout_s` bounds the wait for the pool to open and for a free
    connection. The schema must be migrated already (`open_postgres_store` does it)."""

    def __init__(self, url: str, *, max_size: int = 10, timeout_s: float = 10.0) -> None:
        self._url = url
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,  # a connection broken by a restart is replaced
            timeout=timeout_s,
            name="streamscribe-store",
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            raise _failure(exc, "connecting to the transcript store", url) from exc

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
        self._execute(
            "INSERT INTO transcripts (id, created_at, language, live_model, audio_path, state, owner, "
            "audio_retention_h, node) VALUES (%s, %s, %s, %s, %s, 'live', %s, %s, %s)",
            (transcript_id, time.time(), language, live_model, audio_path, owner, audio_retention_h, node),
        )

    def get(self, transcript_id: str) -> TranscriptRecord | None:
        rows = self._fetch(f"SELECT {_RECORD_COLUMNS} FROM transcripts WHERE id = %s", (transcript_id,))
        return record_of(rows[0]) if rows else None

    def listing(self, owner: str | None, limit: int, before: float | None) -> list[TranscriptListing]:
        rows = self._fetch(
            "SELECT t.id, t.created_at, t.state, t.language, t.audio_path IS NOT NULL, v.summary::text "
            "FROM transcripts t LEFT JOIN LATERAL (SELECT summary FROM versions "
            "WHERE transcript_id = t.id ORDER BY version DESC LIMIT 1) v ON true "
            "WHERE (%(owner)s::text IS NULL OR t.owner = %(owner)s) "
            "AND (%(before)s::float8 IS NULL OR t.created_at < %(before)s) "
            "ORDER BY t.created_at DESC LIMIT %(limit)s",
            {"owner": owner, "before": before, "limit": limit},
        )
        return [listing_of(row) for row in rows]

    def add_version(self, transcript: Transcript, job_id: str | None = None) -> Transcript:
        """Raises TranscriptNotFound when the transcript is gone (deleted while its job ran)."""
        with self._connection("storing a version") as connection, connection.transaction():
            # the row lock makes concurrent writers of this transcript, on any node, take turns
            locked = connection.execute(
                "SELECT 1 FROM transcripts WHERE id = %s FOR UPDATE", (transcript.id,)
            ).fetchone()
            if locked is None:
                raise TranscriptNotFound(f"transcript {transcript.id} is gone")
            if job_id is not None:
                done = connection.execute(
                    "SELECT body::text FROM versions WHERE transcript_id = %s AND job_id = %s",
                    (transcript.id, job_id),
                ).fetchone()
                if done is not None:  # the job was delivered twice: its version is stored already
                    return from_json(done[0].encode())
            latest = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE transcript_id = %s", (transcript.id,)
            ).fetchone()
            stored = msgspec.structs.replace(transcript, version=(latest[0] if latest else 0) + 1)
            connection.execute(
                "INSERT INTO versions (transcript_id, version, job_id, summary, body) "
                "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb)",
                (
                    transcript.id,
                    stored.version,
                    job_id,
                    msgspec.json.encode(summarise(stored)).decode(),
                    to_json(stored).decode(),
                ),
            )
        return stored

    def version(self, transcript_id: str, version: int | None = None) -> Transcript | None:
        if version is None:
            rows = self._fetch(
                "SELECT body::text FROM versions WHERE transcript_id = %s ORDER BY version DESC LIMIT 1",
                (transcript_id,),
            )
        else:
            rows = self._fetch(
                "SELECT body::text FROM versions WHERE transcript_id = %s AND version = %s",
                (transcript_id, version),
            )
        return from_json(rows[0][0].encode()) if rows else None

    def versions(self, transcript_id: str) -> list[VersionSummary]:
        rows = self._fetch(
            "SELECT summary::text FROM versions WHERE transcript_id = %s ORDER BY version", (transcript_id,)
        )
        return [summary_decoder.decode(row[0]) for row in rows]

    def audio_expired(self, now: float, default_retention_h: float) -> list[TranscriptRecord]:
        rows = self._fetch(
            f"SELECT {_RECORD_COLUMNS} FROM transcripts WHERE audio_path IS NOT NULL "
            "AND state IN ('done', 'failed') AND finalized_at + COALESCE(audio_retention_h, %s) * 3600 <= %s",
            (default_retention_h, now),
        )
        return [record_of(row) for row in rows]

    def forget_audio(self, transcript_id: str) -> None:
        self._execute("UPDATE transcripts SET audio_path = NULL WHERE id = %s", (transcript_id,))

    def audio_paths(self, owner: str | None) -> list[str]:
        rows = self._fetch(
            "SELECT audio_path FROM transcripts WHERE owner IS NOT DISTINCT FROM %s AND audio_path IS NOT NULL",
            (owner,),
        )
        return [path for (path,) in rows]

    def queue_job(self, transcript_id: str, job_settings: bytes, job_id: str) -> bool:
        return (
            self._execute(
                "UPDATE transcripts SET state = 'queued', job_settings = %s, job_id = %s, error = NULL "
                "WHERE id = %s AND state NOT IN ('queued', 'running')",
                (job_settings, job_id, transcript_id),
            )
            == 1
        )

    def start_job(self, transcript_id: str, job_id: str) -> TranscriptRecord | None:
        rows = self._fetch(
            "UPDATE transcripts SET state = 'running' "
            f"WHERE id = %s AND job_id = %s AND state IN ('queued', 'running') RETURNING {_RECORD_COLUMNS}",
            (transcript_id, job_id),
        )
        return record_of(rows[0]) if rows else None

    def end_job(self, transcript_id: str, job_id: str | None, error: str | None) -> None:
        self._execute(
            "UPDATE transcripts SET state = %(state)s, error = %(error)s, finalized_at = %(now)s, "
            "job_settings = NULL WHERE id = %(id)s AND (%(job_id)s::text IS NULL OR job_id = %(job_id)s)",
            {
                "state": "failed" if error else "done",
                "error": error,
                "now": time.time(),
                "id": transcript_id,
                "job_id": job_id,
            },
        )

    def orphaned_streams(self, live_nodes: Collection[str], created_before: float = math.inf) -> list[str]:
        rows = self._fetch(
            "SELECT id FROM transcripts WHERE state = 'live' AND created_at < %s "
            "AND (node IS NULL OR NOT node = ANY(%s::text[])) ORDER BY created_at, id",
            (created_before, list(live_nodes)),
        )
        return [transcript_id for (transcript_id,) in rows]

    def unfinished_jobs(self) -> list[tuple[str, str]]:
        rows = self._fetch(
            "SELECT id, job_id FROM transcripts WHERE state IN ('queued', 'running') AND job_id IS NOT NULL",
            (),
        )
        return [(transcript_id, job_id) for transcript_id, job_id in rows]

    def claim_queued(self) -> TranscriptRecord | None:
        """For the table JobQueue (a single node without Redis): the oldest queued transcript, now
        'running'; None when none is queued. Concurrent callers never get the same one."""
        rows = self._fetch(
            "UPDATE transcripts SET state = 'running' WHERE id = (SELECT id FROM transcripts "
            "WHERE state = 'queued' ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {_RECORD_COLUMNS}",
            (),
        )
        return record_of(rows[0]) if rows else None

    def requeue_running(self) -> None:
        """For the table JobQueue, at start: every 'running' job is queued again (job ids kept).
        Only right where one process works the jobs: another's running ones would run twice."""
        self._execute("UPDATE transcripts SET state = 'queued' WHERE state = 'running'", ())

    def delete(self, transcript_id: str) -> TranscriptRecord | None:
        rows = self._fetch(
            f"DELETE FROM transcripts WHERE id = %s RETURNING {_RECORD_COLUMNS}", (transcript_id,)
        )
        return record_of(rows[0]) if rows else None

    def create_key(self, key: ApiKey, key_hash: str) -> None:
        try:
            self._execute(
                f"INSERT INTO api_keys (key_hash, {KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (key_hash, *key_values(key)),
            )
        except psycopg.errors.UniqueViolation as exc:
            raise KeyExists(f"a key named {key.name!r} exists already; revoke it first") from exc

    def keys(self) -> list[ApiKey]:
        rows = self._fetch(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, seq", ())
        return [key_of(row) for row in rows]

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        rows = self._fetch(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = %s", (key_hash,))
        return key_of(rows[0]) if rows else None

    def create_token(self, token_hash: str, key_name: str, expires_at: float) -> None:
        with self._connection("storing a token") as connection, connection.transaction():
            connection.execute("DELETE FROM tokens WHERE expires_at <= %s", (time.time(),))
            connection.execute(
                "INSERT INTO tokens (token_hash, key_name, expires_at) VALUES (%s, %s, %s)",
                (token_hash, key_name, expires_at),
            )

    def key_for_token(self, token_hash: str, now: float) -> ApiKey | None:
        columns = ", ".join(f"k.{column}" for column in KEY_COLUMNS.split(", "))
        rows = self._fetch(
            f"SELECT {columns} FROM tokens t JOIN api_keys k ON k.name = t.key_name "
            "WHERE t.token_hash = %s AND t.expires_at > %s",
            (token_hash, now),
        )
        return key_of(rows[0]) if rows else None

    def has_keys(self) -> bool:
        return bool(self._fetch("SELECT 1 FROM api_keys LIMIT 1", ()))

    def revoke_key(self, name: str) -> bool:
        return self._execute("DELETE FROM api_keys WHERE name = %s", (name,)) == 1

    def check(self) -> None:
        self._fetch("SELECT 1 FROM transcripts LIMIT 1", ())

    def close(self) -> None:
        self._pool.close()

    @contextlib.contextmanager
    def _connection(self, doing: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection (autocommit: open `transaction()` for more than one statement);
        driver failures come out as BackendFailure."""
        try:
            with self._pool.connection() as connection:
                yield connection
        except _DRIVER_FAILURES as exc:
            raise _failure(exc, doing, self._url) from exc

    def _execute(self, sql: LiteralString, parameters: Any) -> int:
        """Run one statement; how many rows it changed."""
        with self._connection("the transcript store") as connection:
            return connection.execute(sql, parameters).rowcount

    def _fetch(self, sql: LiteralString, parameters: Any) -> list[tuple[Any, ...]]:
        with self._connection("the transcript store") as connection:
            return connection.execute(sql, parameters).fetchall()


def _failure(exc: BaseException, doing: str, url: str) -> BackendFailure:
    """A BackendFailure for a driver error while `doing`: its message keeps the driver's reason
    with the URL and the password taken out (it reaches logs); a full disk keeps ENOSPC."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    reason = " ".join(str(cause).split()) or type(cause).__name__
    for secret in sorted(_secrets(url), key=len, reverse=True):
        reason = reason.replace(secret, "***")
    message = f"PostgreSQL: {doing} failed ({type(cause).__name__}: {reason})"
    if isinstance(cause, psycopg.errors.DiskFull):
        return BackendFailure(errno.ENOSPC, message)
    return BackendFailure(message)


def _secrets(url: str) -> list[str]:
    """What must never appear in a message: the URL itself and its password."""
    secrets = [url]
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            secrets += [password, unquote(password)]
    with contextlib.suppress(psycopg.Error):
        if conninfo_password := conninfo_to_dict(url).get("password"):
            secrets.append(str(conninfo_password))
    return secrets
