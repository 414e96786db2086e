"""Settings of the insights job, from the environment (command-line flags override them).

STOREFLEET_PG_DSN, STOREFLEET_REDIS_URL, STOREFLEET_KAFKA_BOOTSTRAP: the services (required).
STOREFLEET_EVENTS_TOPIC: the events topic (default "events").
STOREFLEET_INSIGHTS_SCOPE: fleet | platform | all (default all; scope.py); `fleet` needs
STOREFLEET_FLEET_NAME.
STOREFLEET_DEAD_LETTER_TOPIC: where messages the job cannot process go (default
"events-dead-letter"); STOREFLEET_EVENT_MAX_SKEW_SECONDS (60): events further ahead of the job's
clock are dead-lettered.
STOREFLEET_LOGS_DIR: DataCat log folders, one per store (default <state>/logs).
STOREFLEET_INSIGHTS_CHECKPOINT_DIR: streaming checkpoints (default <state>/insights/checkpoints).
STOREFLEET_SPARK_MASTER: Spark master (default: spark-submit's --master, else local[*]).
STOREFLEET_INSIGHTS_TRIGGER_SECONDS (1), _WATERMARK_SECONDS (120), _SHUFFLE_PARTITIONS (4),
_TOP_N (10), _OVERSOLD_POLL_SECONDS (5), _OVERSOLD_LOOKBACK_SECONDS (300),
_MAX_OFFSETS_PER_TRIGGER (100000 per micro-batch and query, so a restart on a long backlog
catches up in bounded batches; 0: no limit), _STARTING_OFFSETS (earliest).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from storefleet import paths, topics
from storefleet.endpoints import Endpoints, from_env
from storefleet.envvars import env_float, env_int
from storefleet.events.bounds import DEFAULT_MAX_SKEW_SECONDS
from storefleet.insights.scope import ALL_SCOPES, JobScope

PREFIX = "STOREFLEET_INSIGHTS_"
MAX_SKEW_ENV = "STOREFLEET_EVENT_MAX_SKEW_SECONDS"
DEAD_LETTER_TOPIC_ENV = "STOREFLEET_DEAD_LETTER_TOPIC"
DEFAULT_MAX_OFFSETS_PER_TRIGGER = 100_000


@dataclass(frozen=True)
class InsightsSettings:
    endpoints: Endpoints
    events_topic: str = "events"
    scope: JobScope = ALL_SCOPES
    dead_letter_topic: str = topics.DEAD_LETTER
    max_skew_seconds: int = DEFAULT_MAX_SKEW_SECONDS
    logs_dir: Path = Path(".storefleet/logs")
    checkpoint_dir: Path = Path(".storefleet/insights/checkpoints")
    master: str | None = None  # None: spark-submit's --master, or local[*] when run directly
    trigger_seconds: float = 1.0
    watermark_seconds: int = 120
    shuffle_partitions: int = 4
    top_n: int = 10
    oversold_poll_seconds: float = 5.0
    oversold_lookback_seconds: int = 300
    max_offsets_per_trigger: int | None = DEFAULT_MAX_OFFSETS_PER_TRIGGER
    starting_offsets: str = "earliest"
    ui: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> InsightsSettings:
        env = os.environ if environ is None else environ
        state = paths.state_dir(env.get(paths.STATE_DIR_ENV))

        settings = cls(
            endpoints=from_env(dict(env)),
            events_topic=env.get("STOREFLEET_EVENTS_TOPIC") or topics.EVENTS,
            scope=JobScope.from_env(env),
            dead_letter_topic=env.get(DEAD_LETTER_TOPIC_ENV) or topics.DEAD_LETTER,
            max_skew_seconds=env_int(env, MAX_SKEW_ENV, DEFAULT_MAX_SKEW_SECONDS, 0, 86_400),
            logs_dir=Path(env.get("STOREFLEET_LOGS_DIR") or state / "logs"),
            checkpoint_dir=Path(
                env.get(PREFIX + "CHECKPOINT_DIR") or state / "insights" / "checkpoints"
            ),
            master=env.get("STOREFLEET_SPARK_MASTER") or None,
            trigger_seconds=env_float(env, PREFIX + "TRIGGER_SECONDS", 1.0, 0.05, 600),
            watermark_seconds=env_int(env, PREFIX + "WATERMARK_SECONDS", 120, 0, 86_400),
            shuffle_partitions=env_int(env, PREFIX + "SHUFFLE_PARTITIONS", 4, 1, 10_000),
            top_n=env_int(env, PREFIX + "TOP_N", 10, 1, 1000),
            oversold_poll_seconds=env_float(env, PREFIX + "OVERSOLD_POLL_SECONDS", 5.0, 0.1, 3600),
            oversold_lookback_seconds=env_int(
                env, PREFIX + "OVERSOLD_LOOKBACK_SECONDS", 300, 0, 86_400),
            max_offsets_per_trigger=env_int(
                env, PREFIX + "MAX_OFFSETS_PER_TRIGGER", DEFAULT_MAX_OFFSETS_PER_TRIGGER, 0,
                10**9) or None,
            starting_offsets=env.get(PREFIX + "STARTING_OFFSETS") or "earliest",
        )
        chosen = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **chosen) if chosen else settings
