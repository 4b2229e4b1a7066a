"""Alembic migrations of the PostgreSQL store's schema (env.py, versions/), run by
`streamscribe.store.postgres.migrate`; a new revision goes in versions/, raw SQL through op.execute."""
