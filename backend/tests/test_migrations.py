"""Migrations from empty, on SQLite and PostgreSQL; the models match the migrated schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.db import migrations
from app.db.all_models import metadata
from tests.conftest import fresh_database


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_upgrade_from_empty_matches_models_and_downgrades(db_kind: str, tmp_path: Path) -> None:
    database = fresh_database(db_kind, tmp_path, migrate=False)
    try:
        migrations.upgrade(database.url)
        engine = create_engine(database.url)
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert {"users", "api_tokens", "report_jobs", "alembic_version"} <= tables
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            assert diff == [], diff
        migrations.downgrade(database.url, "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        migrations.upgrade(database.url)
        engine.dispose()
    finally:
        if database.drop:
            database.drop()
