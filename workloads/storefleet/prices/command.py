"""`storefleet price-updater`: change random products' prices on a schedule; back-fill history.

Reads: the fleet from `-f MANIFEST --fleet NAME` or STOREFLEET_FLEET_NAME/STOREFLEET_FLEET_SPEC
(settings under spec.priceUpdater: intervalSeconds, productsPerRun, maxChangePercent, minPrice,
backfillMonths) and STOREFLEET_PG_DSN.
Writes: conta_verde.products.price (the trigger records conta_verde.price_history). On first
start, once the fleet has products, back-fills backfillMonths of history (skipped when the
history already reaches back, so restarts add nothing).
Run: `storefleet price-updater -f storefleet.yaml --fleet demo` (loop), `--once` for a single
run (a Kubernetes CronJob), `--backfill-only` to only back-fill.
"""

from __future__ import annotations

import logging
import random
import signal
import threading

import click
import psycopg

from storefleet import endpoints
from storefleet.prices.updater import backfill, update_prices
from storefleet.simulator.settings import SettingError, load_fleet

log = logging.getLogger("storefleet.prices")


@click.command("price-updater")
@click.option("-f", "--file", "manifest", type=click.Path(dir_okay=False),
              help="StoreFleet manifest (YAML); else STOREFLEET_FLEET_NAME/_SPEC.")
@click.option("--fleet", "fleet_name", help="Fleet in the manifest (or STOREFLEET_FLEET_NAME).")
@click.option("--once", is_flag=True, help="Back-fill if needed, change prices once, exit.")
@click.option("--backfill-only", is_flag=True, help="Back-fill if needed, then exit.")
@click.option("--seed", type=int, help="Seed for reproducible changes.")
@click.option("--log-level", default="INFO", show_default=True)
def price_updater(manifest, fleet_name, once, backfill_only, seed, log_level) -> None:
    """Change the prices of random products of a fleet on a schedule."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        fleet = load_fleet(manifest, fleet_name)
        dsn = endpoints.require(endpoints.PG_DSN)
    except SettingError as exc:
        raise click.UsageError(str(exc)) from None
    settings = fleet.spec.price_updater
    rng = random.Random(seed) if seed is not None else random.Random()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    backfilled = settings.backfill_months == 0
    conn: psycopg.Connection | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(dsn, autocommit=True,
                                       application_name="storefleet-price-updater")
            if not backfilled:
                written = backfill(conn, fleet.name, settings, rng)
                if written is None:
                    log.info("fleet %s has no products yet; back-fill waits for them", fleet.name)
                else:
                    backfilled = True
            if backfill_only:
                if backfilled or once:
                    break
            else:
                result = update_prices(conn, fleet.name, settings, rng)
                log.info("changed the price of %d products of fleet %s",
                         len(result.changed), fleet.name)
                if once:
                    break
        except psycopg.OperationalError as exc:
            log.warning("PostgreSQL unavailable (%s); retrying", exc)
            conn = None
        stop.wait(settings.interval_seconds)
    if conn is not None:
        conn.close()
