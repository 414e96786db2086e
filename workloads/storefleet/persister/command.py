"""`storefleet persister`: the persister's entrypoint (locally and in its container).

Reads: the Kafka events topic (STOREFLEET_EVENTS_TOPIC, default `events`) as consumer group
STOREFLEET_PERSISTER_GROUP (default `storefleet-persister`) at STOREFLEET_KAFKA_BOOTSTRAP.
Writes: PostgreSQL analytics.events at STOREFLEET_PG_DSN, once per event_id; what it cannot
store (not a valid event, an event_id stored with other content, a row PostgreSQL refuses) to
the dead-letter topic STOREFLEET_PERSISTER_DEAD_LETTER_TOPIC (default `events-dead-letter`) with
the reason (docs/event-contract.md); then the offsets.
Run: `storefleet persister` (one per few partitions; replicas of one group split them).
Metrics on STOREFLEET_PERSISTER_METRICS_PORT when set. SIGTERM finishes the current batch.
"""

from __future__ import annotations

import logging
import signal
import threading

import click

from storefleet.endpoints import SettingError


@click.command()
def persister() -> None:
    """Store Kafka events in PostgreSQL analytics.events, idempotently."""
    from storefleet.persister.consumer import Persister
    from storefleet.persister.settings import PersisterSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = PersisterSettings.from_env()
    except SettingError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker = Persister(settings, stop)
    worker.run()
    if worker.failed:
        raise click.ClickException(f"stopped after a fatal Kafka error: {worker.failed}")
