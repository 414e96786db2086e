"""Versioned, idempotent PostgreSQL migrations.

Migrations are the SQL files in `migrations/`, named `NNNN_description.sql` and applied in
number order, each in its own transaction and recorded in `public.storefleet_migrations` with a
checksum. An advisory lock lets several processes call `apply_migrations` at once safely. A
migration that was applied and then edited is an error: shipped migrations never change.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

# Any constant works; it only has to be the same for every StoreFleet process.
_LOCK_KEY = 0x5354_4F52_4546_4C54 & 0x7FFF_FFFF_FFFF_FFFF
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    folder = resources.files("storefleet.db") / "migrations"
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations numbered {version:04d}: {found[version].name}, {entry.name}"
            )
        found[version] = Migration(version, entry.name, entry.read_text())
    return [found[v] for v in sorted(found)]


def apply_migrations(dsn: str) -> list[str]:
    """Apply the migrations not yet applied; returns the names applied now."""
    applied_now = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.storefleet_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                version: (name, checksum)
                for version, name, checksum in conn.execute(
                    "SELECT version, name, checksum FROM public.storefleet_migrations"
                )
            }
            for migration in available_migrations():
                if migration.version in done:
                    name, checksum = done[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(
                            f"migration {name} was changed after it was applied; "
                            f"add a new migration instead of editing a shipped one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO public.storefleet_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
