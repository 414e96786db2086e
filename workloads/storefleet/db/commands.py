"""`storefleet db migrate`: apply the schema migrations to PostgreSQL.

Reads STOREFLEET_PG_DSN (or --dsn; locally, the running `storefleet services` when unset);
writes the conta_verde and analytics schemas. Safe to run any number of times.
"""

from __future__ import annotations

import click

from storefleet.endpoints import PG_DSN


@click.group()
def db() -> None:
    """PostgreSQL schema management."""


@db.command()
@click.option("--dsn", envvar=PG_DSN, help=f"PostgreSQL DSN (default: ${PG_DSN}).")
@click.option("--state-dir", default=None, help="Local state directory when no DSN is given.")
def migrate(dsn: str | None, state_dir: str | None) -> None:
    """Apply every migration not applied yet."""
    from storefleet.db.migrate import MigrationError, apply_migrations

    if not dsn:
        from storefleet.paths import state_dir as resolve_state_dir
        from storefleet.services.manager import ServicesManager
        from storefleet.services.process import ServiceError

        try:
            dsn = ServicesManager(resolve_state_dir(state_dir)).endpoints().pg_dsn
        except ServiceError as exc:
            raise click.ClickException(f"no {PG_DSN} given and {exc}") from None
    try:
        applied = apply_migrations(dsn)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")
