"""The persister's settings, read once from the environment; a bad value names its variable."""

from __future__ import annotations

import os
from dataclasses import dataclass

from storefleet.endpoints import KAFKA_BOOTSTRAP, PG_DSN, require
from storefleet.envvars import env_float, env_int
from storefleet.topics import DEAD_LETTER

PREFIX = "STOREFLEET_PERSISTER_"


@dataclass(frozen=True)
class PersisterSettings:
    kafka_bootstrap: str
    pg_dsn: str
    topic: str = "events"
    group_id: str = "storefleet-persister"
    # A batch is written when it has this many events or after this wait, whichever is first.
    batch_max: int = 20_000
    batch_wait_s: float = 0.5
    # 0 = no metrics endpoint.
    metrics_port: int = 0
    # Where messages that cannot be stored go, with the reason (events/deadletter.py).
    dead_letter_topic: str = DEAD_LETTER

    def __repr__(self) -> str:  # the DSN carries a password
        return f"PersisterSettings(topic={self.topic!r}, group_id={self.group_id!r})"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> PersisterSettings:
        env = dict(os.environ if environ is None else environ)
        return cls(
            kafka_bootstrap=require(KAFKA_BOOTSTRAP, env),
            pg_dsn=require(PG_DSN, env),
            topic=env.get("STOREFLEET_EVENTS_TOPIC", "").strip() or "events",
            group_id=env.get(PREFIX + "GROUP", "").strip() or "storefleet-persister",
            batch_max=env_int(env, PREFIX + "BATCH_MAX", 20_000, 1, 1_000_000),
            batch_wait_s=env_float(env, PREFIX + "BATCH_WAIT_S", 0.5, 0.001, 60),
            metrics_port=env_int(env, PREFIX + "METRICS_PORT", 0, 0, 65535),
            dead_letter_topic=env.get(PREFIX + "DEAD_LETTER_TOPIC", "").strip() or DEAD_LETTER,
        )
