"""The first schema: transcripts, their immutable JSONB versions (one per job id), API keys and
their tokens.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE transcripts (
            id text PRIMARY KEY,
            created_at double precision NOT NULL,
            language text,
            live_model text NOT NULL,
            audio_path text,
            state text NOT NULL CHECK (state IN ('live', 'queued', 'running', 'done', 'failed')),
            job_settings bytea,
            error text,
            finalized_at double precision,
            owner text,
            audio_retention_h double precision,
            node text,
            job_id text
        )
        """
    )
    op.execute("CREATE INDEX transcripts_state ON transcripts (state, created_at)")
    op.execute("CREATE INDEX transcripts_owner ON transcripts (owner, created_at)")
    op.execute(
        """
        CREATE TABLE versions (
            transcript_id text NOT NULL REFERENCES transcripts (id) ON DELETE CASCADE,
            version integer NOT NULL,
            job_id text,
            summary jsonb NOT NULL,
            body jsonb NOT NULL,
            PRIMARY KEY (transcript_id, version),
            UNIQUE (transcript_id, job_id)
        )
        """
    )
    # Versions are never changed; a transcript's delete still removes them (ON DELETE CASCADE).
    op.execute(
        """
        CREATE FUNCTION versions_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'transcript versions are immutable';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER versions_are_immutable BEFORE UPDATE ON versions "
        "FOR EACH ROW EXECUTE FUNCTION versions_are_immutable()"
    )
    op.execute(
        """
        CREATE TABLE api_keys (
            seq bigint GENERATED ALWAYS AS IDENTITY,
            name text PRIMARY KEY,
            key_hash text NOT NULL UNIQUE,
            admin boolean NOT NULL,
            created_at double precision NOT NULL,
            max_streams integer,
            max_replays integer,
            audio_retention_h double precision,
            max_audio_mb double precision
        )
        """
    )
    op.execute(
        """
        CREATE TABLE tokens (
            token_hash text PRIMARY KEY,
            key_name text NOT NULL REFERENCES api_keys (name) ON DELETE CASCADE,
            expires_at double precision NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX tokens_key_name ON tokens (key_name)")
    op.execute("CREATE INDEX tokens_expires_at ON tokens (expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE tokens")
    op.execute("DROP TABLE api_keys")
    op.execute("DROP TABLE versions")
    op.execute("DROP FUNCTION versions_are_immutable()")
    op.execute("DROP TABLE transcripts")
