"""Settings of the price-monitor service (`storefleet price-monitor`), read once at start.

A bad value fails at start naming its variable (storefleet.envvars).

| variable | default | meaning |
| --- | --- | --- |
| STOREFLEET_PG_DSN | required | PostgreSQL (prices, watches) |
| STOREFLEET_REDIS_URL | required | Redis (request/reply, deal notices) |
| STOREFLEET_PRICE_MONITOR_DB_USER / _DB_PASSWORD | DSN's | connect as this role instead |
| STOREFLEET_PRICE_MONITOR_HOST / _PORT | 0.0.0.0 / 8090 | HTTP listen address |
| STOREFLEET_PRICE_MONITOR_POOL_SIZE | 4 | PostgreSQL connections for queries |
| STOREFLEET_PRICE_MONITOR_WATCH_INTERVAL_SECONDS | 60 | re-check every watch this often |
| STOREFLEET_PRICE_MONITOR_QUERY_TIMEOUT_SECONDS | 30 | statement timeout of a deals query |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from storefleet.endpoints import PG_DSN, REDIS_URL, require
from storefleet.envvars import env_float, env_int

PREFIX = "STOREFLEET_PRICE_MONITOR_"
DB_USER = PREFIX + "DB_USER"
DB_PASSWORD = PREFIX + "DB_PASSWORD"
# The role migration 0060 creates for this service.
ROLE = "storefleet_price_monitor"


@dataclass(frozen=True)
class MonitorSettings:
    pg_dsn: str
    redis_url: str
    db_user: str | None = None
    db_password: str | None = None
    host: str = "0.0.0.0"
    port: int = 8090
    pool_size: int = 4
    watch_interval_seconds: float = 60.0
    query_timeout_seconds: float = 30.0

    def connect_kwargs(self) -> dict[str, str]:
        """libpq parameters that override the DSN's (the service's own role)."""
        kwargs = {"application_name": "storefleet-price-monitor"}
        if self.db_user:
            kwargs["user"] = self.db_user
        if self.db_password:
            kwargs["password"] = self.db_password
        return kwargs


def from_env(environ: Mapping[str, str] | None = None) -> MonitorSettings:
    env = os.environ if environ is None else environ
    return MonitorSettings(
        pg_dsn=require(PG_DSN, dict(env)),
        redis_url=require(REDIS_URL, dict(env)),
        db_user=env.get(DB_USER, "").strip() or None,
        db_password=env.get(DB_PASSWORD, "") or None,
        host=env.get(PREFIX + "HOST", "").strip() or "0.0.0.0",
        port=env_int(env, PREFIX + "PORT", 8090, 0, 65535),
        pool_size=env_int(env, PREFIX + "POOL_SIZE", 4, 1, 100),
        watch_interval_seconds=env_float(env, PREFIX + "WATCH_INTERVAL_SECONDS", 60.0, 0.1,
                                         86400.0),
        query_timeout_seconds=env_float(env, PREFIX + "QUERY_TIMEOUT_SECONDS", 30.0, 0.1,
                                        3600.0),
    )
