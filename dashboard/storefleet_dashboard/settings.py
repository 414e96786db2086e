"""The dashboard's settings, read once from the environment at start.

STOREFLEET_REDIS_URL is required (the insights live there); STOREFLEET_PG_DSN is optional: without
it the coupon counts and the fleet's store list are left out, the insights still show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from storefleet.endpoints import PG_DSN, REDIS_URL, SettingError, require

REFRESH_ENV = "STOREFLEET_DASHBOARD_REFRESH_SECONDS"
DB_POLL_ENV = "STOREFLEET_DASHBOARD_DB_POLL_SECONDS"


@dataclass(frozen=True)
class Settings:
    redis_url: str
    pg_dsn: str | None
    # How often an open page looks at the local cache (cheap: no network).
    refresh_seconds: float = 1.0
    # How often the server reads coupon counts and the store list from PostgreSQL.
    db_poll_seconds: float = 5.0


def _positive(name: str, environ: dict[str, str], default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingError(f"{name} must be > 0, got {raw!r}")
    return value


def from_env(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if environ is None else environ
    return Settings(
        redis_url=require(REDIS_URL, env),
        pg_dsn=env.get(PG_DSN, "").strip() or None,
        refresh_seconds=_positive(REFRESH_ENV, env, 1.0),
        db_poll_seconds=_positive(DB_POLL_ENV, env, 5.0),
    )
