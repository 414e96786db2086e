"""Settings of the bonus job of one fleet, from the environment (command-line flags override).

The fleet: `-f MANIFEST --fleet NAME`, or STOREFLEET_FLEET_NAME + STOREFLEET_FLEET_SPEC (what the
operator sets). Its `bonus` and `coupons` sections give the rules; these variables override them:
STOREFLEET_BONUS_SHORT_WINDOW_MINUTES, _SHORT_WINDOW_THRESHOLD, _LONG_WINDOW_HOURS,
_LONG_WINDOW_THRESHOLD, STOREFLEET_COUPON_DISCOUNT_PERCENT, STOREFLEET_COUPON_COOLDOWN_MINUTES.
STOREFLEET_PG_DSN, STOREFLEET_KAFKA_BOOTSTRAP (required; STOREFLEET_REDIS_URL is not used).
STOREFLEET_EVENTS_TOPIC / STOREFLEET_COUPONS_TOPIC (default "events" / "coupons").
STOREFLEET_DEAD_LETTER_TOPIC (default "events-dead-letter"): the fleet's purchases the job cannot
process; STOREFLEET_EVENT_MAX_SKEW_SECONDS (60): purchases further ahead of the job's clock are
dead-lettered, never stored (one purchase dated 2099 would make every later one "late").
STOREFLEET_BONUS_CHECKPOINT_DIR (default <state>/bonus/<fleet>/checkpoints),
STOREFLEET_SPARK_MASTER (default: spark-submit's --master, else local[*]),
STOREFLEET_BONUS_TRIGGER_SECONDS (1), _SHUFFLE_PARTITIONS (2), _ALLOWED_LATENESS_SECONDS (3600),
_MAX_OFFSETS_PER_TRIGGER (100000 per micro-batch; 0: no limit), _STARTING_OFFSETS (earliest),
_DRIVER_MEMORY (unset),
_OUTBOX_POLL_SECONDS (1). The job keeps no Spark watermark: how late a purchase may come is
_ALLOWED_LATENESS_SECONDS, since its windows live in PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from storefleet import paths, topics
from storefleet.endpoints import KAFKA_BOOTSTRAP, PG_DSN, require
from storefleet.envvars import env_float, env_int
from storefleet.events.bounds import DEFAULT_MAX_SKEW_SECONDS
from storefleet.fleet import Fleet

PREFIX = "STOREFLEET_BONUS_"
COUPON_PREFIX = "STOREFLEET_COUPON_"
MAX_SKEW_ENV = "STOREFLEET_EVENT_MAX_SKEW_SECONDS"
DEAD_LETTER_TOPIC_ENV = "STOREFLEET_DEAD_LETTER_TOPIC"
DEFAULT_MAX_OFFSETS_PER_TRIGGER = 100_000


@dataclass(frozen=True)
class Rules:
    """What makes a purchase qualify, and the coupon it earns."""

    short_window_minutes: int = 10
    short_window_threshold: Decimal = Decimal("500")
    long_window_hours: int = 6
    long_window_threshold: Decimal = Decimal("2000")
    discount_percent: Decimal = Decimal("10")
    cooldown_minutes: int = 60

    @classmethod
    def of_fleet(cls, fleet: Fleet) -> Rules:
        bonus, coupons = fleet.spec.bonus, fleet.spec.coupons
        return cls(
            short_window_minutes=bonus.short_window_minutes,
            short_window_threshold=Decimal(str(bonus.short_window_threshold)),
            long_window_hours=bonus.long_window_hours,
            long_window_threshold=Decimal(str(bonus.long_window_threshold)),
            discount_percent=Decimal(str(coupons.discount_percent)),
            cooldown_minutes=coupons.cooldown_minutes,
        )

    def overridden(self, env: Mapping[str, str]) -> Rules:
        """These rules with the STOREFLEET_BONUS_* / STOREFLEET_COUPON_* variables applied."""
        def dec(name: str, default: Decimal, low: float, high: float) -> Decimal:
            raw = env.get(name, "").strip()
            env_float(env, name, 0.0, low, high)  # validates, naming the variable
            return Decimal(raw) if raw else default

        return Rules(
            short_window_minutes=env_int(env, PREFIX + "SHORT_WINDOW_MINUTES",
                                         self.short_window_minutes, 1, 1440),
            short_window_threshold=dec(PREFIX + "SHORT_WINDOW_THRESHOLD",
                                       self.short_window_threshold, 0, 1e12),
            long_window_hours=env_int(env, PREFIX + "LONG_WINDOW_HOURS",
                                      self.long_window_hours, 1, 168),
            long_window_threshold=dec(PREFIX + "LONG_WINDOW_THRESHOLD",
                                      self.long_window_threshold, 0, 1e12),
            discount_percent=dec(COUPON_PREFIX + "DISCOUNT_PERCENT", self.discount_percent,
                                 0.01, 90),
            cooldown_minutes=env_int(env, COUPON_PREFIX + "COOLDOWN_MINUTES",
                                     self.cooldown_minutes, 0, 100_000),
        )


@dataclass(frozen=True)
class BonusSettings:
    fleet: str
    rules: Rules
    pg_dsn: str
    kafka_bootstrap: str
    events_topic: str = "events"
    coupons_topic: str = "coupons"
    dead_letter_topic: str = topics.DEAD_LETTER
    max_skew_seconds: int = DEFAULT_MAX_SKEW_SECONDS
    checkpoint_dir: Path = Path(".storefleet/bonus/checkpoints")
    master: str | None = None  # None: spark-submit's --master, or local[*] when run directly
    trigger_seconds: float = 1.0
    shuffle_partitions: int = 2
    allowed_lateness_seconds: int = 3600
    max_offsets_per_trigger: int | None = DEFAULT_MAX_OFFSETS_PER_TRIGGER
    starting_offsets: str = "earliest"
    driver_memory: str | None = None
    outbox_poll_seconds: float = 1.0
    ui: bool = False

    @classmethod
    def from_env(cls, fleet: Fleet, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> BonusSettings:
        env = os.environ if environ is None else environ
        state = paths.state_dir(env.get(paths.STATE_DIR_ENV))
        settings = cls(
            fleet=fleet.name,
            rules=Rules.of_fleet(fleet).overridden(env),
            pg_dsn=require(PG_DSN, dict(env)),
            kafka_bootstrap=require(KAFKA_BOOTSTRAP, dict(env)),
            events_topic=env.get("STOREFLEET_EVENTS_TOPIC") or "events",
            coupons_topic=env.get("STOREFLEET_COUPONS_TOPIC") or topics.COUPONS,
            dead_letter_topic=env.get(DEAD_LETTER_TOPIC_ENV) or topics.DEAD_LETTER,
            max_skew_seconds=env_int(env, MAX_SKEW_ENV, DEFAULT_MAX_SKEW_SECONDS, 0, 86_400),
            checkpoint_dir=Path(env.get(PREFIX + "CHECKPOINT_DIR")
                                or state / "bonus" / fleet.name / "checkpoints"),
            master=env.get("STOREFLEET_SPARK_MASTER") or None,
            trigger_seconds=env_float(env, PREFIX + "TRIGGER_SECONDS", 1.0, 0.05, 600),
            shuffle_partitions=env_int(env, PREFIX + "SHUFFLE_PARTITIONS", 2, 1, 10_000),
            allowed_lateness_seconds=env_int(env, PREFIX + "ALLOWED_LATENESS_SECONDS", 3600, 0,
                                             7 * 86_400),
            max_offsets_per_trigger=env_int(
                env, PREFIX + "MAX_OFFSETS_PER_TRIGGER", DEFAULT_MAX_OFFSETS_PER_TRIGGER, 0,
                10**9) or None,
            starting_offsets=env.get(PREFIX + "STARTING_OFFSETS") or "earliest",
            driver_memory=env.get(PREFIX + "DRIVER_MEMORY") or None,
            outbox_poll_seconds=env_float(env, PREFIX + "OUTBOX_POLL_SECONDS", 1.0, 0.05, 600),
        )
        chosen = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **chosen) if chosen else settings
