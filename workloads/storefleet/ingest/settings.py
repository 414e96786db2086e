"""The webhook's settings, read once from the environment; a bad value names its variable."""

from __future__ import annotations

import os
from dataclasses import dataclass

from storefleet.endpoints import KAFKA_BOOTSTRAP, SettingError, require
from storefleet.envvars import env_bool, env_int
from storefleet.events.bounds import DEFAULT_MAX_AGE_SECONDS, DEFAULT_MAX_SKEW_SECONDS

TOKEN = "STOREFLEET_INGEST_TOKEN"
TOKEN_KEY = "STOREFLEET_INGEST_TOKEN_KEY"
EVENTS_TOPIC = "STOREFLEET_EVENTS_TOPIC"
PREFIX = "STOREFLEET_INGEST_"


@dataclass(frozen=True)
class IngestSettings:
    token: str
    kafka_bootstrap: str
    topic: str = "events"
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 4 * 1024 * 1024
    max_events: int = 10_000
    legacy_enabled: bool = True
    # How long Kafka may take to acknowledge before the request gets 503 (librdkafka's
    # message.timeout.ms); the client retries and the persister drops any duplicate.
    delivery_timeout_ms: int = 10_000
    linger_ms: int = 2
    # Messages waiting for Kafka across all requests; past it new requests get 503.
    max_in_flight: int = 500_000
    # Event time window around this server's clock (events.bounds; docs/event-contract.md).
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS
    max_skew_seconds: int = DEFAULT_MAX_SKEW_SECONDS
    # Key of the per-fleet tokens (events.tokens); empty = only the admin token is accepted.
    token_key: bytes = b""
    # `POST /log?token=...` for clients that cannot send headers (the original client).
    url_token: bool = True
    # Open connections per worker; past it uvicorn answers 503 (its limit_concurrency).
    max_connections: int = 1000

    def __repr__(self) -> str:  # never print the token
        return f"IngestSettings(topic={self.topic!r}, port={self.port}, token=<hidden>)"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> IngestSettings:
        env = dict(os.environ if environ is None else environ)
        token = env.get(TOKEN, "")
        if not token.strip():
            raise SettingError(
                f"{TOKEN} is not set: the webhook refuses to start without a token "
                "(clients send it as `Authorization: Bearer <token>`)"
            )
        return cls(
            token=token.strip(),
            kafka_bootstrap=require(KAFKA_BOOTSTRAP, env),
            topic=env.get(EVENTS_TOPIC, "").strip() or "events",
            host=env.get(PREFIX + "HOST", "").strip() or "0.0.0.0",
            port=env_int(env, PREFIX + "PORT", 8080, 0, 65535),
            workers=env_int(env, PREFIX + "WORKERS", 1, 1, 64),
            max_body_bytes=env_int(env, PREFIX + "MAX_BODY_BYTES", 4 * 1024 * 1024, 1024, 1 << 30),
            max_events=env_int(env, PREFIX + "MAX_EVENTS", 10_000, 1, 1_000_000),
            legacy_enabled=env_bool(env, PREFIX + "LEGACY", True),
            delivery_timeout_ms=env_int(env, PREFIX + "DELIVERY_TIMEOUT_MS", 10_000, 100, 900_000),
            linger_ms=env_int(env, PREFIX + "LINGER_MS", 2, 0, 1000),
            max_in_flight=env_int(env, PREFIX + "MAX_IN_FLIGHT", 500_000, 1, 10_000_000),
            max_age_seconds=env_int(env, PREFIX + "MAX_AGE_SECONDS", DEFAULT_MAX_AGE_SECONDS,
                                    1, 10 * 365 * 86400),
            max_skew_seconds=env_int(env, PREFIX + "MAX_SKEW_SECONDS", DEFAULT_MAX_SKEW_SECONDS,
                                     0, 86400),
            token_key=env.get(TOKEN_KEY, "").strip().encode(),
            url_token=env_bool(env, PREFIX + "URL_TOKEN", True),
            max_connections=env_int(env, PREFIX + "MAX_CONNECTIONS", 1000, 1, 1_000_000),
        )
