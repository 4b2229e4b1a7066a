"""Transcript exports and the SQLite store with its API keys (a real database file in a temporary directory)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import srt
import webvtt

from streamscribe.config import FinalizeSettings
from streamscribe.errors import KeyExists
from streamscribe.exports import to_srt, to_txt, to_vtt
from streamscribe.finalize.pipeline import first_version
from streamscribe.store.sqlite import SqliteTranscriptStore
from streamscribe.transcript import from_json, to_json
from streamscribe.wire import Word


def sample(transcript_id: str = "t1"):  # type: ignore[no-untyped-def]
    finals = [
        Word(text=t, start=i * 0.5, end=i * 0.5 + 0.4, confidence=0.9)
        for i, t in enumerate("hello there how are you today my friend".split())
    ]
    return first_version(
        transcript_id,
        finals,
        language="en",
        duration_s=5.0,
        live_model="tiny.en",
        settings=FinalizeSettings(),
    )


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
    store.create("t1", "en", "tiny.en", str(tmp_path / "t1.wav"))
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


def test_job_queue_and_recovery(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "db.sqlite3")
    store.create("done", "en", "tiny.en", "a.wav")
    store.create("cut", "en", "tiny.en", "b.wav")
    assert store.enqueue("done", b"{}")
    assert not store.enqueue("done", b"{}"), "a second job for the same transcript was queued"
    claimed = store.claim_next_job()
    assert claimed is not None and claimed.id == "done" and claimed.state == "running"
    assert store.claim_next_job() is None
    assert store.recover() == ["cut"]  # the running job and the cut-off stream are queued again
    assert {store.claim_next_job().id, store.claim_next_job().id} == {"done", "cut"}  # type: ignore[union-attr]
    store.finish_job("done", None)
    assert store.audio_expired(finalized_before=1e12)[0].id == "done"
    store.forget_audio("done")
    assert store.get("done").audio_path is None  # type: ignore[union-attr]
    assert store.delete("done") is not None and store.get("done") is None


def test_keys_are_found_by_hash_unique_by_name_and_gone_once_revoked(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "db.sqlite3")
    assert not store.has_keys() and store.keys() == []
    store.create_key("alice", "a" * 64, admin=False)
    store.create_key("ops", "b" * 64, admin=True)
    with pytest.raises(KeyExists):
        store.create_key("alice", "c" * 64, admin=False)
    assert store.has_keys()
    assert [(key.name, key.admin) for key in store.keys()] == [("alice", False), ("ops", True)]
    found = store.key_for_hash("b" * 64)
    assert found is not None and found.name == "ops" and found.admin
    assert store.key_for_hash("c" * 64) is None
    assert store.revoke_key("alice") and not store.revoke_key("alice")
    assert store.key_for_hash("a" * 64) is None and [key.name for key in store.keys()] == ["ops"]
    store.close()
