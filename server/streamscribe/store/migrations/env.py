"""Alembic's entry: runs the revisions on the connection that `postgres.migrate` passes in
`config.attributes["connection"]` (it holds the advisory lock), or, for the `alembic` command of a
developer, on a connection to the configured `sqlalchemy.url` (postgresql+psycopg://...)."""

from __future__ import annotations

import sqlalchemy
from alembic import context
from sqlalchemy.pool import NullPool


def run_migrations(connection: sqlalchemy.Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the migrations run online only: `streamscribe migrate`, or `alembic upgrade head`")
given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database: set sqlalchemy.url (postgresql+psycopg://...) or run `streamscribe migrate`"
        )
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
            connection.commit()
    finally:
        engine.dispose()
