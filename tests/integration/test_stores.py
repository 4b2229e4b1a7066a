"""One contract for both TranscriptStores (and KeyStores): the embedded SQLite file and a real
PostgreSQL server (tests/services.py, one per session; each test has a schema of its own)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from streamscribe.errors import KeyExists, TranscriptNotFound
from streamscribe.store.base import ApiKey
from streamscribe.store.failures import BackendFailure
from streamscribe.store.postgres import PostgresTranscriptStore, migrate, open_postgres_store
from streamscribe.store.sqlite import SqliteTranscriptStore
from tests.services import free_port

from ..stored import create, sample

Store = SqliteTranscriptStore | PostgresTranscriptStore


@dataclass
class Backend:
    name: str
    store: Store
    raw: Callable[[str], None]
    """Run one statement behind the store's back."""
    raw_error: type[Exception]
    """What the database raises when a trigger or constraint refuses a raw statement."""
    url: str | None = None


def schema_url(postgres_url: str) -> str:
    """A fresh schema of the session's database: the URL whose search_path is it."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    return f"{postgres_url}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        sqlite_store = SqliteTranscriptStore(tmp_path / "db.sqlite3")

        def raw_sqlite(sql: str) -> None:
            sqlite_store._db.execute(sql)

        yield Backend("sqlite", sqlite_store, raw_sqlite, sqlite3.IntegrityError)
        sqlite_store.close()
        return
    url = schema_url(request.getfixturevalue("postgres_url"))
    postgres_store = open_postgres_store(url)

    def raw_postgres(sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]

    yield Backend("postgres", postgres_store, raw_postgres, psycopg.Error, url)
    postgres_store.close()


def test_a_transcript_is_created_live_and_listed_newest_first_per_owner(backend: Backend) -> None:
    store = backend.store
    for number, owner in enumerate(["alice", "bob", "alice", None]):
        create(store, f"t{number}", owner=owner, node="n1" if number == 0 else None)
    record = store.get("t0")
    assert record is not None
    assert (record.state, record.owner, record.node, record.job_id, record.live_model) == (
        "live",
        "alice",
        "n1",
        None,
        "tiny.en",
    )
    assert record.audio_path == "/audio/t0.wav" and record.job_settings is None and record.error is None
    assert store.get("nope") is None
    store.add_version(sample("t2"))
    mine = store.listing("alice", limit=10, before=None)
    assert [item.id for item in mine] == ["t2", "t0"], "not alice's own, newest first"
    assert (mine[0].latest_version, mine[0].duration_s, mine[1].latest_version) == (1, 5.0, None)
    assert mine[0].audio_kept and mine[0].state == "live"
    assert [item.id for item in store.listing(None, limit=2, before=None)] == ["t3", "t2"]
    assert [item.id for item in store.listing(None, limit=10, before=mine[0].created_at)] == ["t1", "t0"]
    assert store.listing("carol", limit=10, before=None) == []
    assert sorted(store.audio_paths("alice")) == ["/audio/t0.wav", "/audio/t2.wav"]
    assert store.audio_paths(None) == ["/audio/t3.wav"], "an ownerless transcript's audio is its own"
    store.check()


def test_versions_are_numbered_kept_whole_and_never_changed(backend: Backend) -> None:
    store = backend.store
    create(store, "t1")
    first = store.add_version(sample("t1"))
    second = store.add_version(sample("t1", "a second better text"))
    assert (first.version, second.version) == (1, 2)
    assert store.version("t1", 1) == first and store.version("t1") == second
    assert store.version("t1", 3) is None and store.version("nope") is None
    assert [summary.version for summary in store.versions("t1")] == [1, 2]
    assert store.listing(None, 10, None)[0].latest_version == 2
    with pytest.raises(backend.raw_error, match="immutable"):
        backend.raw("UPDATE versions SET version = 9 WHERE version = 1")
    assert store.version("t1", 1) == first
    with pytest.raises(TranscriptNotFound):
        store.add_version(sample("gone"))


def test_a_job_delivered_twice_stores_one_version(backend: Backend) -> None:
    store = backend.store
    create(store, "t1")
    store.add_version(sample("t1"))
    stored = store.add_version(sample("t1", "from job one"), job_id="job-1")
    again = store.add_version(sample("t1", "from job one, delivered again"), job_id="job-1")
    assert stored.version == again.version == 2 and again == stored, "the second delivery stored anew"
    other = store.add_version(sample("t1", "from job two"), job_id="job-2")
    untracked = store.add_version(sample("t1", "no job"))
    assert (other.version, untracked.version) == (3, 4)
    assert [summary.version for summary in store.versions("t1")] == [1, 2, 3, 4]
    create(store, "t2")
    assert store.add_version(sample("t2"), job_id="job-1").version == 1, "job ids are per transcript"


def test_jobs_move_through_their_states_and_stale_ones_change_nothing(backend: Backend) -> None:
    store = backend.store
    create(store, "t1")
    assert store.start_job("t1", "job-1") is None, "a job never queued was started"
    assert store.queue_job("t1", b'{"diarize": false}', "job-1")
    assert not store.queue_job("t1", b"{}", "job-x"), "a second job for the same transcript was queued"
    queued = store.get("t1")
    assert queued is not None and (queued.state, queued.job_id, queued.job_settings) == (
        "queued",
        "job-1",
        b'{"diarize": false}',
    )
    assert store.start_job("t1", "job-x") is None, "a stale job was started"
    running = store.start_job("t1", "job-1")
    assert running is not None and (running.state, running.job_id) == ("running", "job-1")
    assert running.job_settings == b'{"diarize": false}'
    again = store.start_job("t1", "job-1")  # redelivered (its worker died): it may run again
    assert again is not None and again.state == "running"
    assert not store.queue_job("t1", b"{}", "job-2"), "a job was queued beside a running one"
    store.end_job("t1", "job-x", "stale worker")
    still = store.get("t1")
    assert still is not None and (still.state, still.error) == ("running", None), "a stale job ended it"
    store.end_job("t1", "job-1", None)
    done = store.get("t1")
    assert done is not None and (done.state, done.error, done.job_settings, done.job_id) == (
        "done",
        None,
        None,
        "job-1",
    )
    assert done.finalized_at is not None and abs(done.finalized_at - time.time()) < 60
    assert store.queue_job("t1", b"{}", "job-2")
    assert store.start_job("t1", "job-1") is None, "the previous job was started again"
    store.end_job("t1", None, "the second pass failed (boom)")
    failed = store.get("t1")
    assert failed is not None and (failed.state, failed.error) == ("failed", "the second pass failed (boom)")
    assert store.queue_job("t1", b"{}", "job-3")
    requeued = store.get("t1")
    assert requeued is not None and requeued.error is None, "a new job kept the last one's error"
    assert not store.queue_job("gone", b"{}", "job-4")
    assert store.delete("t1") is not None
    assert store.start_job("t1", "job-3") is None, "a deleted transcript's job was started"
    store.end_job("t1", "job-3", None)  # nothing to end: no error either


def test_orphaned_streams_are_the_live_ones_of_nodes_gone(backend: Backend) -> None:
    store = backend.store
    create(store, "a", node="n1")
    create(store, "b", node="n2")
    create(store, "c", node=None)
    create(store, "d", node="n2")
    assert store.queue_job("d", b"{}", "job-d")  # no longer live: not an orphan
    assert store.orphaned_streams(["n1", "n3"]) == ["b", "c"]
    assert store.orphaned_streams({"n1", "n2"}) == ["c"]
    assert store.orphaned_streams([]) == ["a", "b", "c"]


def test_audio_expires_after_its_retention_and_is_forgotten(backend: Backend) -> None:
    store = backend.store
    create(store, "kept")
    create(store, "brief", audio_retention_h=0.0)
    create(store, "live")
    for transcript_id in ("kept", "brief"):
        assert store.queue_job(transcript_id, b"{}", f"job-{transcript_id}")
        store.end_job(transcript_id, f"job-{transcript_id}", None)
    now = time.time()
    assert [record.id for record in store.audio_expired(now, default_retention_h=1.0)] == ["brief"]
    later = sorted(record.id for record in store.audio_expired(now + 3601, default_retention_h=1.0))
    assert later == ["brief", "kept"], "the live stream's audio expired, or the default was not used"
    store.forget_audio("brief")
    brief = store.get("brief")
    assert brief is not None and brief.audio_path is None
    assert [record.id for record in store.audio_expired(now + 3601, default_retention_h=1.0)] == ["kept"]


def test_delete_removes_the_transcript_and_every_version(backend: Backend) -> None:
    store = backend.store
    create(store, "t1", owner="alice", node="n1")
    create(store, "t2")
    store.add_version(sample("t1"))
    store.add_version(sample("t1"), job_id="job-1")
    store.add_version(sample("t2"))
    removed = store.delete("t1")
    assert removed is not None and (removed.id, removed.owner, removed.node) == ("t1", "alice", "n1")
    assert removed.audio_path == "/audio/t1.wav", "the caller needs the audio path to delete it"
    assert store.get("t1") is None and store.version("t1") is None and store.versions("t1") == []
    assert store.delete("t1") is None
    assert [item.id for item in store.listing(None, 10, None)] == ["t2"]
    assert store.version("t2") is not None, "another transcript's versions went too"
    create(store, "t1")  # the id can be used again, with no version left over
    assert store.add_version(sample("t1"), job_id="job-1").version == 1


def test_keys_are_found_by_hash_unique_by_name_and_gone_once_revoked(backend: Backend) -> None:
    store = backend.store
    assert not store.has_keys() and store.keys() == []
    store.create_key(ApiKey(name="alice", max_streams=2, audio_retention_h=0.0, max_audio_mb=5.0), "a" * 64)
    store.create_key(ApiKey(name="ops", admin=True, max_replays=3), "b" * 64)
    with pytest.raises(KeyExists):
        store.create_key(ApiKey(name="alice"), "c" * 64)
    with pytest.raises(KeyExists):
        store.create_key(ApiKey(name="carol"), "a" * 64)
    assert store.has_keys()
    assert [(key.name, key.admin) for key in store.keys()] == [("alice", False), ("ops", True)]
    assert store.key_for_hash("b" * 64) == ApiKey(name="ops", admin=True, max_replays=3)
    assert store.key_for_hash("a" * 64) == ApiKey(
        name="alice", created_at=0.0, max_streams=2, audio_retention_h=0.0, max_audio_mb=5.0
    ), "a key's limits were not kept"
    assert store.key_for_hash("c" * 64) is None
    now = time.time()
    store.create_token("t" * 64, "alice", expires_at=now + 60)
    store.create_token("u" * 64, "ops", expires_at=now - 1)
    assert store.key_for_token("t" * 64, now) == store.key_for_hash("a" * 64)
    assert store.key_for_token("t" * 64, now + 61) is None, "an expired token still authenticated"
    assert store.key_for_token("u" * 64, now) is None
    assert store.key_for_token("a" * 64, now) is None, "a key's hash was taken as a token"
    store.create_token("v" * 64, "ops", expires_at=now + 60)  # purges the expired one
    with pytest.raises(backend.raw_error):  # it is gone: the same hash can be stored again
        backend.raw(f"INSERT INTO tokens (token_hash, key_name, expires_at) VALUES ('{'v' * 64}', 'ops', 0)")
    backend.raw(f"INSERT INTO tokens (token_hash, key_name, expires_at) VALUES ('{'u' * 64}', 'ops', 0)")
    assert store.revoke_key("alice") and not store.revoke_key("alice")
    assert store.key_for_hash("a" * 64) is None and [key.name for key in store.keys()] == ["ops"]
    assert store.key_for_token("t" * 64, now) is None, "a revoked key's token still authenticated"
    assert store.revoke_key("ops") and not store.has_keys()


@pytest.mark.parametrize("same_job", [False, True], ids=["eight-jobs", "one-job-eight-times"])
def test_concurrent_writers_take_each_number_once(backend: Backend, same_job: bool) -> None:
    """Eight threads (on PostgreSQL through two stores, as two nodes would) store versions at once."""
    stores: list[Store] = [backend.store]
    if backend.url is not None:
        stores.append(PostgresTranscriptStore(backend.url))
    create(backend.store, "t1")
    start = threading.Barrier(8)
    stored: list[int] = []
    errors: list[BaseException] = []

    def write(number: int) -> None:
        try:
            start.wait()
            job_id = "job" if same_job else f"job-{number}"
            version = stores[number % len(stores)].add_version(sample("t1", f"writer {number}"), job_id)
            stored.append(version.version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for extra in stores[1:]:
        extra.close()
    assert errors == []
    if same_job:
        assert stored == [1] * 8, "a job delivered eight times stored more than one version"
        assert [summary.version for summary in backend.store.versions("t1")] == [1]
    else:
        assert sorted(stored) == list(range(1, 9)), "a number was taken twice, or skipped"
        assert [summary.version for summary in backend.store.versions("t1")] == list(range(1, 9))


def test_the_table_queue_claims_the_oldest_job_and_requeues_what_was_running(backend: Backend) -> None:
    """claim_queued and requeue_running: the JobQueue of a server without Redis (table_jobs.py)."""
    store = backend.store
    for transcript_id in ("first", "second", "live"):
        create(store, transcript_id)
    assert store.claim_queued() is None
    assert store.queue_job("second", b"{}", "job-2")
    assert store.queue_job("first", b'{"x": 1}', "job-1")
    claimed = store.claim_queued()
    assert claimed is not None and (claimed.id, claimed.state, claimed.job_id) == (
        "first",
        "running",
        "job-1",
    )
    assert claimed.job_settings == b'{"x": 1}'
    next_one = store.claim_queued()
    assert next_one is not None and next_one.id == "second"
    assert store.claim_queued() is None
    store.end_job("second", "job-2", None)
    store.requeue_running()  # as at a restart: "first" was running
    states = {transcript_id: store.get(transcript_id).state for transcript_id in ("first", "second", "live")}  # type: ignore[union-attr]
    assert states == {"first": "queued", "second": "done", "live": "live"}
    again = store.claim_queued()
    assert again is not None and (again.id, again.job_id) == ("first", "job-1"), "the job id was not kept"


def test_a_sqlite_store_made_before_jobs_had_ids_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE transcripts (id TEXT PRIMARY KEY, created_at REAL NOT NULL, language TEXT, "
        "live_model TEXT NOT NULL, audio_path TEXT, state TEXT NOT NULL, job_settings BLOB, error TEXT, "
        "finalized_at REAL, owner TEXT, audio_retention_h REAL);"
        "CREATE TABLE versions (transcript_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE, "
        "version INTEGER NOT NULL, summary BLOB NOT NULL, body BLOB NOT NULL, "
        "PRIMARY KEY (transcript_id, version));"
        "INSERT INTO transcripts VALUES ('old', 1.0, 'en', 'tiny.en', 'a.wav', 'running', x'7b7d', NULL, "
        "NULL, 'alice', NULL);"
    )
    old.close()
    store = SqliteTranscriptStore(path)
    record = store.get("old")
    assert record is not None and (record.owner, record.node) == ("alice", None)
    assert record.job_id == "old", "a running job of a store without job ids gets one, to be finished by"
    assert store.add_version(sample("old"), job_id="job-1").version == 1
    assert store.add_version(sample("old"), job_id="job-1").version == 1
    store.requeue_running()
    claimed = store.claim_queued()
    assert claimed is not None and claimed.id == "old" and claimed.job_settings == b"{}"
    store.close()


def test_migrating_twice_or_from_several_nodes_at_once_is_safe(postgres_url: str) -> None:
    """Four processes migrate one empty database at once (as nodes starting together), then one again."""
    url = schema_url(postgres_url)
    node = (
        "import sys; from streamscribe.store.postgres import migrate; "
        "print('ready', flush=True); sys.stdin.readline(); migrate(sys.argv[1])"
    )
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", node, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in starting:  # every one imported: then all go at once
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in starting:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in starting:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, f"nodes migrating at once got in each other's way: {stderr}"
    store = PostgresTranscriptStore(url)
    create(store, "t1")
    store.add_version(sample("t1"))
    migrate(url)  # again: changes nothing, keeps everything
    assert store.version("t1") is not None and store.get("t1") is not None
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "ORDER BY table_name"
        ).fetchall()
    assert [name for (name,) in tables] == [
        "alembic_version",
        "api_keys",
        "tokens",
        "transcripts",
        "versions",
    ]
    store.close()


def test_an_unreachable_database_is_a_backend_failure_that_keeps_the_password_secret(
    postgres_url: str,
) -> None:
    url = f"postgresql://streamscribe:s3cret-pw@127.0.0.1:{free_port()}/streamscribe"  # nothing listens
    with pytest.raises(BackendFailure) as migrating:
        open_postgres_store(url)
    with pytest.raises(BackendFailure) as connecting:
        PostgresTranscriptStore(url, timeout_s=1.0)
    for failure in (migrating.value, connecting.value):
        assert "s3cret-pw" not in str(failure) and url not in str(failure)
        assert str(failure).startswith("PostgreSQL: ")
    store = open_postgres_store(schema_url(postgres_url))
    store.close()
    with pytest.raises(BackendFailure):
        store.check()
