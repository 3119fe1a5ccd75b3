"""Alembic environment: runs migrations on the engine greenflow hands over (online only)."""

from __future__ import annotations

from alembic import context

from greenflow.ledger.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # e.g. `alembic` run by hand with a URL in the config
    from greenflow.ledger.database import create_ledger_engine

    engine = create_ledger_engine(config.get_main_option("sqlalchemy.url") or "")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
