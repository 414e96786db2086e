"""Schema migrations on a real PostgreSQL: idempotent, ordered, edits to shipped ones refused."""

from __future__ import annotations

import psycopg
import pytest

from storefleet.db import migrate

pytestmark = pytest.mark.services


def test_migrations_are_applied_once(pg_dsn: str) -> None:
    assert migrate.apply_migrations(pg_dsn) == []  # the template already has them all
    with psycopg.connect(pg_dsn) as conn:
        versions = [v for (v,) in conn.execute(
            "SELECT version FROM storefleet_migrations ORDER BY version")]  # fmt: skip
    assert versions == [m.version for m in migrate.available_migrations()]


def test_edited_migration_is_refused(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = migrate.available_migrations()
    edited = [migrate.Migration(m.version, m.name, m.sql + "\n-- edited") for m in shipped]
    monkeypatch.setattr(migrate, "available_migrations", lambda: edited)
    with pytest.raises(migrate.MigrationError, match="was changed after it was applied"):
        migrate.apply_migrations(pg_dsn)


def test_price_history_is_written_by_the_trigger(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO conta_verde.products (store_id, product_id, name, price)"
                     " VALUES ('demo-0000', 1, 'Lamp', 10.00)")  # fmt: skip
        with conn.transaction():
            conn.execute("SET LOCAL storefleet.price_time = '2026-01-01T00:00:00Z'")
            conn.execute("UPDATE conta_verde.products SET price = 12.50 WHERE product_id = 1")
        conn.execute("UPDATE conta_verde.products SET price = 12.50 WHERE product_id = 1")
        rows = conn.execute(
            "SELECT price::text, valid_from = '2026-01-01T00:00:00Z' FROM conta_verde.price_history"
            " ORDER BY id"
        ).fetchall()
    # Insert and one real change; the no-op update writes nothing.
    assert rows == [("10.00", False), ("12.50", True)]
