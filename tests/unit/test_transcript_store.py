"""Transcript exports and the SQLite store with its API keys (a real database file in a temporary directory)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import srt
import webvtt

from streamscribe.exports import to_srt, to_txt, to_vtt
from streamscribe.store.sqlite import SqliteTranscriptStore
from streamscribe.store.table_jobs import TableJobQueue
from streamscribe.transcript import from_json, to_json

from ..stored import create, sample


def test_exports_round_trip_and_parse() -> None:
    transcript = sample()
    assert from_json(to_json(transcript)) == transcript
    assert [cue.content for cue in srt.parse(to_srt(transcript))] == [
        "hello there how are you today my friend"
    ]
    assert len(webvtt.from_string(to_vtt(transcript))) == 1
    assert to_txt(transcript) == "hello there how are you today my friend\n"


def test_versions_are_numbered_immutable_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteTranscriptStore(path)
    create(store, "t1", audio_path=str(tmp_path / "t1.wav"))
    first = store.add_version(sample())
    second = store.add_version(sample())
    assert (first.version, second.version) == (1, 2)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        store._db.execute("UPDATE versions SET body = x'00' WHERE version = 1")
    store.close()
    reopened = SqliteTranscriptStore(path)
    assert reopened.version("t1", 1) == first
    assert [summary.version for summary in reopened.versions("t1")] == [1, 2]
    assert reopened.version("t1") == second


def test_table_job_queue_and_recovery(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "db.sqlite3")
    jobs = TableJobQueue(store)
    create(store, "done")
    create(store, "cut")
    assert jobs.enqueue("done", b"{}")
    assert not jobs.enqueue("done", b"{}"), "a second job for the same transcript was queued"
    claimed = jobs.claim_next_job("worker")
    assert claimed is not None and claimed.record.id == "done" and claimed.record.state == "running"
    assert jobs.claim_next_job("worker") is None
    assert store.orphaned_streams(()) == ["cut"], "a stream still live after a restart was cut off"
    jobs.recover()  # the running job is queued again, under the same job id
    again = jobs.claim_next_job("worker")
    assert again is not None and (again.record.id, again.job_id) == ("done", claimed.job_id)
    jobs.finish_job(again, None)
    assert store.get("done").state == "done"  # type: ignore[union-attr]
    assert store.audio_expired(time.time(), default_retention_h=1.0) == []
    assert store.audio_expired(time.time() + 3601, default_retention_h=1.0)[0].id == "done"
    store.forget_audio("done")
    assert store.get("done").audio_path is None  # type: ignore[union-attr]
    assert store.delete("done") is not None and store.get("done") is None


def test_transcripts_belong_to_their_key_and_keep_their_own_retention(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "db.sqlite3")
    for number, owner in enumerate(["alice", "bob", "alice", None]):
        create(store, f"t{number}", owner=owner, audio_retention_h=0.0 if owner == "bob" else None)
    store.add_version(sample("t2"))
    assert store.get("t1").owner == "bob"  # type: ignore[union-attr]
    assert len(store.audio_paths("alice")) == 2 and len(store.audio_paths(None)) == 1
    mine = store.listing("alice", limit=10, before=None)
    assert [item.id for item in mine] == ["t2", "t0"], "not alice's own, newest first"
    assert (mine[0].latest_version, mine[0].duration_s, mine[1].latest_version) == (1, 5.0, None)
    assert [item.id for item in store.listing(None, limit=2, before=None)] == ["t3", "t2"]
    assert [item.id for item in store.listing(None, limit=10, before=mine[0].created_at)] == ["t1", "t0"]
    for transcript_id in ("t0", "t1"):
        store.end_job(transcript_id, None, None)
    expired = store.audio_expired(time.time(), default_retention_h=168.0)
    assert [record.id for record in expired] == ["t1"], "only bob's audio (kept 0 h) is due"
    store.close()


def test_a_store_made_before_keys_owned_transcripts_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE transcripts (id TEXT PRIMARY KEY, created_at REAL NOT NULL, language TEXT, "
        "live_model TEXT NOT NULL, audio_path TEXT, state TEXT NOT NULL, job_settings BLOB, error TEXT, "
        "finalized_at REAL);"
        "INSERT INTO transcripts VALUES ('old', 1.0, 'en', 'tiny.en', 'a.wav', 'done', NULL, NULL, 2.0);"
        "INSERT INTO transcripts VALUES ('busy', 1.5, 'en', 'tiny.en', 'b.wav', 'running', '{}', NULL, NULL);"
    )
    old.close()
    store = SqliteTranscriptStore(path)
    record = store.get("old")
    assert record is not None and record.owner is None and record.audio_retention_h is None
    create(store, "new", owner="alice")
    assert store.get("new").owner == "alice"  # type: ignore[union-attr]
    jobs = TableJobQueue(store)
    jobs.recover()  # a job that was running when the old version stopped finishes under the new one
    job = jobs.claim_next_job("worker")
    assert job is not None and job.record.id == "busy"
    jobs.finish_job(job, None)
    assert store.get("busy").state == "done"  # type: ignore[union-attr]
    store.close()
