"""`storefleet price-monitor`: the price-monitor service (HTTP, Redis request/reply, watches).

Reads: STOREFLEET_PG_DSN (conta_verde.products, price_monitor.price_steps; writes only
price_monitor.watches / watch_deals / watch_told), STOREFLEET_REDIS_URL (request list
`storefleet:prices:requests`, reply keys, channels `storefleet:deals:<watch>`), and the settings
of storefleet.prices.settings (STOREFLEET_PRICE_MONITOR_*).
Serves: http://HOST:PORT/v1/deals, /v1/watches..., /healthz, /readyz, /metrics, /openapi.json.
Run: `eval "$(storefleet services env)" && storefleet price-monitor --port 8090`.

`storefleet price-monitor set-role-password` (what the chart's role Job runs after the
migrations): gives the role storefleet_price_monitor (migration 0060) the password in
STOREFLEET_PRICE_MONITOR_DB_PASSWORD, connecting with the administrator's STOREFLEET_PG_DSN.
"""

from __future__ import annotations

import logging
import os
import time

import click

from storefleet.endpoints import PG_DSN, SettingError, require


@click.group("price-monitor", invoke_without_command=True)
@click.option("--host", default=None, help="Listen address (STOREFLEET_PRICE_MONITOR_HOST, "
                                           "default 0.0.0.0).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="HTTP port (STOREFLEET_PRICE_MONITOR_PORT, default 8090).")
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def price_monitor(ctx: click.Context, host: str | None, port: int | None,
                  log_level: str) -> None:
    """Serve deals over HTTP and Redis request/reply, and keep standing watches."""
    if ctx.invoked_subcommand is not None:
        return
    import dataclasses

    import uvicorn

    from storefleet.prices.http import create_app
    from storefleet.prices.settings import from_env

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = from_env()
    except SettingError as exc:
        raise click.UsageError(str(exc)) from None
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = dataclasses.replace(settings, **changes)
    click.echo(f"price monitor on http://{settings.host}:{settings.port}/v1/deals", err=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=log_level.lower(), access_log=False, lifespan="on")


@price_monitor.command("set-role-password")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=300.0,
              show_default=True, help="Seconds to wait for the role (made by migration 0060).")
def set_role_password(wait_seconds: float) -> None:
    """Set the password of the service's database role from STOREFLEET_PRICE_MONITOR_DB_PASSWORD."""
    import psycopg
    from psycopg import sql

    from storefleet.prices.settings import DB_PASSWORD, ROLE

    try:
        dsn = require(PG_DSN)
    except SettingError as exc:
        raise click.UsageError(str(exc)) from None
    password = os.environ.get(DB_PASSWORD, "")
    if not password:
        raise click.UsageError(f"{DB_PASSWORD} is not set")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                (ROLE,)).fetchone():
                    conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                        sql.Identifier(ROLE), sql.Literal(password)))
                    click.echo(f"password of role {ROLE} set")
                    return
                problem = f"role {ROLE} does not exist yet (migration 0060 not applied)"
        except psycopg.OperationalError as exc:
            problem = f"PostgreSQL unavailable: {exc}"
        if time.monotonic() >= deadline:
            raise click.ClickException(problem)
        click.echo(f"{problem}; retrying", err=True)
        time.sleep(2.0)
