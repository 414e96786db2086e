"""`storefleet simulate`: drive a fleet's stores (or a range of them) in one process.

Reads: the fleet from `-f MANIFEST --fleet NAME`, or STOREFLEET_FLEET_NAME and
STOREFLEET_FLEET_SPEC (FleetSpec as camelCase JSON, as the operator sets it); the stores from
--stores-from/--stores-to, STOREFLEET_STORE_RANGE ("FROM:TO", half-open) or
STOREFLEET_POD_ORDINAL; STOREFLEET_PG_DSN, STOREFLEET_INGEST_URL, STOREFLEET_INGEST_TOKEN,
STOREFLEET_LOGS_DIR, STOREFLEET_KAFKA_BOOTSTRAP and STOREFLEET_COUPONS_TOPIC (coupons to redeem).
Writes: behaviour events to the webhook, Conta Verde rows to PostgreSQL, DataCat files under
the logs folder.
Run: `storefleet simulate -f storefleet.yaml --fleet demo` (Ctrl-C stops after the current cycle
and delivers what is pending).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click
import psycopg

from storefleet.simulator.settings import SettingError, simulator_settings


@click.command("simulate")
@click.option("-f", "--file", "manifest", type=click.Path(dir_okay=False),
              help="StoreFleet manifest (YAML); else STOREFLEET_FLEET_NAME/_SPEC.")
@click.option("--fleet", "fleet_name", help="Fleet in the manifest (or STOREFLEET_FLEET_NAME).")
@click.option("--stores-from", type=int, help="First store position (inclusive).")
@click.option("--stores-to", type=int, help="Last store position (exclusive).")
@click.option("--ingest-url", help="Webhook base URL (default STOREFLEET_INGEST_URL).")
@click.option("--logs-dir", help="DataCat folder (STOREFLEET_LOGS_DIR, .storefleet/logs).")
@click.option("--cycles", type=int, help="Stop after this many cycles (default: never).")
@click.option("--seed", type=int, help="Seed of a reproducible run (spec.simulation.seed).")
@click.option("--log-level", default="INFO", show_default=True)
def simulate(manifest, fleet_name, stores_from, stores_to, ingest_url, logs_dir, cycles, seed,
             log_level) -> None:
    """Simulate stores: events to the webhook, Conta Verde rows, DataCat files."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per batch
    try:
        settings = simulator_settings(
            manifest=manifest, fleet_name=fleet_name, stores_from=stores_from,
            stores_to=stores_to, ingest_url=ingest_url, logs_dir=logs_dir, cycles=cycles,
            seed=seed,
        )
    except SettingError as exc:
        raise click.UsageError(str(exc)) from None
    from storefleet.simulator.simulation import Simulator

    stop = threading.Event()

    def _stop(signum, _frame) -> None:
        logging.getLogger("storefleet.simulator").info(
            "signal %d: stopping after this cycle", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        stats = Simulator(settings, stop=stop).run()
    except psycopg.Error as exc:
        # Crash-only: nothing of an unfinished cycle was committed, so a restart resumes cleanly.
        logging.getLogger("storefleet.simulator").error(
            "PostgreSQL failed (%s); exiting, a restart resumes from the last committed cycle",
            str(exc).strip())
        sys.exit(1)
    logging.getLogger("storefleet.simulator").info(
        "stopped after %d cycles: %d events, %d purchases, %d coupons redeemed",
        stats.cycles, stats.events, stats.purchases, stats.redemptions)
    sys.exit(0 if stats.flushed else 3)
