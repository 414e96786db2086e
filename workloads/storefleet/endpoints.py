"""Where the backing services are, as every component reads it from its environment.

Locally `storefleet services up` writes these variables to `<state>/services.env` and
`storefleet up` passes them to each component; on Kubernetes the chart sets them from Secrets.
No address or credential is written in code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PG_DSN = "STOREFLEET_PG_DSN"
REDIS_URL = "STOREFLEET_REDIS_URL"
KAFKA_BOOTSTRAP = "STOREFLEET_KAFKA_BOOTSTRAP"


class SettingError(ValueError):
    """A setting that is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Endpoints:
    pg_dsn: str
    redis_url: str
    kafka_bootstrap: str

    def as_env(self) -> dict[str, str]:
        return {
            PG_DSN: self.pg_dsn,
            REDIS_URL: self.redis_url,
            KAFKA_BOOTSTRAP: self.kafka_bootstrap,
        }


def require(name: str, environ: dict[str, str] | None = None) -> str:
    value = (environ if environ is not None else os.environ).get(name, "").strip()
    if not value:
        raise SettingError(
            f"{name} is not set; run `storefleet services up` and "
            f"`eval $(storefleet services env)`, or set it to the service's address"
        )
    return value


def from_env(environ: dict[str, str] | None = None) -> Endpoints:
    return Endpoints(
        pg_dsn=require(PG_DSN, environ),
        redis_url=require(REDIS_URL, environ),
        kafka_bootstrap=require(KAFKA_BOOTSTRAP, environ),
    )
