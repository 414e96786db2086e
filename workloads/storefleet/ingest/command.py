"""`storefleet webhook`: the ingest webhook's entrypoint (locally and in its container).

Reads: behaviour events over HTTP (POST /v1/events, POST /log); settings from the environment:
STOREFLEET_INGEST_TOKEN (required, the admin token), STOREFLEET_KAFKA_BOOTSTRAP (required),
STOREFLEET_INGEST_TOKEN_KEY (optional: accept per-fleet tokens, events/tokens.py),
STOREFLEET_EVENTS_TOPIC and the STOREFLEET_INGEST_* variables (settings.py, protocol.py;
listed in docs/event-contract.md).
Writes: one Kafka message per event to the events topic, key "<store_id>:<user_id>".
Run: `STOREFLEET_INGEST_TOKEN=... storefleet webhook --port 8080 [--workers 2]`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import click

from storefleet.endpoints import SettingError


@click.command()
@click.option("--host", default=None, help="Address to listen on [env STOREFLEET_INGEST_HOST].")
@click.option("--port", type=int, default=None, help="Port [env STOREFLEET_INGEST_PORT, 8080].")
@click.option(
    "--workers", type=int, default=None, help="Processes [env STOREFLEET_INGEST_WORKERS, 1]."
)
def webhook(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the ingest webhook (events over HTTP into Kafka)."""
    import uvicorn

    from storefleet.ingest.protocol import GuardedHttpToolsProtocol, HttpLimits
    from storefleet.ingest.settings import PREFIX, IngestSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Workers re-read the environment, so command-line overrides go through it.
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[PREFIX + name] = str(value)
    try:
        settings = IngestSettings.from_env()
        HttpLimits.from_env()  # fail here, naming the variable, rather than in each worker
    except SettingError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"webhook listening on http://{settings.host}:{settings.port} "
               f"({settings.workers} worker(s), topic {settings.topic!r})", err=True)
    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools plus header/body deadlines and a header size limit (ingest/protocol.py).
        "http": GuardedHttpToolsProtocol,
        # Connections (and requests) per worker; past it uvicorn answers 503.
        "limit_concurrency": settings.max_connections,
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "backlog": 4096,
        "timeout_keep_alive": 60,
        "timeout_graceful_shutdown": max(15, settings.delivery_timeout_ms // 1000 + 5),
    }
    if settings.workers == 1:
        from storefleet.ingest.app import IngestApp

        uvicorn.run(IngestApp(settings), **common)
        return
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="storefleet-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "storefleet.ingest.app:create_app", factory=True, workers=settings.workers, **common
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
